"""Feeds and web pages against a real HTTP server on 127.0.0.1 (tests/support/news_site.py).

Every network fault is produced by the server for real (sleeps, trickled bytes, endless bodies,
redirect loops, robots.txt), and every stored article is checked in the library it went into.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import re
import sqlite3
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

import rag  # noqa: F401  (offline setup first)
from rag.feeds import FeedError, FeedStore, RefreshReport, parse_feed, slug
from rag.fetch import (
    DEFAULT_USER_AGENT,
    Fetcher,
    FetchError,
    FetchSettings,
    extract_html,
    fetch_article,
    fetch_urls,
    same_site,
)
from rag.store import StoreError
from tests.conftest import ROOT, HashEmbedder
from tests.support.news_site import NewsSite
from tests.support.stub_openai import StubOpenAI, reply

GENOVA = "/cronaca/2025/03/12/genova-diga-collaudo"
FIRENZE = "/cronaca/2025/03/14/firenze-tram-linea-3"
AGRIGENTO = "/cronaca/2025/03/15/agrigento-turni-acqua"
GAZZETTA = {GENOVA: "genova-diga.html", FIRENZE: "firenze-tram.html", AGRIGENTO: "agrigento-acqua.html"}
RSS = "/feed/cronaca.xml"
ATOM = "/atom.xml"
LANGHE = "/vino/langhe-vendemmia-anticipata"
BARI = "/notizie/teatro-riapre"
# text of the fixtures' navigation, cookie banners, share tools, related boxes, sidebars and footers
BOILERPLATE = ("cookie", "accetta", "accetto", "tutti i diritti riservati", "leggi anche", "abbonati",
               "i più letti", "condividi", "newsletter", "potrebbe interessarti", "correlati",
               "partita iva", "ultim'ora", "commenta", "personalizza", "sfoglia il giornale")


@pytest.fixture
def make_lib(make_lib):
    """Libraries that may fetch from this test's own 127.0.0.1 site (off by default)."""
    return lambda **kw: make_lib(**{"fetch_allow_private": True, **kw})


@pytest.fixture
def site():
    with NewsSite() as s:
        yield s


@pytest.fixture
def fetcher():
    """Fast politeness for tests: 50 ms between requests to a host, 3 s per request."""
    with Fetcher(allow_private=True, timeout=3.0, host_delay=0.05) as f:
        yield f


def serve_gazzetta(site: NewsSite, skip: tuple[str, ...] = ()) -> str:
    for path, name in GAZZETTA.items():
        if path not in skip:
            site.page(path, fixture=name)
    return site.feed(RSS, fixture="gazzetta-rss.xml")


def rss_items(site: NewsSite) -> dict[str, str]:
    """The fixture feed's <item> blocks by link path, to build other feeds from them."""
    text = site.fixture("gazzetta-rss.xml")
    return {re.search(r"<link>[^<]*?(/cronaca/[^<]+)</link>", block).group(1): block
            for block in re.findall(r"<item>.*?</item>", text, re.S)}


def rss(title: str, items: list[str]) -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
            f"<title>{title}</title><link>http://example.invalid/</link><description>prova</description>"
            + "".join(items) + "</channel></rss>")


def page_requests(site: NewsSite) -> list[str]:
    return [r.path for r in site.requests if r.path not in (RSS, ATOM, "/robots.txt")
            and not r.path.startswith("/feed")]


def assert_clean(text: str) -> None:
    lowered = text.lower()
    assert not [b for b in BOILERPLATE if b in lowered], text


# ---------------------------------------------------------------------- refresh


def test_rss_refresh_stores_articles_that_retrieval_finds(make_lib, site, fetcher):
    lib = make_lib()
    feeds = FeedStore(lib.home)
    feeds.add(serve_gazzetta(site))

    report = feeds.refresh(lib, fetcher=fetcher)

    assert (report.added, report.failed, report.errors) == (3, 0, [])
    hit = lib.retriever.search("Quanto costa la nuova diga foranea del porto di Genova?", k=3).hits[0]
    assert hit.url == site.url(GENOVA)
    stored = lib.article(site.url(GENOVA))
    assert stored.title == "Genova, la nuova diga del porto supera il primo collaudo"
    assert (stored.date, stored.source) == ("2025-03-12", "La Gazzetta del Golfo")
    assert "1,3 miliardi di euro" in stored.text
    for path in GAZZETTA:
        text = lib.article(site.url(path)).text
        assert len(text) > 600
        assert_clean(text)
    items = feeds.items(slug(site.url(RSS)))
    assert sorted(i["article_id"] for i in items) == sorted(site.url(p) for p in GAZZETTA)
    assert {i["status"] for i in items} == {"stored"}
    feed = feeds.list()[0]
    assert (feed.last_status, feed.items, feed.stored_items, feed.title) == (
        "ok", 3, 3, "La Gazzetta del Golfo - Cronaca")
    assert feed.etag
    assert site.seen("/robots.txt")[0].status == 404  # no robots.txt: everything allowed, asked once
    assert len(site.seen("/robots.txt")) == 1
    assert all(r.headers["User-Agent"] == DEFAULT_USER_AGENT for r in site.requests)
    assert DEFAULT_USER_AGENT.startswith(f"cronaca/{rag.__version__} (+https://github.com/")


def test_atom_feed_falls_back_to_the_entry_for_title_date_and_source(make_lib, site, fetcher):
    lib = make_lib()
    site.page(LANGHE, fixture="langhe-vendemmia.html")
    site.page(BARI, fixture="bari-teatro.html")  # no title, date, site name or canonical link
    feeds = FeedStore(lib.home)
    feeds.add(site.feed(ATOM, fixture="collina-atom.xml", content_type="application/atom+xml"), name="collina")

    report = feeds.refresh(lib, ["collina"], fetcher=fetcher)

    assert (report.added, report.failed) == (2, 0)
    bari = lib.article(site.url(BARI))
    assert bari.title == "Bari, riapre il teatro comunale sul lungomare dopo sette anni"
    assert (bari.date, bari.source) == ("2024-09-20", "Cronache di Collina")
    assert "novecento spettatori" in bari.text
    assert_clean(bari.text)
    langhe = lib.article(site.url(LANGHE))
    assert (langhe.date, langhe.source) == ("2024-09-18", "Cronache di Collina")
    assert_clean(langhe.text)


@pytest.mark.parametrize("with_etag", [True, False], ids=["etag", "last-modified"])
def test_second_refresh_is_a_conditional_get_answered_304(make_lib, site, fetcher, with_etag):
    lib = make_lib()
    feeds = FeedStore(lib.home)
    serve_gazzetta(site)
    feeds.add(site.feed(RSS, fixture="gazzetta-rss.xml", etag=with_etag))
    feeds.refresh(lib, fetcher=fetcher)
    pages = len(page_requests(site))
    chunks = lib.stats()["chunks"]

    again = feeds.refresh(lib, fetcher=fetcher)

    last = site.seen(RSS)[-1]
    assert last.status == 304
    if with_etag:
        assert last.headers["If-None-Match"] == feeds.list()[0].etag
    else:
        assert "If-None-Match" not in last.headers
        assert last.headers["If-Modified-Since"] == feeds.list()[0].last_modified
    assert again.feeds[0].status == "not modified"
    assert (again.added, again.updated, again.unchanged, again.failed) == (0, 0, 0, 0)
    assert len(page_requests(site)) == pages
    assert (len(lib.articles()), lib.stats()["chunks"]) == (3, chunks)


def test_forced_refetch_of_unchanged_pages_changes_nothing(make_lib, site, fetcher):
    lib = make_lib()
    feeds = FeedStore(lib.home)
    feeds.add(serve_gazzetta(site))
    feeds.refresh(lib, fetcher=fetcher)
    chunks = lib.stats()["chunks"]

    again = feeds.refresh(lib, force=True, fetcher=fetcher)

    assert "If-None-Match" not in site.seen(RSS)[-1].headers
    assert (again.added, again.updated, again.unchanged, again.failed) == (0, 0, 3, 0)
    assert again.feeds[0].fetched == 3
    assert lib.stats()["chunks"] == chunks


def test_article_corrected_after_publication_is_updated(make_lib, site, fetcher):
    lib = make_lib()
    feeds = FeedStore(lib.home)
    feeds.add(serve_gazzetta(site))
    feeds.refresh(lib, fetcher=fetcher)
    chunks = lib.stats()["chunks"]
    # the paper corrects the figure and says so in the feed item
    site.page(GENOVA, site.fixture("genova-diga.html").replace("1,3 miliardi", "1,6 miliardi"))
    site.feed(RSS, site.fixture("gazzetta-rss.xml").replace(
        "Superate le prove sui primi cassoni", "Aggiornato: superate le prove sui primi cassoni"))

    report = feeds.refresh(lib, fetcher=fetcher)

    result = report.feeds[0]
    assert (result.updated, result.added, result.failed, result.fetched, result.known) == (1, 0, 0, 1, 2)
    text = lib.article(site.url(GENOVA)).text
    assert "1,6 miliardi di euro" in text and "1,3 miliardi" not in text
    assert lib.stats()["chunks"] == chunks  # the old version's chunks are gone
    hit = lib.retriever.search("costo 1,6 miliardi diga Genova", k=1).hits[0]
    assert hit.url == site.url(GENOVA) and "1,6 miliardi" in lib.article(hit.article_id).text


def _fresh_feed(site: NewsSite, days_ago: int = 1) -> str:
    """The fixture feed with every item published ``days_ago`` days ago (RFC 822 dates)."""
    when = email.utils.format_datetime(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days_ago))
    return re.sub(r"<pubDate>[^<]+</pubDate>", f"<pubDate>{when}</pubDate>", site.fixture("gazzetta-rss.xml"))


@pytest.mark.parametrize("with_etag", [True, False], ids=["etag", "last-modified"])
def test_a_corrected_page_is_picked_up_while_its_feed_is_unchanged(make_lib, site, fetcher, with_etag):
    """Issue 19: the site corrects the page and leaves the RSS item alone (the feed answers 304).
    Recent items are asked for again with their own validators; one refresh brings the new text."""
    lib = make_lib()
    feeds = FeedStore(lib.home)
    for path, name in GAZZETTA.items():
        site.page(path, fixture=name, conditional=True, etag=with_etag)
    feeds.add(site.feed(RSS, _fresh_feed(site)))
    feeds.refresh(lib, fetcher=fetcher)
    chunks = lib.stats()["chunks"]

    quiet = feeds.refresh(lib, fetcher=fetcher)  # nothing changed: three 304s for the pages, one for the feed
    assert (quiet.feeds[0].status, quiet.updated, quiet.added, quiet.feeds[0].rechecked) == ("not modified", 0, 0, 3)
    asked = site.seen(GENOVA)[-1]
    assert asked.status == 304
    assert asked.headers.get("If-None-Match" if with_etag else "If-Modified-Since")

    site.page(GENOVA, site.fixture("genova-diga.html").replace("1,3 miliardi", "1,6 miliardi"), conditional=True,
              etag=with_etag, last_modified=email.utils.formatdate(time.time() + 60, usegmt=True))
    report = feeds.refresh(lib, fetcher=fetcher)

    assert site.seen(RSS)[-1].status == 304  # the feed itself said nothing
    assert (report.updated, report.added, report.failed) == (1, 0, 0)
    text = lib.article(site.url(GENOVA)).text
    assert "1,6 miliardi di euro" in text and "1,3 miliardi" not in text
    assert lib.stats()["chunks"] == chunks  # the old version's chunks were replaced, not added to
    assert "updated 1" in report.summary() and report.to_dict()["updated"] == 1

    site.remove(GENOVA)  # gone (404) after the correction: the stored version stays, no failed item
    gone = feeds.refresh(lib, fetcher=fetcher)
    assert (gone.failed, gone.updated) == (0, 0) and "1,6 miliardi" in lib.article(site.url(GENOVA)).text
    assert any("not rechecked" in note and "404" in note for note in gone.feeds[0].notes)
    assert {i["status"] for i in feeds.items(feeds.list()[0].name)} == {"stored"}


def test_only_recent_items_are_rechecked(make_lib, site, fetcher):
    lib = make_lib(feed_recheck_days=3)
    feeds = FeedStore(lib.home)
    serve_gazzetta(site)  # the fixture's items are from March 2025: long past the window
    feeds.add(site.feed(RSS, fixture="gazzetta-rss.xml"))
    feeds.refresh(lib, fetcher=fetcher)
    pages = len(page_requests(site))
    again = feeds.refresh(lib, fetcher=fetcher)
    assert again.feeds[0].rechecked == 0 and len(page_requests(site)) == pages

    off = make_lib(home=lib.home.parent / "off", feed_recheck_days=0)  # the setting turns it off
    fresh = FeedStore(off.home)
    fresh.add(site.feed("/feed/fresco.xml", _fresh_feed(site)), name="fresco")
    fresh.refresh(off, fetcher=fetcher)
    pages = len(page_requests(site))
    assert fresh.refresh(off, fetcher=fetcher).feeds[0].rechecked == 0 and len(page_requests(site)) == pages


def test_gone_page_is_reported_by_url_the_rest_stored_and_it_is_retried(make_lib, site, fetcher):
    lib = make_lib()
    feeds = FeedStore(lib.home)
    feeds.add(serve_gazzetta(site, skip=(AGRIGENTO,)))

    report = feeds.refresh(lib, fetcher=fetcher)

    assert (report.added, report.failed) == (2, 1)
    assert report.errors == [f"{site.url(AGRIGENTO)}: HTTP 404 Not Found"]
    failed = [i for i in feeds.items(feeds.list()[0].name) if i["status"] == "failed"]
    assert [(i["link"], i["error"], i["attempts"]) for i in failed] == [
        (site.url(AGRIGENTO), "HTTP 404 Not Found", 1)]
    assert feeds.list()[0].failed_items == 1

    site.page(AGRIGENTO, fixture="agrigento-acqua.html")  # back online; the feed itself is unchanged
    again = feeds.refresh(lib, fetcher=fetcher)

    assert site.seen(RSS)[-1].status == 304
    assert (again.feeds[0].status, again.added, again.failed) == ("not modified", 1, 0)
    assert lib.article(site.url(AGRIGENTO)).source == "La Gazzetta del Golfo"
    assert feeds.list()[0].failed_items == 0


def test_failed_item_retries_are_bounded(make_lib, site, fetcher):
    lib = make_lib()
    feeds = FeedStore(lib.home)
    feeds.add(serve_gazzetta(site, skip=(AGRIGENTO,)))
    for _ in range(5):
        feeds.refresh(lib, fetcher=fetcher)
    assert len(site.seen(AGRIGENTO)) == 3  # MAX_ATTEMPTS, then only when the entry changes
    assert [i["attempts"] for i in feeds.items(feeds.list()[0].name) if i["status"] == "failed"] == [3]


def test_item_errors_are_one_line_each_and_the_rest_is_stored(make_lib, site):
    lib = make_lib()
    site.robots("User-agent: *\nDisallow: /riservato/\n")
    good = site.page("/ok/genova", fixture="genova-diga.html")
    faults = {
        "/lenta": dict(fixture="firenze-tram.html", delay=3.0),
        "/goccia": dict(fixture="firenze-tram.html", trickle=0.02),
        "/foto.png": dict(body=b"\x89PNG\r\n\x1a\n" + bytes(200), content_type="image/png"),
        "/enorme": dict(endless=True),
        "/riservato/dossier": dict(fixture="agrigento-acqua.html"),
    }
    for path, options in faults.items():
        site.page(path, **options)
    site.redirect("/giro/a", "/giro/b")
    site.redirect("/giro/b", "/giro/a")
    links = [good] + [site.url(p) for p in [*faults, "/giro/a"]]
    site.feed(RSS, rss("Guasti", [f"<item><title>Notizia {i}</title><link>{u}</link></item>"
                                  for i, u in enumerate(links)]))
    feeds = FeedStore(lib.home)
    feeds.add(site.url(RSS))

    start = time.monotonic()
    with Fetcher(allow_private=True, timeout=0.5, host_delay=0.05, max_page_mb=1) as fast:
        report = feeds.refresh(lib, fetcher=fast)
    elapsed = time.monotonic() - start

    assert elapsed < 8
    assert (report.added, report.failed) == (1, 6)
    assert lib.article(site.url(GENOVA)).url == site.url(GENOVA)  # canonical, not /ok/genova
    reasons = {line.split(": ", 1)[0].removeprefix(site.base_url): line.split(": ", 1)[1]
               for line in report.errors}
    assert reasons == {
        "/lenta": "timed out after 0.5 s",
        "/goccia": "timed out after 0.5 s (body still arriving)",
        "/foto.png": "not HTML (image/png)",
        "/enorme": "too large (more than 1.0 MB)",
        "/riservato/dossier": "disallowed by robots.txt",
        "/giro/a": f"redirect loop ({site.url('/giro/a')} -> {site.url('/giro/b')} -> {site.url('/giro/a')})",
    }
    assert all("\n" not in line for line in report.errors)
    assert site.seen("/riservato/dossier") == []
    assert len(site.seen("/robots.txt")) == 1
    assert site.seen("/enorme")[0].sent < 8 * 1024 * 1024  # cut off early, not read to the end
    assert json.loads(json.dumps(report.to_dict()))["failed"] == 6


def test_malformed_or_missing_feeds_fail_alone(make_lib, site, fetcher):
    lib = make_lib()
    feeds = FeedStore(lib.home)
    feeds.add(site.feed("/rotto.xml", fixture="broken.xml"), name="rotto")
    feeds.add(site.url("/sparito.xml"), name="sparito")
    feeds.add(site.page("/pagina.html", fixture="bari-teatro.html"), name="pagina")
    feeds.add(serve_gazzetta(site), name="gazzetta")
    feeds.add(site.feed("/vuoto.xml", rss("Nessuna notizia oggi", [])), name="vuoto")

    report = feeds.refresh(lib, fetcher=fetcher)

    by_name = {f.name: f for f in report.feeds}
    assert (by_name["vuoto"].status, by_name["vuoto"].entries, by_name["vuoto"].failed) == ("ok", 0, 0)
    assert by_name["rotto"].error.startswith("malformed feed XML (")
    assert by_name["sparito"].error == "HTTP 404 Not Found"
    assert by_name["pagina"].error == "not an RSS or Atom feed (text/html)"
    assert (report.failed_feeds, report.failed, report.added) == (3, 3, 3)
    assert report.errors[0] == f"{site.url('/pagina.html')}: not an RSS or Atom feed (text/html)"
    state = {f.name: (f.last_status, f.last_error, f.etag) for f in feeds.list()}
    assert state["rotto"][0] == "failed" and state["rotto"][1].startswith("malformed feed XML")
    assert state["rotto"][2] == ""  # nothing recorded for a feed that could not be read
    assert state["gazzetta"][0] == "ok"


def test_item_moving_to_another_feed_is_not_fetched_or_stored_again(make_lib, site, fetcher):
    lib = make_lib()
    feeds = FeedStore(lib.home)
    feeds.add(serve_gazzetta(site), name="cronaca")
    feeds.refresh(lib, fetcher=fetcher)
    items = rss_items(site)
    site.feed(RSS, rss("Cronaca", [items[GENOVA], items[FIRENZE]]))
    feeds.add(site.feed("/feed/sicilia.xml", rss("Sicilia", [items[AGRIGENTO]])), name="sicilia")

    report = feeds.refresh(lib, fetcher=fetcher)

    sicilia = next(f for f in report.feeds if f.name == "sicilia")
    assert (sicilia.entries, sicilia.known, sicilia.fetched) == (1, 1, 0)
    assert (report.added, report.updated, report.failed) == (0, 0, 0)
    assert len(site.seen(AGRIGENTO)) == 1
    assert len(lib.articles()) == 3
    assert [(i["status"], i["article_id"]) for i in feeds.items("sicilia")] == [
        ("stored", site.url(AGRIGENTO))]


def test_same_text_under_two_urls_is_stored_once(make_lib, site, fetcher):
    lib = make_lib()
    original = site.page(GENOVA, fixture="genova-diga.html")
    copy = re.sub(r'<link rel="canonical"[^>]*>|<meta property="og:url"[^>]*>|"mainEntityOfPage"[^\n]*\n', "",
                  site.fixture("genova-diga.html"))
    syndicated = site.page("/partner/genova-diga", copy)
    items = rss_items(site)
    site.feed(RSS, rss("Cronaca", [items[GENOVA], items[GENOVA].replace(original, syndicated)
                                   .replace("gazzetta-48811", "partner-77")]))
    feeds = FeedStore(lib.home)
    feeds.add(site.url(RSS), name="cronaca")

    report = feeds.refresh(lib, fetcher=fetcher)

    assert (report.added, report.skipped, report.failed) == (1, 1, 0)
    assert [a.id for a in lib.articles()] == [original]
    state = {i["link"]: i for i in feeds.items("cronaca")}
    assert state[syndicated]["status"] == "skipped"
    assert "same text" in state[syndicated]["error"]
    assert state[original]["status"] == "stored"


def test_feed_source_label_and_redirected_link(make_lib, site, fetcher):
    lib = make_lib()
    site.page("/pagine/teatro", fixture="bari-teatro.html")
    site.redirect("/r/318", "/pagine/teatro", status=301)
    site.feed(ATOM, site.fixture("collina-atom.xml").replace(site.url(BARI), site.url("/r/318")),
              content_type="application/atom+xml")
    site.page(LANGHE, fixture="langhe-vendemmia.html")
    feeds = FeedStore(lib.home)
    feeds.add(site.url(ATOM), source="Rassegna regionale")

    report = feeds.refresh(lib, fetcher=fetcher)

    assert (report.added, report.failed) == (2, 0)
    assert {a.source for a in lib.articles()} == {"Rassegna regionale"}
    assert lib.article(site.url("/pagine/teatro")).path == site.url("/r/318")  # final URL is the id


def test_a_store_failure_leaves_nothing_half_written(make_lib, site, fetcher, monkeypatch):
    lib = make_lib()
    feeds = FeedStore(lib.home)
    feeds.add(serve_gazzetta(site), name="cronaca")

    def broken(*args, **kwargs):
        raise StoreError("Chroma server at 127.0.0.1:1 is not answering")

    monkeypatch.setattr(lib, "ingest_articles", broken)
    report = feeds.refresh(lib, fetcher=fetcher)

    assert report.feeds[0].error == "could not store articles: Chroma server at 127.0.0.1:1 is not answering"
    assert report.failed == 1
    feed = feeds.get("cronaca")
    assert (feed.last_status, feed.etag, feed.items) == ("failed", "", 0)

    monkeypatch.undo()
    again = feeds.refresh(lib, fetcher=fetcher)

    assert "If-None-Match" not in site.seen(RSS)[-1].headers
    assert (again.added, again.failed) == (3, 0)


def test_refresh_of_an_unknown_feed_name_is_a_clear_error(make_lib):
    lib = make_lib()
    with pytest.raises(FeedError, match="no feed named or at 'nessuno'"):
        FeedStore(lib.home).refresh(lib, ["nessuno"])


def test_refresh_report_counts_and_json(make_lib, site, fetcher):
    lib = make_lib()
    feeds = FeedStore(lib.home)
    feeds.add(serve_gazzetta(site, skip=(FIRENZE,)))
    report = feeds.refresh(lib, fetcher=fetcher)
    data = json.loads(json.dumps(report.to_dict()))
    assert {k: data[k] for k in ("added", "updated", "unchanged", "skipped", "failed", "failed_feeds")} == {
        "added": 2, "updated": 0, "unchanged": 0, "skipped": 0, "failed": 1, "failed_feeds": 0}
    assert data["feeds"][0]["errors"] == [f"{site.url(FIRENZE)}: HTTP 404 Not Found"]
    assert report.summary() == "1 feed: added 2, updated 0, unchanged 0, skipped 0, failed 1"
    assert RefreshReport().failed == 0


# ---------------------------------------------------------------------- the feed store


def test_feed_store_add_list_remove(tmp_path):
    feeds = FeedStore(tmp_path)
    feed = feeds.add("https://WWW.Ilpost.it/feed/#top")
    assert (feed.url, feed.name, feed.source) == ("https://www.ilpost.it/feed/", "ilpost-it-feed", "")
    feeds.add("https://www.ansa.it/sito/ansait_rss.xml", name="ansa", source="ANSA")

    with pytest.raises(FeedError, match="already added, as 'ilpost-it-feed'"):
        feeds.add("https://www.ilpost.it/feed/")
    with pytest.raises(FeedError, match="a feed named 'ansa' already exists"):
        feeds.add("https://example.org/rss", name="ansa")
    with pytest.raises(FeedError, match="not an http"):
        feeds.add("ftp://example.org/rss")

    assert [(f.name, f.source, f.items) for f in feeds.list()] == [("ansa", "ANSA", 0), ("ilpost-it-feed", "", 0)]
    assert feeds.remove("https://www.ilpost.it/feed/").name == "ilpost-it-feed"
    assert feeds.remove("ansa").url == "https://www.ansa.it/sito/ansait_rss.xml"
    assert feeds.list() == []
    with pytest.raises(FeedError, match="no feed named or at 'ansa'"):
        feeds.remove("ansa")
    with sqlite3.connect(tmp_path / "feeds.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_feed_store_is_safe_with_two_processes(tmp_path):
    script = ("import sys; from rag.feeds import FeedStore\n"
              "s = FeedStore(sys.argv[1])\n"
              "for i in range(30): s.add(f'https://example.org/{sys.argv[2]}/{i}.xml')\n"
              "print(len(s.list()))\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), tag], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for tag in "ab"]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert len(FeedStore(tmp_path).list()) == 60


def test_removing_a_feed_keeps_its_articles(make_lib, site, fetcher):
    lib = make_lib()
    feeds = FeedStore(lib.home)
    feeds.add(serve_gazzetta(site), name="cronaca")
    feeds.refresh(lib, fetcher=fetcher)
    feeds.remove("cronaca")
    assert len(lib.articles()) == 3
    with sqlite3.connect(lib.home / "feeds.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 0


def test_parse_feed_dates_keep_the_feeds_own_day():
    text = rss("Notte", ["<item><title>Mezzanotte</title><link>https://example.org/a</link>"
                         "<pubDate>Sat, 15 Mar 2025 00:30:00 +0100</pubDate></item>"])
    title, entries = parse_feed(text.encode(), "https://example.org/feed")
    assert title == "Notte"
    assert [(e.link, e.date, e.guid) for e in entries] == [("https://example.org/a", "2025-03-15",
                                                            "https://example.org/a")]


# ---------------------------------------------------------------------- one page


@pytest.mark.parametrize("name,path", [(name, path) for path, name in GAZZETTA.items()]
                         + [("langhe-vendemmia.html", LANGHE), ("bari-teatro.html", BARI)])
def test_fetched_pages_keep_the_article_and_drop_the_boilerplate(site, fetcher, name, path):
    url = site.page(path, fixture=name)
    article = fetch_article(url, fetcher=fetcher, title="Titolo dal feed", date="2020-01-01")
    assert_clean(article.text)
    assert article.url == url and article.id == url
    assert article.lang == "it"
    assert len(article.text.split()) > 90
    if name == "bari-teatro.html":
        assert (article.title, article.date) == ("Titolo dal feed", "2020-01-01")
    else:
        assert article.title != "Titolo dal feed" and article.date.startswith(("2024-09", "2025-03"))


def test_canonical_url_wins_unless_it_points_to_another_site(site, fetcher):
    site.page(GENOVA, fixture="genova-diga.html")
    tracked = fetch_article(site.url(GENOVA) + "?utm_source=rss&utm_medium=feed", fetcher=fetcher)
    assert tracked.url == site.url(GENOVA)

    hijack = site.fixture("firenze-tram.html").replace(site.url(FIRENZE), "https://www.altro-giornale.it/x")
    url = site.page("/copia/tram", hijack)
    assert fetch_article(url, fetcher=fetcher).url == url

    assert same_site("https://m.corriere.it/a", "https://www.corriere.it/b")
    assert same_site("https://www.bbc.co.uk/news/1", "https://bbc.co.uk/x")
    assert not same_site("https://www.corriere.it/a", "https://www.repubblica.it/a")
    assert not same_site("https://evil.co.uk/a", "https://bbc.co.uk/a")
    assert not same_site("http://127.0.0.1:8001/a", "http://127.0.0.1:8002/a")


def test_plain_text_pages_are_articles_too(site, fetcher):
    text = ("Roma, il Consiglio comunale ha approvato il nuovo piano per le piste ciclabili: "
            "sessanta chilometri in tre anni, con priorità ai collegamenti verso le scuole.")
    url = site.page("/testo.txt", text.encode("cp1252"), content_type="text/plain; charset=windows-1252")
    article = fetch_article(url, fetcher=fetcher, title="Piste ciclabili", source="Agenzia")
    assert (article.text, article.title, article.source, article.url) == (text, "Piste ciclabili", "Agenzia", url)


@pytest.mark.parametrize("setup,kind,reason", [
    (lambda s: s.page("/p", status=500), "status", "HTTP 500 Internal Server Error"),
    (lambda s: s.page("/p", status=410), "status", "HTTP 410 Gone"),
    (lambda s: s.page("/p", "<html>" + "x" * 300_000, content_type="text/html"), "size",
     "too large (0.3 MB, limit 0.1 MB)"),
    (lambda s: [s.redirect(f"/r{i}", f"/r{i + 1}") for i in range(7)] and s.redirect("/p", "/r0"), "redirect",
     "too many redirects (more than 5)"),
    (lambda s: s.redirect("/p", "ftp://127.0.0.1/file"), "url",
     "redirect to a non-http(s) URL (ftp://127.0.0.1/file)"),
    (lambda s: s.page("/p", bytes(range(256)) * 4, content_type=""), "extract", "binary file, not text"),
    (lambda s: s.page("/p", "<html><body><nav>Home</nav></body></html>"), "extract",
     "no article text (empty or too short)"),
    (lambda s: s.robots("User-agent: cronaca\nDisallow: /\n\nUser-agent: *\nAllow: /\n")
     or s.page("/p", fixture="genova-diga.html"), "robots", "disallowed by robots.txt"),
    (lambda s: s.robots("errore", status=503) or s.page("/p", fixture="genova-diga.html"), "robots",
     "robots.txt answered HTTP 503; not fetching from this host for this run (RFC 9309)"),
])
def test_page_faults_become_one_line_fetch_errors(site, setup, kind, reason):
    setup(site)
    with Fetcher(allow_private=True, timeout=2, host_delay=0.01, max_page_mb=0.1) as fetcher, \
            pytest.raises(FetchError) as caught:
        fetch_article(site.url("/p"), fetcher=fetcher)
    assert (caught.value.kind, caught.value.reason) == (kind, reason)
    assert str(caught.value) == f"{site.url('/p')}: {reason}"


def test_a_robots_refusal_keeps_us_off_the_host_and_robots_is_asked_once(site):
    site.robots("", status=503)
    for path in GAZZETTA:
        site.page(path, fixture=GAZZETTA[path])
    with Fetcher(allow_private=True, host_delay=0.01) as fetcher:
        articles, errors = fetch_urls([site.url(p) for p in GAZZETTA], fetcher=fetcher)
    assert articles == [] and len(errors) == 3
    assert [r.path for r in site.requests] == ["/robots.txt"]


def test_slow_trickle_is_cut_by_the_total_deadline(site):
    site.page("/goccia", "<html><body><article><p>" + "parola " * 200 + "</p></article></body></html>",
              trickle=0.01)  # 1,4 kB at 100 bytes/s: each read is quick, the whole is 14 s
    start = time.monotonic()
    with Fetcher(allow_private=True, timeout=0.6, host_delay=0.01) as fetcher, \
            pytest.raises(FetchError, match="timed out"):
        fetch_article(site.url("/goccia"), fetcher=fetcher)
    assert time.monotonic() - start < 2.5


def test_fetch_urls_is_polite_per_host_and_reports_failures(make_lib, site):
    paths = [GENOVA, FIRENZE, AGRIGENTO, LANGHE, BARI]
    for path, name in zip(paths, [*GAZZETTA.values(), "langhe-vendemmia.html", "bari-teatro.html"]):
        site.page(path, fixture=name, delay=0.3)  # each answer takes a while: requests overlap
    urls = [site.url(p) for p in paths] + [site.url("/mancante")]

    with Fetcher(allow_private=True, host_delay=0.1, timeout=5) as fetcher:
        articles, errors = fetch_urls(urls, fetcher=fetcher, workers=6)

    assert [a.url for a in articles] == [site.url(p) for p in paths]
    assert [str(e) for e in errors] == [f"{site.url('/mancante')}: HTTP 404 Not Found"]
    assert site.max_in_flight == 2
    starts = sorted(r.start for r in site.requests)
    assert min(b - a for a, b in zip(starts, starts[1:])) >= 0.06  # sent 0.1 s apart; slack for a loaded machine

    lib = make_lib()
    report = lib.ingest_articles(articles, errors)
    assert (report.added, report.failed) == (5, 1)


def test_fetch_settings_come_from_keywords_then_config_then_defaults():
    config = SimpleNamespace(fetch_timeout=7.0, max_page_mb=2.0, fetch_delay=0.5, user_agent="")
    settings = FetchSettings.from_config(config, host_delay=0.05)
    assert (settings.timeout, settings.max_bytes, settings.host_delay, settings.user_agent) == (
        7.0, 2 * 1024 * 1024, 0.05, DEFAULT_USER_AGENT)
    defaults = FetchSettings.from_config(None)
    assert (defaults.timeout, defaults.max_bytes, defaults.host_delay) == (20.0, 5 * 1024 * 1024, 1.0)


def test_extract_html_reads_json_ld_metadata(site):
    info = extract_html(site.fixture("firenze-tram.html"), site.url("/qualsiasi"))
    assert (info.title, info.date, info.author, info.sitename, info.url) == (
        "Firenze, la linea 3 del tram slitta all'autunno", "2025-03-14", "Lorenzo Bartolini",
        "La Gazzetta del Golfo", site.url(FIRENZE))


# ---------------------------------------------------------------------- the command line, end to end


def test_cli_feed_add_refresh_ask_update_and_gone(site, tmp_path, monkeypatch, capsys):
    """`cronaca feed add URL && cronaca feed refresh`, then `ask` cites the article URLs; a second
    refresh stores nothing; a corrected page is updated; a page gone is named by its URL."""
    from rag.cli import main

    monkeypatch.setenv("CRONACA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CRONACA_FETCH_DELAY", "0.02")
    monkeypatch.setenv("CRONACA_FETCH_ALLOW_PRIVATE", "1")  # the news site is on 127.0.0.1
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "CHROMA_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("rag.library.make_embedder", lambda config: HashEmbedder())
    monkeypatch.setattr("rag.embeddings.make_embedder", lambda config: HashEmbedder())  # cronaca ask warms it
    feed_url = serve_gazzetta(site)

    assert main(["feed", "add", feed_url, "--name", "gazzetta"]) == 0
    assert main(["feed", "refresh", "--json"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (first["added"], first["failed"]) == (3, 0)

    # the answer comes from the scripted model (the fast test embedder does not suit the offline
    # answerer); what matters here is that its citations carry the articles' URLs
    with StubOpenAI() as stub:
        stub.script([reply("La nuova diga costa 1,3 miliardi di euro [1].")])
        monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "test")
        assert main(["ask", "Quanto costa la nuova diga del porto di Genova?", "--json"]) == 0
        monkeypatch.delenv("OPENAI_BASE_URL")
        monkeypatch.delenv("OPENAI_API_KEY")
    answer = json.loads(capsys.readouterr().out)
    assert answer["mode"] == "llm" and answer["citations"]
    assert all(c["url"].startswith(site.url("/cronaca/")) for c in answer["citations"])
    assert answer["citations"][0]["url"] == site.url(GENOVA)

    assert main(["feed", "refresh", "--json"]) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (second["added"], second["updated"], second["failed"]) == (0, 0, 0)

    # a correction after publication, and a page that disappears
    corrected = site.fixture("firenze-tram.html").replace("Il cronoprogramma originario", "Il calendario originario", 1)
    site.page(FIRENZE, body=corrected)
    site.page(AGRIGENTO, status=404, body="<html><body>non trovato</body></html>")
    assert main(["feed", "refresh", "--force", "--json"]) == 1  # an item failed: exit 1
    third = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert third["updated"] == 1 and third["failed"] == 1
    assert any(site.url(AGRIGENTO) in line and "404" in line for line in third["errors"])

    assert main(["feed", "list", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["name"] == "gazzetta" and listed["url"] == feed_url
