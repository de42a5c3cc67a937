"""RSS/Atom feeds: which ones we follow, what each item became, and refreshing them.

State lives in ``<CRONACA_HOME>/feeds.sqlite`` (WAL, a short transaction per change, so a page
and a terminal can refresh at the same time). A refresh asks for each feed with a conditional GET
(304 = nothing new), fetches only items that are new, changed in the feed, or failed before (a
few attempts), and hands one feed's articles to ``Library.ingest_articles`` in one call. Item
state and the feed's ETag are written only after that call returns: killed half-way, the next
run simply does the work again, and the library turns repeats into "unchanged".

An item is the same item across feeds when its guid or link matches: moving from one feed to
another does not fetch or store it again.

Corrections: a site that corrects an article rarely touches its RSS item, so "the feed is
unchanged" says nothing about the page. On every refresh the stored items published in the last
``recheck_days`` days (``CRONACA_FEED_RECHECK_DAYS``, default 3; items without a date count from
when they were first seen) are asked for again with a conditional GET on their own validators
(the page's ETag / Last-Modified): a 304 costs a few bytes, a changed page goes through the
library like any other, which replaces the article's chunks in one write, and counts as
``updated``.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import io
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urlsplit, urlunsplit

from rag.fetch import DEFAULT_WORKERS, Fetcher, FetchError, page_to_article
from rag.models import Article
from rag.parsing import IngestError, ItemError, parse_date

DB_NAME = "feeds.sqlite"
MAX_ATTEMPTS = 3  # a failed item is retried on later refreshes this many times in all, then only when it changes
_SCHEMA_VERSION = 2  # 2: items keep their page's validators (page_etag, page_modified)
DEFAULT_RECHECK_DAYS = 3
_OK = ("stored", "skipped")  # item states that need no new fetch while the feed entry is unchanged

Progress = Callable[[str, int, int], None]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feeds (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL DEFAULT '',
    title TEXT NOT NULL DEFAULT '',
    etag TEXT NOT NULL DEFAULT '',
    last_modified TEXT NOT NULL DEFAULT '',
    last_run TEXT NOT NULL DEFAULT '',
    last_status TEXT NOT NULL DEFAULT '',
    last_error TEXT NOT NULL DEFAULT '',
    added TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    feed_id INTEGER NOT NULL REFERENCES feeds(id) ON DELETE CASCADE,
    guid TEXT NOT NULL,
    link TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    date TEXT NOT NULL DEFAULT '',
    entry_hash TEXT NOT NULL DEFAULT '',
    article_id TEXT NOT NULL DEFAULT '',
    content_hash TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    page_etag TEXT NOT NULL DEFAULT '',
    page_modified TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (feed_id, guid)
);
CREATE INDEX IF NOT EXISTS items_by_link ON items(link);
CREATE INDEX IF NOT EXISTS items_by_guid ON items(guid);
"""


class FeedError(Exception):
    """A feed cannot be added, found or removed; the message says why and what to do."""


@dataclass
class Feed:
    url: str
    name: str
    source: str = ""  # label stored as every article's source; "" = the page's site name
    title: str = ""  # the feed's own title, from its last successful fetch
    etag: str = ""
    last_modified: str = ""
    last_run: str = ""
    last_status: str = ""  # "", "ok", "not modified", "failed"
    last_error: str = ""
    added: str = ""
    items: int = 0
    stored_items: int = 0
    failed_items: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FeedResult:
    """One feed's part of a refresh. ``failed`` counts items; ``error`` is the feed's own."""

    name: str
    url: str
    status: str = "ok"  # "ok", "not modified", "failed"
    error: str = ""
    entries: int = 0
    fetched: int = 0
    known: int = 0  # entries already stored (here or from another feed), not fetched again
    rechecked: int = 0  # recent stored items asked for again (conditional GET), for corrections
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    article_ids: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.status == "failed":
            return f"{self.name}: failed: {self.error}"
        head = f"{self.name}: not modified" if self.status == "not modified" else f"{self.name}"
        return (f"{head}: {self.entries} entries, {self.fetched} fetched, added {self.added}, updated "
                f"{self.updated}, unchanged {self.unchanged}, skipped {self.skipped}, failed {self.failed}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RefreshReport:
    feeds: list[FeedResult] = field(default_factory=list)

    def _sum(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.feeds)

    @property
    def added(self) -> int:
        return self._sum("added")

    @property
    def updated(self) -> int:
        return self._sum("updated")

    @property
    def unchanged(self) -> int:
        return self._sum("unchanged")

    @property
    def skipped(self) -> int:
        return self._sum("skipped")

    @property
    def failed_feeds(self) -> int:
        return sum(f.status == "failed" for f in self.feeds)

    @property
    def failed(self) -> int:
        """Failed items plus failed feeds: anything non-zero means exit status 1."""
        return self._sum("failed") + self.failed_feeds

    @property
    def errors(self) -> list[str]:
        """One line per failure, feed-level first: ``<url>: <reason>``."""
        return ([f"{f.url}: {f.error}" for f in self.feeds if f.status == "failed"]
                + [e for f in self.feeds for e in f.errors])

    def summary(self) -> str:
        return (f"{len(self.feeds)} feed{'s' if len(self.feeds) != 1 else ''}: added {self.added}, "
                f"updated {self.updated}, unchanged {self.unchanged}, skipped {self.skipped}, "
                f"failed {self.failed}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added, "updated": self.updated, "unchanged": self.unchanged,
            "skipped": self.skipped, "failed": self.failed, "failed_feeds": self.failed_feeds,
            "errors": self.errors, "feeds": [f.to_dict() for f in self.feeds],
        }


@dataclass
class FeedEntry:
    """One feed item as the feed describes it; ``entry_hash`` changes when the item does."""

    guid: str
    link: str
    title: str
    date: str
    entry_hash: str


@dataclass
class _Outcome:
    """What happened to one entry in this run, written to ``items`` at the end."""

    entry: FeedEntry
    status: str  # "stored", "skipped", "failed"
    article_id: str = ""
    content_hash: str = ""
    error: str = ""
    attempted: bool = False
    page_etag: str = ""
    page_modified: str = ""


NOT_MODIFIED = "not modified"  # what a recheck's conditional GET answered 304 becomes


class FeedStore:
    """The feeds a library follows, in ``<home>/feeds.sqlite``. Cheap to create: every call
    opens its own connection, so one FeedStore may be shared by threads."""

    def __init__(self, home: str | Path) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.path = self.home / DB_NAME
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")  # persistent: readers don't wait for a writer
            if db.execute("PRAGMA user_version").fetchone()[0] < _SCHEMA_VERSION:
                db.executescript(_SCHEMA)
                have = {r["name"] for r in db.execute("PRAGMA table_info(items)")}
                for column in ("page_etag", "page_modified"):  # a version-1 file
                    if column not in have:
                        db.execute(f"ALTER TABLE items ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
                db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA busy_timeout=30000")
        try:
            yield db
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, taken for writing up front so two processes never deadlock upgrading."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # ------------------------------------------------------------------ feeds

    def add(self, url: str, name: str | None = None, source: str | None = None) -> Feed:
        """Follow a feed. ``name`` defaults to a slug of host and path (``ilpost-it-feed``)."""
        url = normalise_url(url)
        name = (name or "").strip() or slug(url)
        if "://" in name or not name:
            raise FeedError(f"invalid feed name '{name}': use letters, digits and dashes")
        with self._write() as db:
            row = db.execute("SELECT name FROM feeds WHERE url = ?", (url,)).fetchone()
            if row:
                raise FeedError(f"feed {url} is already added, as '{row['name']}'")
            row = db.execute("SELECT url FROM feeds WHERE name = ?", (name,)).fetchone()
            if row:
                raise FeedError(f"a feed named '{name}' already exists ({row['url']}); choose another name")
            try:
                db.execute("INSERT INTO feeds (url, name, source, added) VALUES (?, ?, ?, ?)",
                           (url, name, (source or "").strip(), _now()))
            except sqlite3.IntegrityError as exc:  # another process added it between our checks
                raise FeedError(f"feed {url} or name '{name}' is already added") from exc
        feed = self.get(name)
        assert feed is not None
        return feed

    def get(self, url_or_name: str) -> Feed | None:
        key = url_or_name.strip()
        try:
            url = normalise_url(key)
        except FeedError:
            url = key
        with self._connect() as db:
            rows = self._select(db, "WHERE f.name = ? OR f.url = ?", (key, url))
        return rows[0] if rows else None

    def list(self) -> list[Feed]:
        with self._connect() as db:
            return self._select(db, "", ())

    def remove(self, url_or_name: str) -> Feed:
        """Stop following a feed and forget its items. Stored articles stay in the library
        (delete them with ``cronaca delete``): a feed is where news came from, not what it is."""
        feed = self.get(url_or_name)
        if feed is None:
            raise FeedError(f"no feed named or at '{url_or_name}' (see `cronaca feed list`)")
        with self._write() as db:
            db.execute("DELETE FROM feeds WHERE url = ?", (feed.url,))
        return feed

    def items(self, url_or_name: str) -> list[dict[str, Any]]:
        """Per-item state of one feed (guid, link, article_id, status, error, …), newest first."""
        feed = self.get(url_or_name)
        if feed is None:
            raise FeedError(f"no feed named or at '{url_or_name}' (see `cronaca feed list`)")
        with self._connect() as db:
            rows = db.execute(
                "SELECT i.* FROM items i JOIN feeds f ON f.id = i.feed_id WHERE f.url = ? "
                "ORDER BY i.first_seen DESC, i.date DESC", (feed.url,)).fetchall()
        return [{k: v for k, v in dict(r).items() if k != "feed_id"} for r in rows]

    @staticmethod
    def _select(db: sqlite3.Connection, where: str, args: tuple) -> list[Feed]:
        rows = db.execute(
            "SELECT f.*, COUNT(i.guid) AS n_items, "
            "COALESCE(SUM(i.status IN ('stored', 'skipped')), 0) AS n_stored, "
            "COALESCE(SUM(i.status = 'failed'), 0) AS n_failed "
            f"FROM feeds f LEFT JOIN items i ON i.feed_id = f.id {where} GROUP BY f.id ORDER BY f.name",
            args).fetchall()
        return [Feed(url=r["url"], name=r["name"], source=r["source"], title=r["title"], etag=r["etag"],
                     last_modified=r["last_modified"], last_run=r["last_run"], last_status=r["last_status"],
                     last_error=r["last_error"], added=r["added"], items=r["n_items"],
                     stored_items=r["n_stored"], failed_items=r["n_failed"]) for r in rows]

    # ------------------------------------------------------------------ refresh

    def refresh(
        self,
        library: Any,
        names: Sequence[str] | None = None,
        *,
        force: bool = False,
        fetcher: Fetcher | None = None,
        progress: Progress | None = None,
        workers: int = DEFAULT_WORKERS,
    ) -> RefreshReport:
        """Fetch the named feeds (all when ``names`` is empty) and store what is new or changed.

        ``force``: no conditional GET, and every entry's page is fetched again (the library still
        leaves unchanged articles alone). Raises FeedError only for an unknown name; everything
        that goes wrong later is reported per feed or per item in the RefreshReport.
        """
        feeds = self.list()
        if names:
            chosen = []
            for key in names:
                feed = self.get(key)
                if feed is None:
                    raise FeedError(f"no feed named or at '{key}' (see `cronaca feed list`)")
                if feed.url not in {f.url for f in chosen}:
                    chosen.append(feed)
            feeds = chosen
        report = RefreshReport()
        own = fetcher is None
        fetcher = fetcher or Fetcher(library.config)
        days = getattr(library.config, "feed_recheck_days", DEFAULT_RECHECK_DAYS)
        try:
            for feed in feeds:
                report.feeds.append(self._refresh_one(library, feed, fetcher, force, progress, workers, days))
        finally:
            if own:
                fetcher.close()
        return report

    def _refresh_one(self, library: Any, feed: Feed, fetcher: Fetcher, force: bool,
                     progress: Progress | None, workers: int, recheck_days: int = DEFAULT_RECHECK_DAYS
                     ) -> FeedResult:
        result = FeedResult(name=feed.name, url=feed.url)
        conditional: dict[str, str] = {}
        if not force:
            if feed.etag:
                conditional["If-None-Match"] = feed.etag
            if feed.last_modified:
                conditional["If-Modified-Since"] = feed.last_modified
        try:
            resp = fetcher.get(feed.url, headers=conditional, accept=None)
        except FetchError as exc:
            return self._feed_failed(feed, result, exc.reason)
        etag, modified, title = feed.etag, feed.last_modified, feed.title
        if resp.status == 304:
            result.status = "not modified"
            entries: list[FeedEntry] = []
        else:
            try:
                title, entries = parse_feed(resp.content, resp.final_url, resp.headers.get("content-type", ""))
            except FeedError as exc:
                return self._feed_failed(feed, result, str(exc))
            etag, modified = resp.headers.get("etag", ""), resp.headers.get("last-modified", "")
        result.entries = len(entries)

        todo, outcomes = self._plan(feed, entries, force, retry_only=resp.status == 304)
        recent = self._recent(feed, recheck_days, skip={e.link for e in todo})
        outcomes = [o for o in outcomes if o.entry.link not in recent]
        result.known = len(outcomes)
        result.rechecked = len(recent)
        todo += [entry for entry, _ in recent.values()]
        fetched, validators = self._fetch(todo, feed, title, fetcher, progress, workers,
                                          {link: row for link, (_, row) in recent.items()})
        kept: set[str] = set()  # rechecks that leave the stored article as it is
        recheck_notes: list[str] = []
        for link, (entry, row) in recent.items():
            answer = fetched.get(link)
            if answer == NOT_MODIFIED or isinstance(answer, FetchError):  # a failed recheck is no failed item
                kept.add(link)
                outcomes.append(_Outcome(entry, row["status"], row["article_id"], row["content_hash"], row["error"],
                                         page_etag=row["page_etag"], page_modified=row["page_modified"]))
                if isinstance(answer, FetchError):
                    recheck_notes.append(f"{link}: not rechecked for corrections ({answer.reason}); "
                                         "the stored version stays")
        todo = [entry for entry in todo if entry.link not in kept]
        result.fetched = len(todo)  # pages that came back or failed (not a recheck answered 304)
        pages = [fetched[entry.link] for entry in todo]
        articles = [a for a in pages if isinstance(a, Article)]
        errors = [IngestError(e.url, e.reason) for e in pages if isinstance(e, FetchError)]
        if articles or errors:
            from rag.store import StoreError  # here, so `feed list` does not load the vector store

            try:
                ingest = library.ingest_articles(articles, errors, progress=progress)
            except StoreError as exc:  # nothing recorded: the next run fetches and stores again
                return self._feed_failed(feed, result, f"could not store articles: {exc}")
            for name in ("added", "updated", "unchanged", "skipped", "failed"):
                setattr(result, name, getattr(ingest, name))
            result.errors = [str(e) for e in ingest.errors]
            result.notes = list(ingest.notes)
            result.article_ids = list(ingest.article_ids)
            links = {entry.link for entry in todo}
            general = "; ".join(e.reason for e in ingest.errors if e.path not in links) or "not stored"
            outcomes += [_outcome(entry, fetched[entry.link], ingest, general, validators.get(entry.link))
                         for entry in todo]
        result.notes += recheck_notes
        status = result.status if result.status == "not modified" else "ok"
        last_error = result.errors[0] if result.errors else ""
        self._record(feed, outcomes, etag=etag, modified=modified, title=title, status=status, error=last_error)
        return result

    def _feed_failed(self, feed: Feed, result: FeedResult, reason: str) -> FeedResult:
        result.status, result.error = "failed", reason
        with self._write() as db:
            db.execute("UPDATE feeds SET last_run = ?, last_status = 'failed', last_error = ? WHERE url = ?",
                       (_now(), reason, feed.url))
        return result

    def _plan(self, feed: Feed, entries: list[FeedEntry], force: bool, retry_only: bool
              ) -> tuple[list[FeedEntry], list[_Outcome]]:
        """Split entries into pages to fetch and entries already done (here or in another feed).
        ``retry_only`` (the feed answered 304): the items that failed before, a few times at most."""
        todo: list[FeedEntry] = []
        known: list[_Outcome] = []
        with self._connect() as db:
            row = db.execute("SELECT id FROM feeds WHERE url = ?", (feed.url,)).fetchone()
            if row is None:  # removed by another process meanwhile
                return [], []
            feed_id = row["id"]
            if retry_only:
                rows = db.execute("SELECT * FROM items WHERE feed_id = ? AND status = 'failed' AND attempts < ?",
                                  (feed_id, MAX_ATTEMPTS)).fetchall()
                return [FeedEntry(r["guid"], r["link"], r["title"], r["date"], r["entry_hash"]) for r in rows], []
            links: set[str] = set()
            for entry in entries:
                if entry.link in links:
                    continue
                links.add(entry.link)
                mine = db.execute("SELECT * FROM items WHERE feed_id = ? AND guid = ?",
                                  (feed_id, entry.guid)).fetchone()
                if force:
                    todo.append(entry)
                    continue
                if mine is not None and mine["entry_hash"] == entry.entry_hash:
                    if mine["status"] in _OK:
                        known.append(_Outcome(entry, mine["status"], mine["article_id"], mine["content_hash"],
                                              mine["error"]))
                    elif mine["attempts"] < MAX_ATTEMPTS:
                        todo.append(entry)
                    else:
                        known.append(_Outcome(entry, "failed", error=mine["error"]))
                    continue
                other = db.execute(
                    "SELECT * FROM items WHERE feed_id != ? AND (guid = ? OR link = ?) AND entry_hash = ? "
                    "AND status IN ('stored', 'skipped') LIMIT 1",
                    (feed_id, entry.guid, entry.link, entry.entry_hash)).fetchone()
                if mine is None and other is not None:
                    known.append(_Outcome(entry, other["status"], other["article_id"], other["content_hash"],
                                          other["error"]))
                else:
                    todo.append(entry)
        return todo, known

    def _recent(self, feed: Feed, days: int, skip: set[str]) -> dict[str, tuple[FeedEntry, sqlite3.Row]]:
        """Stored items of this feed published in the last ``days`` days (or, undated, first seen
        then), by link: the ones a correction may have changed since they were stored."""
        if days <= 0:
            return {}
        cutoff = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)).strftime("%Y-%m-%d")
        with self._connect() as db:
            rows = db.execute(
                "SELECT i.* FROM items i JOIN feeds f ON f.id = i.feed_id WHERE f.url = ? AND i.status = 'stored' "
                "AND i.article_id != '' AND ((i.date != '' AND i.date >= ?) OR (i.date = '' AND i.first_seen >= ?))",
                (feed.url, cutoff, cutoff)).fetchall()
        return {r["link"]: (FeedEntry(r["guid"], r["link"], r["title"], r["date"], r["entry_hash"]), r)
                for r in rows if r["link"] not in skip}

    @staticmethod
    def _fetch(todo: list[FeedEntry], feed: Feed, feed_title: str, fetcher: Fetcher, progress: Progress | None,
               workers: int, rechecks: dict[str, Any] | None = None
               ) -> tuple[dict[str, Article | FetchError | str], dict[str, tuple[str, str]]]:
        """Each entry's page as an Article, a FetchError, or ``NOT_MODIFIED`` (a recheck's 304);
        and each page's validators (ETag, Last-Modified) by link, for the next recheck."""
        done = 0
        lock = threading.Lock()
        rechecks = rechecks or {}
        validators: dict[str, tuple[str, str]] = {}

        def one(entry: FeedEntry) -> Article | FetchError | str:
            nonlocal done
            try:
                headers: dict[str, str] = {}
                row = rechecks.get(entry.link)
                if row is not None:
                    if row["page_etag"]:
                        headers["If-None-Match"] = row["page_etag"]
                    if row["page_modified"]:
                        headers["If-Modified-Since"] = row["page_modified"]
                resp = fetcher.get(entry.link, headers=headers)
                if resp.status == 304:
                    return NOT_MODIFIED
                validators[entry.link] = (resp.headers.get("etag", ""), resp.headers.get("last-modified", ""))
                return page_to_article(resp, title=entry.title, date=entry.date, source=feed.source,
                                       default_source=feed_title, link=entry.link, path=entry.link)
            except FetchError as exc:
                return exc
            finally:
                with lock:
                    done += 1
                    if progress:
                        progress("fetch", done, len(todo))

        if not todo:
            return {}, validators
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(todo)))) as pool:
            return dict(zip((e.link for e in todo), pool.map(one, todo))), validators

    def _record(self, feed: Feed, outcomes: list[_Outcome], *, etag: str, modified: str, title: str,
                status: str, error: str) -> None:
        """Item states and the feed's validators in one transaction, after the library has the
        articles: the ETag is saved only together with what it vouches for."""
        now = _now()
        with self._write() as db:
            row = db.execute("SELECT id FROM feeds WHERE url = ?", (feed.url,)).fetchone()
            if row is None:  # removed by another process while we fetched
                return
            for o in outcomes:
                e = o.entry
                db.execute(
                    "INSERT INTO items (feed_id, guid, link, title, date, entry_hash, article_id, content_hash, "
                    "status, error, attempts, first_seen, last_seen, page_etag, page_modified) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT (feed_id, guid) DO UPDATE SET link = excluded.link, title = excluded.title, "
                    "date = excluded.date, entry_hash = excluded.entry_hash, article_id = excluded.article_id, "
                    "content_hash = excluded.content_hash, status = excluded.status, error = excluded.error, "
                    "attempts = CASE WHEN excluded.status != 'failed' THEN 0 "
                    "  WHEN items.entry_hash != excluded.entry_hash THEN excluded.attempts "
                    "  ELSE items.attempts + excluded.attempts END, "
                    "last_seen = excluded.last_seen, "
                    # an outcome that did not fetch the page keeps the validators it had
                    "page_etag = CASE WHEN excluded.page_etag || excluded.page_modified = '' AND "
                    "  excluded.content_hash = items.content_hash THEN items.page_etag ELSE excluded.page_etag END, "
                    "page_modified = CASE WHEN excluded.page_etag || excluded.page_modified = '' AND "
                    "  excluded.content_hash = items.content_hash THEN items.page_modified "
                    "  ELSE excluded.page_modified END",
                    (row["id"], e.guid, e.link, e.title, e.date, e.entry_hash, o.article_id, o.content_hash,
                     o.status, o.error, int(o.attempted and o.status == "failed"), now, now,
                     o.page_etag, o.page_modified))
            db.execute(
                "UPDATE feeds SET etag = ?, last_modified = ?, title = ?, last_run = ?, last_status = ?, "
                "last_error = ? WHERE id = ?", (etag, modified, title, now, status, error, row["id"]))


def _outcome(entry: FeedEntry, fetched: Article | FetchError | str, ingest: Any, general: str,
             validators: tuple[str, str] | None = None) -> _Outcome:
    """What the library did with one fetched page, read back from its report by the item's path.
    ``general``: the reason to give when the report names no item (the store was busy)."""
    if isinstance(fetched, FetchError) or not isinstance(fetched, Article):
        return _Outcome(entry, "failed", error=getattr(fetched, "reason", general), attempted=True)
    prefix = f"{fetched.path}: "
    note = next((n for n in ingest.notes if n.startswith(prefix + "skipped")), "")
    if note:
        return _Outcome(entry, "skipped", "", fetched.content_hash, note[len(prefix):], attempted=True)
    error = next((e for e in ingest.errors if e.path == fetched.path), None)
    if error is None and fetched.id in ingest.article_ids:
        etag, modified = validators or ("", "")
        return _Outcome(entry, "stored", fetched.id, fetched.content_hash, attempted=True, page_etag=etag,
                        page_modified=modified)
    return _Outcome(entry, "failed", error=error.reason if error else general, attempted=True)


# ---------------------------------------------------------------------- parsing


def parse_feed(content: bytes, url: str, content_type: str = "") -> tuple[str, list[FeedEntry]]:
    """The feed's title and its entries; FeedError when it is not a feed we can read."""
    import feedparser

    headers = {"content-location": url, "content-type": content_type or "application/xml"}
    # a stream, not bytes: feedparser would try bytes as a local file name first
    parsed = feedparser.parse(io.BytesIO(content), response_headers=headers)
    if not parsed.entries:
        if not parsed.get("version"):
            kind = content_type.split(";")[0].strip() or "no content type"
            raise FeedError(f"not an RSS or Atom feed ({kind})")
        if parsed.bozo:
            problem = parsed.get("bozo_exception")
            detail = problem.getMessage() if hasattr(problem, "getMessage") else str(problem or "unreadable")
            raise FeedError(f"malformed feed XML ({detail})")
    entries = []
    for raw in parsed.entries:
        link = urldefrag(str(raw.get("link") or "").strip())[0]
        if urlsplit(link).scheme not in ("http", "https"):
            continue  # an entry without a web page has nothing for us to fetch
        title = " ".join(str(raw.get("title") or "").split())
        guid = str(raw.get("id") or link).strip()
        date = _entry_date(raw)
        fingerprint = "\x1f".join([link, title, str(_raw(raw, "updated") or _raw(raw, "published") or ""),
                                   str(raw.get("summary") or "")])
        entries.append(FeedEntry(guid, link, title, date, hashlib.sha1(fingerprint.encode()).hexdigest()))
    return str(parsed.feed.get("title") or ""), entries


def _entry_date(raw: Any) -> str:
    """The publication date as the feed wrote it (its own time zone, not UTC), else ""."""
    for key in ("published", "updated", "created"):
        text = str(_raw(raw, key) or "").strip()
        if not text:
            continue
        for parse in (email.utils.parsedate_to_datetime, _iso):
            try:
                return parse(text).strftime("%Y-%m-%d")
            except (TypeError, ValueError, IndexError):
                continue
        try:
            return parse_date(text)
        except ItemError:
            pass
        parsed = _raw(raw, f"{key}_parsed")
        if parsed:
            return time.strftime("%Y-%m-%d", parsed)
    return ""


def _raw(entry: Any, key: str) -> Any:
    """A date field as the feed gave it: feedparser's own ``get`` maps a missing ``updated`` to
    ``published`` (with a deprecation warning), which would blur "changed" and "published"."""
    return dict.get(entry, key)


def _iso(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def normalise_url(url: str) -> str:
    """Lower-case scheme and host, no fragment: the form a feed is stored and matched under."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise FeedError(f"not an http(s) URL: '{url.strip()}'")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", parts.query, ""))


def slug(url: str) -> str:
    """``https://www.ilpost.it/feed/`` → ``ilpost-it-feed``."""
    parts = urlsplit(url)
    host = (parts.hostname or "").removeprefix("www.")
    text = re.sub(r"[^a-z0-9]+", "-", f"{host}{parts.path}".lower()).strip("-")
    return text[:60].rstrip("-") or "feed"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
