"""A small news site on 127.0.0.1 for feed and fetch tests (standard library only).

::

    with NewsSite() as site:
        site.page("/cronaca/diga", fixture="genova-diga.html")
        feed_url = site.feed("/feed.xml", fixture="gazzetta-rss.xml")
        ...
        assert site.seen("/feed.xml")[-1].status == 304

A real HTTP/1.1 server in a thread (``ThreadingHTTPServer``), so the code under test goes through
sockets, headers, redirects and timeouts exactly as it would against a newspaper. Fixtures under
``tests/fixtures/feeds`` may contain ``{{BASE}}``, replaced by this server's base URL. Unknown
paths answer 404, so robots.txt is "missing" unless :meth:`robots` sets it.

Faults, scripted per route: ``status``, ``delay`` (sleep before answering), ``trickle`` (one
byte every so many seconds), ``endless`` (a chunked body that never ends), any ``content_type``
and extra ``headers``, :meth:`redirect`. Feeds get an ETag and Last-Modified and answer 304 to
a matching conditional GET. Every request is recorded (:attr:`requests`), with the number of
requests in flight at once (:attr:`max_in_flight`), so tests can check politeness too.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "feeds"
ENDLESS_CAP = 64 * 1024 * 1024  # an "endless" body still stops here, so a broken client can't hang a test


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    conditional: bool = False  # ETag + Last-Modified, 304 to a matching If-None-Match / If-Modified-Since
    etag: bool = True  # with conditional: send an ETag (else Last-Modified only)
    last_modified: str = ""
    delay: float = 0.0
    trickle: float = 0.0
    endless: bool = False


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    start: float  # time.monotonic()
    end: float
    status: int
    sent: int  # body bytes written


class NewsSite:
    def __init__(self, fixtures: Path = FIXTURES) -> None:
        self.fixtures = fixtures
        self.routes: dict[str, Route] = {}
        self._requests: list[Seen] = []
        self._handling = 0  # handlers not yet done recording their request
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._recorded = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        host, port = self._server.server_address[:2]
        self.base_url = f"http://{host}:{port}"

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> NewsSite:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # sleeping and trickling handlers wake up and end
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> NewsSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ content

    def url(self, path: str) -> str:
        return self.base_url + path

    def fixture(self, name: str) -> str:
        return (self.fixtures / name).read_text(encoding="utf-8").replace("{{BASE}}", self.base_url)

    def page(self, path: str, body: str | bytes | None = None, *, fixture: str | None = None,
             **options) -> str:
        """Serve ``body`` (or a fixture) at ``path``; options are :class:`Route` fields. Returns the URL."""
        if fixture is not None:
            body = self.fixture(fixture)
        data = body.encode("utf-8") if isinstance(body, str) else (body or b"")
        with self._lock:
            options.setdefault("last_modified", formatdate(time.time(), usegmt=True))
            self.routes[path] = Route(body=data, **options)
        return self.url(path)

    def feed(self, path: str, body: str | bytes | None = None, *, fixture: str | None = None,
             content_type: str = "application/rss+xml; charset=utf-8", **options) -> str:
        """A feed: like :meth:`page`, answering conditional GETs with 304 when unchanged."""
        options.setdefault("conditional", True)
        return self.page(path, body, fixture=fixture, content_type=content_type, **options)

    def redirect(self, path: str, to: str, status: int = 302) -> str:
        target = to if "://" in to else self.url(to)
        return self.page(path, b"", status=status, headers={"Location": target})

    def robots(self, text: str = "", status: int = 200) -> None:
        self.page("/robots.txt", text, status=status, content_type="text/plain; charset=utf-8")

    def remove(self, path: str) -> None:
        with self._lock:
            self.routes.pop(path, None)

    @property
    def requests(self) -> list[Seen]:
        """Every request so far, in order. A handler records its request after the last byte of
        its answer (with the end time and the bytes sent), so a client can be done before the
        record is: this waits (at most 2 s, for answers still trickling) until every handler
        that started has recorded."""
        with self._recorded:
            self._recorded.wait_for(lambda: self._handling == 0, timeout=2.0)
            return list(self._requests)

    def seen(self, path: str) -> list[Seen]:
        """Requests for ``path`` (query string ignored), in order."""
        return [r for r in self.requests if urlsplit(r.path).path == path]

    def _record(self, seen: Seen) -> None:
        with self._recorded:
            self._requests.append(seen)
            self._handling -= 1
            self._recorded.notify_all()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """Clients that hang up (timeouts, size limits) are the point of these tests, not errors."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def _handler_for(site: NewsSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "NewsSite/1.0"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            start = time.monotonic()
            with site._lock:
                site._handling += 1
                site.in_flight += 1
                site.max_in_flight = max(site.max_in_flight, site.in_flight)
                route = site.routes.get(self.path) or site.routes.get(urlsplit(self.path).path)
            self._status, self._sent, self._counted = 404, 0, True
            try:
                self._status = self._answer(route)
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                self.close_connection = True
            finally:
                self._uncount()
                site._record(Seen("GET", self.path, dict(self.headers.items()), start, time.monotonic(),
                                  self._status, self._sent))

        def _uncount(self) -> None:
            """A request stops being "in flight" when its answer starts: the client cannot have
            finished with it before then, so overlaps seen here are real client concurrency."""
            if self._counted:
                self._counted = False
                with site._lock:
                    site.in_flight -= 1

        def _answer(self, route: Route | None) -> int:
            """Write the response; returns its status (0 when the server stopped first)."""
            if route is None:
                self._uncount()
                return self._send(404, b"<html><body><h1>Pagina non trovata</h1></body></html>",
                                  "text/html; charset=utf-8", {})
            self._status = route.status
            if route.delay and site._stopping.wait(route.delay):
                return 0
            self._uncount()
            headers = dict(route.headers)
            if route.conditional:
                etag = '"' + hashlib.sha1(route.body).hexdigest()[:16] + '"'
                headers["Last-Modified"] = route.last_modified
                if route.etag:
                    headers["ETag"] = etag
                inm, ims = self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since")
                if (route.etag and inm == etag) or (inm is None and ims == route.last_modified):
                    return self._send(304, b"", "", headers)
            if route.endless:
                self._send_endless(route)
            elif route.trickle:
                self._send_trickle(route, headers)
            else:
                self._send(route.status, route.body, route.content_type, headers)
            return route.status

        def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str]) -> int:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            for key, value in headers.items():
                self.send_header(key, value)
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if status != 304:
                self.wfile.write(body)
                self._sent += len(body)
            return status

        def _send_trickle(self, route: Route, headers: dict[str, str]) -> None:
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(len(route.body)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.close_connection = True
            for i in range(len(route.body)):
                self.wfile.write(route.body[i : i + 1])
                self.wfile.flush()
                self._sent += 1
                if site._stopping.wait(route.trickle):
                    break

        def _send_endless(self, route: Route) -> None:
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            block = (b"<p>" + b"notizia " * 8000 + b"</p>\n")[: 64 * 1024]
            self.close_connection = True
            while self._sent < ENDLESS_CAP and not site._stopping.is_set():
                self.wfile.write(f"{len(block):x}\r\n".encode() + block + b"\r\n")
                self._sent += len(block)

    return Handler
