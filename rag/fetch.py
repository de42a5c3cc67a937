"""One web page in, one Article out, without being a nuisance to the site that serves it.

Feeds and ``cronaca ingest https://…`` talk to other people's servers, so every request here is
polite and bounded: robots.txt is honoured (RFC 9309), one host never sees more than two requests
at once nor two request starts closer than ``host_delay`` seconds, redirects are followed by hand
(at most five, loops named as loops, robots checked at every hop), and each request has a total
deadline and a size cap enforced while streaming.

Two guards live below httpx, in the connection itself (``_GuardedBackend``), so that no hop can
go around them:

- Private network: the host is resolved and refused when any address is loopback, private,
  link-local, multicast, reserved or otherwise not global (IPv4 and IPv6, IPv4-mapped included);
  the socket then connects to the address that was checked, so a DNS answer that changes between
  the check and the connection (rebinding) cannot slip through. Every redirect is a new
  connection and is checked again. ``allow_private`` (``CRONACA_FETCH_ALLOW_PRIVATE``) turns this
  off for intranet feeds. The environment's proxy settings are ignored: a proxy would connect for
  us, out of the guard's sight.
- One deadline per request, headers included: httpx timeouts are per network read, so a server
  that trickles its status line one byte a second would hold us forever; here every read and
  write is given only the time left before the request's deadline.

The page's main text and metadata come from trafilatura; navigation, footers, cookie banners and
related-links boxes stay out of the stored text.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import httpcore
import httpx

from rag import __version__
from rag.models import Article
from rag.parsing import IngestError, ItemError, decode, make_article, parse_date

PROJECT_URL = "https://github.com/cronaca/cronaca"
DEFAULT_USER_AGENT = f"cronaca/{__version__} (+{PROJECT_URL})"
DEFAULT_TIMEOUT = 20.0  # seconds, the whole of one request: connect, headers and body
DEFAULT_MAX_PAGE_MB = 5.0
DEFAULT_HOST_DELAY = 1.0  # seconds between the starts of two requests to one host
DEFAULT_WORKERS = 4  # pages fetched at once across hosts (each host still gets at most 2)
MAX_REDIRECTS = 5
MAX_IN_FLIGHT_PER_HOST = 2
ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309 §2.5: parse at least the first 500 KiB
PAGE_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
_REDIRECTS = (301, 302, 303, 307, 308)
_MB = 1024 * 1024

Progress = Callable[[str, int, int], None]


class FetchError(Exception):
    """Why one URL could not become an article: one line naming the URL and the reason.

    ``kind`` lets callers tell failures apart without parsing text: ``url``, ``status``,
    ``timeout``, ``network``, ``private``, ``type``, ``size``, ``redirect``, ``robots`` or ``extract``.
    """

    def __init__(self, url: str, reason: str, kind: str = "") -> None:
        self.url = url
        self.reason = " ".join(str(reason).split())
        self.kind = kind
        super().__init__(self.url, self.reason)

    def __str__(self) -> str:
        return f"{self.url}: {self.reason}"


@dataclass(frozen=True)
class FetchSettings:
    timeout: float = DEFAULT_TIMEOUT
    max_bytes: int = int(DEFAULT_MAX_PAGE_MB * _MB)
    host_delay: float = DEFAULT_HOST_DELAY
    user_agent: str = DEFAULT_USER_AGENT
    max_redirects: int = MAX_REDIRECTS
    per_host: int = MAX_IN_FLIGHT_PER_HOST
    allow_private: bool = False

    @classmethod
    def from_config(
        cls,
        config: Any = None,
        *,
        timeout: float | None = None,
        max_page_mb: float | None = None,
        host_delay: float | None = None,
        user_agent: str | None = None,
        allow_private: bool | None = None,
    ) -> FetchSettings:
        """Keyword argument, else the Config field (when the Config has it), else the default."""

        def pick(given: Any, name: str, default: Any) -> Any:
            if given is not None:
                return given
            value = getattr(config, name, None)
            return default if value in (None, "") else value

        return cls(
            timeout=float(pick(timeout, "fetch_timeout", DEFAULT_TIMEOUT)),
            max_bytes=int(float(pick(max_page_mb, "max_page_mb", DEFAULT_MAX_PAGE_MB)) * _MB),
            host_delay=float(pick(host_delay, "fetch_delay", DEFAULT_HOST_DELAY)),
            user_agent=str(pick(user_agent, "user_agent", DEFAULT_USER_AGENT)),
            allow_private=bool(pick(allow_private, "fetch_allow_private", False)),
        )


@dataclass
class Response:
    """What came back for one URL, after redirects. ``content`` is empty for 3xx/4xx/5xx."""

    url: str  # as asked
    final_url: str
    status: int
    headers: httpx.Headers
    content: bytes = b""
    reason: str = ""
    redirects: list[str] = field(default_factory=list)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    @property
    def charset(self) -> str:
        match = re.search(r"charset\s*=\s*\"?([\w.:-]+)", self.headers.get("content-type", ""), re.I)
        return match.group(1) if match else ""


class HostGate:
    """At most ``per_host`` requests in flight to one host, and request starts to one host at
    least ``delay`` seconds apart. A start time is reserved under the lock, then slept for
    outside it, so two threads never both think the host is free."""

    def __init__(self, per_host: int = MAX_IN_FLIGHT_PER_HOST, delay: float = DEFAULT_HOST_DELAY) -> None:
        self.per_host = max(1, per_host)
        self.delay = max(0.0, delay)
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._next_start: dict[str, float] = {}

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        with self._lock:
            semaphore = self._slots.setdefault(host, threading.BoundedSemaphore(self.per_host))
        semaphore.acquire()
        try:
            with self._lock:
                now = time.monotonic()
                start = max(now, self._next_start.get(host, 0.0))
                self._next_start[host] = start + self.delay
            if start > now:
                time.sleep(start - now)
            yield
        finally:
            semaphore.release()


@dataclass
class _Robots:
    parser: RobotFileParser
    refusal: str = ""  # set when the whole host is off limits for this run, and why
    kind: str = "robots"  # the FetchError kind of the refusal ("private": the host is in a private network)


class Fetcher:
    """One run's worth of fetching: an httpx client, the per-host gate and the robots.txt cache.

    Share one Fetcher across all the pages of a run (it is thread-safe) and close it after;
    robots.txt is then asked for once per host.
    """

    def __init__(
        self,
        config: Any = None,
        *,
        timeout: float | None = None,
        max_page_mb: float | None = None,
        host_delay: float | None = None,
        user_agent: str | None = None,
        allow_private: bool | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.settings = FetchSettings.from_config(
            config, timeout=timeout, max_page_mb=max_page_mb, host_delay=host_delay, user_agent=user_agent,
            allow_private=allow_private,
        )
        self.gate = HostGate(self.settings.per_host, self.settings.host_delay)
        self._own_client = client is None
        self.client = client or httpx.Client(
            headers={"User-Agent": self.settings.user_agent},
            timeout=httpx.Timeout(self.settings.timeout),
            follow_redirects=False,  # followed by hand: robots, politeness and loops per hop
            transport=guarded_transport(self.settings.allow_private),
            trust_env=False,  # a proxy from the environment would connect past the guard
        )
        self._lock = threading.Lock()
        self._robots: dict[str, _Robots] = {}
        self._robots_locks: dict[str, threading.Lock] = {}

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ requests

    def get(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        accept: Sequence[str] | None = PAGE_TYPES,
        robots: bool = True,
        max_bytes: int | None = None,
        truncate: bool = False,
        raise_for_status: bool = True,
    ) -> Response:
        """GET ``url`` following at most ``max_redirects`` redirects.

        ``accept``: media types allowed for a 2xx body (None = any). ``truncate``: keep the first
        ``max_bytes`` instead of failing. A 304 comes back as is (conditional GETs).
        """
        _check_url(url, url, self.settings.allow_private)
        seen = [url]
        current = url
        while True:
            if robots:
                self._check_robots(url, current)
            resp = self._one(url, current, headers, accept, max_bytes, truncate)
            if resp.status in _REDIRECTS:
                if not resp.headers.get("location"):
                    raise FetchError(url, f"HTTP {resp.status} redirect without a Location header", "redirect")
                target = urldefrag(urljoin(current, resp.headers["location"]))[0]
                _check_url(url, target, self.settings.allow_private)
                if target in seen:
                    chain = " -> ".join([*seen[seen.index(target):], target])
                    raise FetchError(url, f"redirect loop ({chain})", "redirect")
                if len(seen) > self.settings.max_redirects:
                    raise FetchError(url, f"too many redirects (more than {self.settings.max_redirects})",
                                     "redirect")
                seen.append(target)
                current = target
                continue
            resp.redirects = seen[1:]
            if raise_for_status and resp.status >= 400:
                where = f" at {current}" if current != url else ""
                raise FetchError(url, f"HTTP {resp.status} {resp.reason}{where}".strip(), "status")
            return resp

    def _one(self, url: str, current: str, headers: dict[str, str] | None,
             accept: Sequence[str] | None, max_bytes: int | None, truncate: bool) -> Response:
        """One request, no redirects, under the host gate and a total deadline."""
        limit = self.settings.max_bytes if max_bytes is None else max_bytes
        timeout = self.settings.timeout
        with self.gate.slot(_host(current)), _deadline_of(timeout):
            deadline = time.monotonic() + timeout
            head = False  # whether the status line and headers had arrived
            try:
                with self.client.stream("GET", current, headers=headers or {}) as r:
                    head = True
                    resp = Response(url=url, final_url=str(r.url), status=r.status_code, headers=r.headers,
                                    reason=r.reason_phrase)
                    if r.status_code in _REDIRECTS or r.status_code == 304 or r.status_code >= 400:
                        return resp
                    if accept is not None and resp.content_type and resp.content_type not in accept:
                        raise FetchError(url, f"not HTML ({resp.content_type})", "type")
                    declared = r.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > limit and not truncate:
                        raise FetchError(url, f"too large ({int(declared) / _MB:.1f} MB, "
                                              f"limit {limit / _MB:.1f} MB)", "size")
                    resp.content = _read_body(r, url, limit, truncate, deadline, timeout)
                    return resp
            except PrivateAddress as exc:
                raise FetchError(url, str(exc), "private") from None
            except httpx.TimeoutException as exc:
                still = " (body still arriving)" if head else ""
                raise FetchError(url, f"timed out after {timeout:g} s{still}", "timeout") from exc
            except httpx.HTTPError as exc:
                raise FetchError(url, f"network error: {type(exc).__name__}: {exc}", "network") from exc

    # ------------------------------------------------------------------ robots.txt

    def allowed(self, url: str) -> bool:
        """Whether robots.txt lets us fetch ``url``; robots.txt is fetched once per host."""
        robots = self._robots_for(url)
        return not robots.refusal and robots.parser.can_fetch(self.settings.user_agent, url)

    def _check_robots(self, url: str, current: str) -> None:
        robots = self._robots_for(current)
        if robots.refusal:
            raise FetchError(url, robots.refusal, robots.kind)
        if not robots.parser.can_fetch(self.settings.user_agent, current):
            where = f" ({current})" if current != url else ""
            raise FetchError(url, f"disallowed by robots.txt{where}", "robots")

    def _robots_for(self, url: str) -> _Robots:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        with self._lock:
            lock = self._robots_locks.setdefault(origin, threading.Lock())
        with lock:  # one fetch per host even when many threads ask at once
            if origin not in self._robots:
                self._robots[origin] = self._load_robots(origin)
            return self._robots[origin]

    def _load_robots(self, origin: str) -> _Robots:
        """RFC 9309 §2.3.1: 4xx (or too many redirects) = no rules; 5xx or unreachable = stay
        away from the whole host (for this run)."""
        robots_url = f"{origin}/robots.txt"
        parser = RobotFileParser(robots_url)
        try:
            resp = self.get(robots_url, accept=None, robots=False, max_bytes=ROBOTS_MAX_BYTES,
                            truncate=True, raise_for_status=False)
        except FetchError as exc:
            if exc.kind == "private":
                parser.parse([])
                return _Robots(parser, exc.reason, "private")
            if exc.kind == "redirect":
                parser.parse([])
                return _Robots(parser)
            parser.parse([])
            return _Robots(parser, f"robots.txt unreachable ({exc.reason}); not fetching from this host")
        if resp.status >= 500:
            parser.parse([])
            return _Robots(parser, f"robots.txt answered HTTP {resp.status}; not fetching from this host "
                                   "for this run (RFC 9309)")
        lines = resp.content.decode("utf-8", errors="replace").splitlines() if resp.status < 400 else []
        parser.parse(lines)
        return _Robots(parser)


def _read_body(r: httpx.Response, url: str, limit: int, truncate: bool, deadline: float,
               timeout: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in r.iter_bytes():
        size += len(chunk)
        if size > limit:
            if truncate:
                chunks.append(chunk[: len(chunk) - (size - limit)])
                break
            raise FetchError(url, f"too large (more than {limit / _MB:.1f} MB)", "size")
        chunks.append(chunk)
        if time.monotonic() > deadline:
            raise FetchError(url, f"timed out after {timeout:g} s (body still arriving)", "timeout")
    return b"".join(chunks)


def _check_url(url: str, target: str, allow_private: bool = False) -> None:
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        what = "redirect to a non-http(s) URL" if target != url else "not an http(s) URL"
        raise FetchError(url, what + (f" ({target})" if target != url else ""), "url")
    if not allow_private:  # an address written in the URL is refused before any request
        try:
            literal = ipaddress.ip_address(parts.hostname.strip("[]"))
        except ValueError:
            return
        if not is_public_address(literal):
            where = f" (redirect to {target})" if target != url else ""
            raise FetchError(url, f"{_refusal(parts.hostname)}{where}", "private")


# ---------------------------------------------------------------------- the connection's guards


class PrivateAddress(Exception):
    """A host that resolves into the private network, refused before connecting."""


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable unicast: not loopback, private, link-local, multicast, reserved,
    unspecified or shared (CGN); an IPv4-mapped or 6to4-free IPv6 is judged by its IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def _refusal(host: str) -> str:
    return (f"{host} is in a private or reserved network; not fetched "
            "(set CRONACA_FETCH_ALLOW_PRIVATE=1 for intranet sources)")


_request_deadline = threading.local()  # each fetch runs in one thread, start to end


@contextmanager
def _deadline_of(seconds: float) -> Iterator[None]:
    """Every read, write and connect of this thread's request ends by ``seconds`` from now."""
    _request_deadline.at = time.monotonic() + seconds
    try:
        yield
    finally:
        _request_deadline.at = None


def _time_left(timeout: float | None) -> float | None:
    end = getattr(_request_deadline, "at", None)
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the request's total deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every read and write gets at most the request's time left."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _time_left(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, _time_left(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves the host itself, refuses private addresses, and connects to the checked one.
    TLS still verifies and names the host (httpcore passes the URL's host for SNI)."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None, socket_options: Any = None) -> httpcore.NetworkStream:
        timeout = _time_left(timeout)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        if not self.allow_private and not all(is_public_address(ipaddress.ip_address(a.split("%")[0]))
                                              for a in addresses):
            raise PrivateAddress(_refusal(host))
        error: Exception | None = None
        for address in addresses:
            try:
                stream = super().connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                             socket_options=socket_options)
                return _DeadlineStream(stream)
            except httpcore.ConnectError as exc:
                error = exc
        raise error or httpcore.ConnectError(f"no address for {host}")


def guarded_transport(allow_private: bool = False) -> httpx.HTTPTransport:
    """An httpx transport whose connections pass through ``_GuardedBackend``."""
    transport = httpx.HTTPTransport()
    pool = transport._pool  # httpx does not take a network backend; its pool does
    if not hasattr(pool, "_network_backend"):
        raise RuntimeError("this httpcore has no _network_backend: the fetch guard cannot be installed")
    pool._network_backend = _GuardedBackend(allow_private)
    return transport


def _host(url: str) -> str:
    return urlsplit(url).netloc.lower()


# ---------------------------------------------------------------------- extraction


@dataclass
class Extracted:
    """What a page says about itself; empty strings where it says nothing."""

    text: str
    title: str = ""
    date: str = ""
    author: str = ""
    sitename: str = ""
    url: str = ""  # canonical URL when the page names one on its own site, else ""


def extract_html(html: str | bytes, url: str) -> Extracted:
    """Main text and metadata of an article page (trafilatura: JSON-LD, og:, meta, <article>)."""
    import trafilatura

    doc = trafilatura.bare_extraction(html, url=url, with_metadata=True, include_comments=False,
                                      include_tables=True)
    if doc is None or not getattr(doc, "text", None):
        raise ItemError("no article text found in the page")
    date = ""
    if getattr(doc, "date", None):
        try:
            date = parse_date(doc.date)
        except ItemError:
            date = ""
    canonical = ""
    if doc.url:
        candidate = urldefrag(urljoin(url, doc.url))[0]
        if urlsplit(candidate).scheme in ("http", "https") and same_site(candidate, url):
            canonical = candidate
    sitename = doc.sitename or ""
    host = urlsplit(url).hostname or ""
    if sitename.lower() in {urlsplit(url).netloc.lower(), host, host.removeprefix("www.")}:
        sitename = ""  # trafilatura falls back to the host name, which is not the site's name
    return Extracted(text=doc.text, title=doc.title or "", date=date, author=doc.author or "",
                     sitename=sitename, url=canonical)


def same_site(a: str, b: str) -> bool:
    """Same registrable domain, roughly (www.x.it and m.x.it match; x.it and y.it don't).

    A page may only name a canonical URL on its own site: otherwise any page could claim to be
    another site's article and overwrite it in the library, since the URL is the article's id.
    """
    return _site(a) == _site(b)


def _site(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if re.fullmatch(r"[\d.]+|\[?[0-9a-f:]+\]?", host):
        return host + f":{urlsplit(url).port or ''}"
    labels = host.split(".")
    keep = 3 if len(labels) >= 3 and len(labels[-2]) <= 3 and len(labels[-1]) == 2 else 2  # x.co.uk
    return ".".join(labels[-keep:])


def page_to_article(
    resp: Response,
    *,
    title: str = "",
    date: str = "",
    source: str = "",
    default_source: str = "",
    link: str = "",
    path: str = "",
) -> Article:
    """Build the Article for a fetched page.

    ``title``/``date``: the feed item's, used when the page has none. ``source``: a label that
    wins over the page's site name (a feed's ``--source``); ``default_source``: used when the page
    has no site name (the feed's title). ``link``: the item's link, the URL of last resort.
    """
    where = path or resp.url
    try:
        if resp.content_type == "text/plain":
            info = Extracted(text=resp.content.decode(resp.charset) if resp.charset else decode(resp.content))
        else:
            if not resp.content_type:
                decode(resp.content)  # refuses binary bodies sent without a content type
            html: str | bytes = resp.content
            if resp.charset:
                html = resp.content.decode(resp.charset, errors="replace")
            info = extract_html(html, resp.final_url)
        return make_article(
            body=info.text,
            path=where,
            title=info.title or title,
            date=info.date or date,
            source=source or info.sitename or default_source or urlsplit(resp.final_url).hostname or "",
            url=info.url or resp.final_url or link or resp.url,
            where=where,
        )
    except (ItemError, UnicodeDecodeError, LookupError) as exc:
        raise FetchError(resp.url, str(exc), "extract") from exc


def fetch_article(
    url: str,
    *,
    fetcher: Fetcher | None = None,
    config: Any = None,
    title: str = "",
    date: str = "",
    source: str = "",
    default_source: str = "",
    path: str = "",
) -> Article:
    """Fetch one page and make it an Article; raises FetchError. Pass a shared ``fetcher`` when
    fetching many pages, so politeness and the robots.txt cache span them all."""
    own = fetcher is None
    fetcher = fetcher or Fetcher(config)
    try:
        resp = fetcher.get(url)
        return page_to_article(resp, title=title, date=date, source=source, default_source=default_source,
                               link=url, path=path or url)
    finally:
        if own:
            fetcher.close()


def fetch_urls(
    urls: Sequence[str],
    config: Any = None,
    *,
    fetcher: Fetcher | None = None,
    source: str = "",
    workers: int = DEFAULT_WORKERS,
    progress: Progress | None = None,
) -> tuple[list[Article], list[IngestError]]:
    """For ``cronaca ingest https://…``: Articles in the order given, and one IngestError per
    URL that failed (``str()`` = URL and reason). Hand both to ``Library.ingest_articles``."""
    unique = list(dict.fromkeys(u.strip() for u in urls if u.strip()))
    if not unique:
        return [], []
    own = fetcher is None
    fetcher = fetcher or Fetcher(config)
    results: list[Article | FetchError] = []
    done = 0
    lock = threading.Lock()

    def one(url: str) -> Article | FetchError:
        nonlocal done
        try:
            return fetch_article(url, fetcher=fetcher, source=source)
        except FetchError as exc:
            return exc
        finally:
            with lock:
                done += 1
                if progress:
                    progress("fetch", done, len(unique))

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(unique)))) as pool:
            results = list(pool.map(one, unique))
    finally:
        if own:
            fetcher.close()
    articles = [r for r in results if isinstance(r, Article)]
    errors = [IngestError(r.url, r.reason) for r in results if isinstance(r, FetchError)]
    return articles, errors
