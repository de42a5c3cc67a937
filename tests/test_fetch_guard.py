"""Fetching stays out of the private network and inside one deadline per request (issue 19).

The guard lives in the connection (``rag.fetch._GuardedBackend``): these tests go through real
sockets against the 127.0.0.1 news site, and stand in for "a public address" by narrowing
``is_public_address`` where a test needs one host to count as public.
"""

from __future__ import annotations

import ipaddress
import socket
import threading

import pytest

import rag.fetch as fetch
from rag.feeds import FeedStore
from rag.fetch import Fetcher, FetchError, fetch_article
from tests.support.news_site import NewsSite
from tests.test_feeds import GENOVA, rss, rss_items


@pytest.fixture
def site():
    with NewsSite() as s:
        yield s


ADMIN = "<html><body><article><h1>Admin</h1><p>" + "La password del pannello è hunter2. " * 20 + \
    "</p></article></body></html>"


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                     "100.64.0.1", "0.0.0.0", "224.0.0.1", "240.0.0.1", "255.255.255.255",
                                     "::1", "::", "fe80::1", "fc00::1", "ff02::1", "::ffff:127.0.0.1",
                                     "::ffff:10.0.0.1", "2001:db8::1"])
def test_private_and_reserved_addresses_are_not_public(address):
    assert not fetch.is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "151.101.1.140", "2a04:4e42::396"])
def test_global_addresses_are_public(address):
    assert fetch.is_public_address(ipaddress.ip_address(address))


def test_a_loopback_url_is_refused_before_any_request(site):
    url = site.page("/admin", ADMIN)
    with Fetcher(host_delay=0.01, timeout=3) as fetcher, pytest.raises(FetchError) as info:
        fetch_article(url, fetcher=fetcher)
    assert info.value.kind == "private" and "CRONACA_FETCH_ALLOW_PRIVATE" in str(info.value)
    assert site.requests == []
    with Fetcher(host_delay=0.01, timeout=3) as fetcher, pytest.raises(FetchError) as info:
        fetch_article(url.replace("127.0.0.1", "localhost"), fetcher=fetcher)  # a name, resolved then refused
    assert info.value.kind == "private" and site.requests == []


def test_the_setting_allows_intranet_sources(site):
    url = site.page(GENOVA, fixture="genova-diga.html")
    with Fetcher(allow_private=True, host_delay=0.01, timeout=3) as fetcher:
        assert "diga" in fetch_article(url, fetcher=fetcher).text.lower()
    config = type("C", (), {"fetch_allow_private": True})()
    assert Fetcher(config).settings.allow_private and not Fetcher().settings.allow_private


def _resolving(monkeypatch, answers: dict[str, list[str]]) -> list[str]:
    """``socket.getaddrinfo`` answering ``answers`` for test names; returns the names asked."""
    real, asked = socket.getaddrinfo, []

    def fake(host, port, *args, **kwargs):
        asked.append(host)
        if host in answers:
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                    for a in answers[host]]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(fetch.socket, "getaddrinfo", fake)
    return asked


def _only_loopback_one_is_public(monkeypatch) -> None:
    """127.0.0.1 (the test site) plays a public server; every other private address stays private."""
    real = fetch.is_public_address
    monkeypatch.setattr(fetch, "is_public_address", lambda a: str(a) == "127.0.0.1" or real(a))


def test_every_redirect_is_checked_again(site, monkeypatch):
    _only_loopback_one_is_public(monkeypatch)
    _resolving(monkeypatch, {"intranet.test": ["10.0.0.7"]})
    port = site.base_url.rsplit(":", 1)[1]
    site.redirect("/by-name", f"http://intranet.test:{port}/admin")
    site.redirect("/by-address", f"http://[::1]:{port}/admin")
    for path in ("/by-name", "/by-address"):
        with Fetcher(host_delay=0.01, timeout=3) as fetcher, pytest.raises(FetchError) as info:
            fetcher.get(site.url(path), robots=False)
        assert info.value.kind == "private", path
    assert [r.path for r in site.requests] == ["/by-name", "/by-address"]  # never the admin page


def test_the_connection_goes_to_the_address_that_was_checked(site, monkeypatch):
    """DNS rebinding: a name answering public then private cannot reach the private one, because
    the connection uses the checked answer; a name with any private answer is refused."""
    _only_loopback_one_is_public(monkeypatch)
    asked = _resolving(monkeypatch, {"news.test": ["127.0.0.1"], "mixed.test": ["127.0.0.1", "10.0.0.7"]})
    port = site.base_url.rsplit(":", 1)[1]
    site.page(GENOVA, fixture="genova-diga.html")
    with Fetcher(host_delay=0.01, timeout=3) as fetcher:
        resp = fetcher.get(f"http://news.test:{port}{GENOVA}", robots=False)
        assert resp.status == 200 and site.requests[-1].headers["Host"] == f"news.test:{port}"
        assert asked.count("news.test") == 1  # resolved once, by the guard, and that answer was used
        with pytest.raises(FetchError) as info:
            fetcher.get(f"http://mixed.test:{port}{GENOVA}", robots=False)
    assert info.value.kind == "private" and len(site.requests) == 1


def test_a_feed_item_pointing_into_the_private_network_is_not_fetched(make_lib, site, monkeypatch):
    """The issue's attack: a feed whose item links to an admin page on the loopback."""
    _only_loopback_one_is_public(monkeypatch)
    port = site.base_url.rsplit(":", 1)[1]
    site.page("/admin", ADMIN)
    item = rss_items(site)[GENOVA].replace(site.url(GENOVA), f"http://[::1]:{port}/admin")
    feed_url = site.feed("/feed.xml", rss("Trappola", [item]))
    lib = make_lib()
    feeds = FeedStore(lib.home)
    feeds.add(feed_url)
    report = feeds.refresh(lib)
    assert report.feeds[0].failed == 1 and "private" in report.errors[0]
    assert lib.articles() == [] and "/admin" not in [r.path for r in site.requests]


class _TrickledHead:
    """A server that sends its status line and headers one byte every ``every`` seconds."""

    HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nciao!"

    def __init__(self, every: float = 0.05) -> None:
        self.every, self.sent = every, 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(1)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/lento"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        conn, _ = self._sock.accept()
        with conn:
            conn.recv(65536)
            for i in range(len(self.HEAD)):
                if self._stop.wait(self.every):
                    return
                try:
                    conn.sendall(self.HEAD[i:i + 1])
                except OSError:
                    return
                self.sent += 1

    def __enter__(self) -> _TrickledHead:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(5)


def test_the_deadline_covers_the_status_line_and_headers():
    """Each byte arrives well within a read timeout; the headers alone take longer than the
    request's deadline: the fetch ends while the head is still arriving."""
    with _TrickledHead(every=0.05) as server, \
            Fetcher(allow_private=True, timeout=0.5, host_delay=0.0) as fetcher, pytest.raises(FetchError) as info:
        fetcher.get(server.url, robots=False)
    assert info.value.kind == "timeout"
    assert server.sent < len(_TrickledHead.HEAD) - 5  # cut before the head was complete


def test_the_refusal_reads_in_italian_on_the_page(site):
    from rag import page

    with Fetcher(host_delay=0.01, timeout=3) as fetcher, pytest.raises(FetchError) as info:
        fetcher.get(site.url("/admin"))
    line = page.located(str(info.value), "it")
    assert line.startswith(site.url("/admin") + ": 127.0.0.1 è in una rete privata") and "private" not in line
