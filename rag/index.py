"""The index: Chroma (vectors, chunk and article records) and BM25, kept in step by one owner.

Invariants, which every other module relies on:

* An article is *committed* when its record exists; its chunks are the chunks whose
  ``article_id`` and ``content_hash`` match that record. Only committed chunks are searchable:
  BM25 holds exactly them, and dense hits outside BM25's set are dropped. So a write killed
  half-way (chunks without a record, old chunks not yet removed) never shows in an answer.
* Every write changes the store's *generation*, a token kept in Chroma itself, so every process
  and every machine sharing a Chroma server sees it (counting chunks is not enough: an update
  keeps the count). Each write also logs, in Chroma, which articles it added, replaced or
  removed since the generation before it (``Store.log_change``).
* BM25 (``rag.lexical``, tantivy) lives on disk in the home and is shared by the home's
  processes; its ``stamp`` says which generation it reflects. A process that sees a new
  generation reloads it (a writer of this home has already updated it) or, when the home is
  behind (a write from another machine), applies only the logged changes since its stamp, under
  the home's lock. It rebuilds from a full scan of Chroma only when the log does not link its
  stamp to the generation (too old, a rescan, a killed write), or when ``repair`` asks. Embedded
  Chroma is reopened too: its client caches the vector index per process.
* Writes happen inside ``writing()``: under the home's write lock, the generation is marked
  pending, chunks go in first, then records, then superseded chunks are removed; at the end BM25
  is updated and committed, the change logged and the generation committed. While a generation
  is pending, readers keep the last committed BM25.
* Before a write touches an article's chunks or record it logs that intent (``Store.log_intent``),
  and its pending generation names the generation before it. So a killed write is recovered by
  whoever finds it (``_recover``, from ``sync``) by looking at those articles alone: their
  leftovers go, BM25 takes them as a delta, and a generation that follows the one before the write
  is committed, so every other process and machine applies a delta too. A feed refresh killed on a
  large archive costs its own articles, not a scan. Only when the intents do not say (a repair,
  an older version's write) does it fall back to ``check()`` and ``repair()`` (``cronaca doctor``),
  which scan everything.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import socket
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

from rag.config import Config
from rag.embeddings import Embedder
from rag.lexical import LexicalIndex
from rag.models import Article, Chunk, Filters, StoredArticle
from rag.store import Store, StoreError, chunk_metadata, forget_embedded_client

PENDING = "w:"  # generation prefix while a write is under way
INTERRUPTED_AFTER = 600.0  # seconds: a pending write older than this on a shared server was killed
log = logging.getLogger("cronaca.index")  # shown by `cronaca serve`


class IndexBusy(RuntimeError):
    """Another write holds the home's lock for longer than we were willing to wait."""


@dataclass
class Prepared:
    """One article ready to write: chunked and embedded by ingest."""

    article: Article
    text_hash: str
    chunks: list[Chunk]
    vectors: np.ndarray
    is_update: bool = False
    replaces: str = ""  # an older record of the same file (stored under its old text hash)


@dataclass
class Problem:
    kind: str  # orphan_chunks | stale_chunks | missing_chunks | bm25 | interrupted
    detail: str
    article_id: str = ""
    chunk_ids: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return self.detail


@dataclass
class _Scan:
    generation: str
    rows: list[tuple[str, str, str, dict]]
    problems: list[Problem]


def _row(chunk_id: str, text: str, meta: dict[str, Any]) -> tuple[str, str, str, dict]:
    """The one way a chunk becomes a BM25 row, for ingest and for a rebuild alike."""
    return chunk_id, text, meta.get("lang") or "it", meta


class Index:
    CHECK_EVERY = 1.0  # seconds between a reader's generation checks

    def __init__(self, config: Config, embedder: Embedder) -> None:
        self.config = config
        self.embedder = embedder
        self.home = Path(config.home)
        self.home.mkdir(parents=True, exist_ok=True)
        self._store = Store(config, embedder)
        suffix = config.collection
        if config.chroma_host:
            suffix = f"{config.chroma_host}_{config.chroma_port}_{suffix}"
        self.lexical = LexicalIndex(self.home / f"bm25-{suffix}")
        self._lock = FileLock(str(self.home / "ingest.lock"))
        # who marks a write pending: this machine and home (other machines may share a server)
        self._writer = hashlib.sha1(f"{socket.gethostname()}|{self.home.resolve()}".encode()).hexdigest()[:12]
        self._sync_lock = threading.RLock()
        self._checked = 0.0
        self.problems: list[Problem] = []  # what the last full rebuild saw
        self.sync()

    @property
    def store(self) -> Store:
        return self._store

    # -- keeping in step ----------------------------------------------------------------------

    def refresh(self) -> bool:
        """For readers, before each search: at most one generation read per CHECK_EVERY."""
        now = time.monotonic()
        if now - self._checked < self.CHECK_EVERY:
            return False
        self._checked = now
        if not self._sync_lock.acquire(blocking=False):
            return False  # a write or a resync is under way here: read what is committed
        try:
            return self.sync()
        finally:
            self._sync_lock.release()

    def sync(self, force: bool = False) -> bool:
        """Bring BM25 (and embedded Chroma) to the store's generation: reload what this home's
        writer committed, else apply the logged changes since our stamp, else (or ``force``)
        rebuild from a full scan. While a write is pending, keep what is committed. Returns
        whether anything moved."""
        with self._sync_lock:
            generation = self._store.generation()
            if not force and self._in_step(generation):
                return False
            self.lexical.reload()  # a writer of this home may have committed it already
            if not self.config.chroma_host:
                self._reopen()
            if not force and self._in_step(generation):
                return True
            if (generation.startswith(PENDING) and self.lexical.stamp and not force
                    and not self.write_interrupted()):
                return False  # a write under way: the last committed state until it commits
            # (a home with nothing yet, a new machine joining during a long ingest, scans now)
            try:
                self._lock.acquire(timeout=0)  # this home's BM25 files are written under its lock
            except Timeout:
                return False  # this home's writer is at it: it brings the files along
            try:
                self.lexical.reload()
                generation = self._store.generation()
                if not force and generation.startswith(PENDING) and self.write_interrupted():
                    generation = self._recover(generation) or generation
                if not force and self._in_step(generation):
                    return True
                changed = None if force else self._store.changes_since(self.lexical.stamp, generation)
                if changed is not None:
                    self._apply(changed, generation)
                else:
                    self._rebuild(generation)
                return True
            finally:
                self._lock.release()

    def _recover(self, pending: str) -> str | None:
        """A killed write, repaired from what it said it would touch (under the home's lock): the
        chunks of those articles that their records do not vouch for are removed, BM25 takes the
        articles as a delta when it was at the generation before the write, and a new generation
        following that one is logged and committed. Returns it, or None when the write did not say
        (a repair, an older version's write) or left an article short of chunks: then the full
        scan and ``repair`` do it. Idempotent: a second machine recovering the same write too only
        makes readers rescan once."""
        fields = pending.split(":")
        touched = self._store.intents(pending) if len(fields) >= 5 else None
        if touched is None:
            return None
        before = fields[4]
        articles = sorted(touched)
        committed, leftovers, short = self._store.sort_out(articles)
        self._store.delete_chunks(leftovers)
        if short:
            return None
        rows = [_row(cid, doc, meta) for cid, doc, meta in committed]
        if self._store.generation() != pending:
            return None  # someone else recovered it, or wrote, meanwhile: sync as usual
        final = uuid.uuid4().hex
        in_step = self.lexical.stamp == before
        if in_step:
            self.lexical.update(add=rows, articles=articles)
        self._store.forget_changes_after(before)
        self._store.log_change(final, before, {"replaced": articles})
        self._store.set_generation(final)
        if in_step:
            self.lexical.save(final)
        log.warning("recovered a write interrupted on %s: %d article(s) looked at", self.where(), len(articles))
        return final

    def _in_step(self, generation: str) -> bool:
        return generation == self.lexical.stamp and bool(generation or len(self.lexical) == self._store.count_chunks())

    def _apply(self, changed: set[str], generation: str) -> None:
        """A delta: each changed article's chunks out of BM25, its committed chunks (if any) in."""
        articles = sorted(changed)
        rows = [_row(cid, doc, meta) for cid, doc, meta in self._store.committed_chunks(articles)]
        self.lexical.update(add=rows, articles=articles)
        self.lexical.save(generation)

    def _reopen(self) -> None:
        forget_embedded_client(self.config)
        self._store = Store(self.config, self.embedder)

    def _scan(self, generation: str) -> _Scan:
        """Walk every record and chunk: the committed rows, and whatever does not fit."""
        problems: list[Problem] = []
        rows = list(self._committed_rows(problems))
        return _Scan(generation, rows, problems)

    def _rebuild(self, generation: str) -> None:
        """BM25 from a full scan, streamed from Chroma into the index (a million chunks never
        sit in memory at once)."""
        problems: list[Problem] = []
        self.lexical.rebuild(self._committed_rows(problems), stamp=generation)
        self.problems = problems

    def _committed_rows(self, problems: list[Problem]) -> Iterator[tuple[str, str, str, dict]]:
        """Every committed chunk as a BM25 row; once exhausted, what does not fit is in ``problems``."""
        listed = self._store.list_articles()
        records = {a.id: a.content_hash for a in listed}
        chunks_of = {a.id: a.chunks for a in listed}
        del listed
        orphans: dict[str, list[str]] = defaultdict(list)
        stale: dict[str, list[str]] = defaultdict(list)
        committed: Counter[str] = Counter()
        read, total = 0, self._store.count_chunks()
        for batch, (ids, docs, metas) in enumerate(self._store.iter_chunks(), 1):
            if batch % 25 == 0:  # a new machine on a large archive: minutes, so say how far
                log.info("building BM25 from %s: %d of %d chunks read", self.where(), read, total)
            read += len(ids)
            for cid, doc, meta in zip(ids, docs, metas):
                meta = meta or {}
                aid = meta.get("article_id", "")
                content_hash = records.get(aid)
                if content_hash is None:
                    orphans[aid].append(cid)
                elif meta.get("content_hash") != content_hash:
                    stale[aid].append(cid)
                else:
                    committed[aid] += 1
                    yield _row(cid, doc, meta)
        problems += [Problem("orphan_chunks", f"{len(c)} chunk(s) of '{a}' have no article record "
                             "(a write was interrupted)", a, c) for a, c in orphans.items()]
        problems += [Problem("stale_chunks", f"{len(c)} chunk(s) of an older version of '{a}' were not "
                             "removed", a, c) for a, c in stale.items()]
        problems += [Problem("missing_chunks", f"article '{a}' has {committed[a]} of its {n} chunk(s)", a)
                     for a, n in chunks_of.items() if committed[a] < max(1, n)]

    def write_interrupted(self) -> bool:
        """A pending generation that no live writer owns: a write was killed."""
        generation = self._store.generation()
        if not generation.startswith(PENDING):
            return False
        _, _, writer, started = (generation.split(":") + ["", "", "", "0"])[:4]
        if writer != self._writer:  # another machine's write: only an old mark means it died
            try:
                return time.time() - float(started) > INTERRUPTED_AFTER
            except ValueError:
                return True
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            return False
        self._lock.release()
        return True

    # -- doctor -------------------------------------------------------------------------------

    def check(self) -> list[Problem]:
        """Everything inconsistent, now: leftovers in Chroma, and a BM25 out of step."""
        with self._sync_lock:
            generation = self._store.generation()
            if not self.config.chroma_host:
                self._reopen()
            self.lexical.reload()
            scan = self._scan(generation)
            problems = list(scan.problems)
            if self.write_interrupted():
                problems.append(Problem("interrupted", "a write was interrupted before it finished"))
            want = {r[0] for r in scan.rows}
            have = self.lexical.all_ids()
            if want != have or self.lexical.stamp != generation:
                problems.append(Problem(
                    "bm25", f"the BM25 index is out of step with Chroma ({len(have - want)} chunk(s) too "
                    f"many, {len(want - have)} missing)"))
            return problems

    def repair(self, timeout: float = 60) -> tuple[list[str], list[str]]:
        """Remove leftovers and rebuild BM25. Returns (what was done, ids of articles whose
        chunks are missing: the caller re-indexes them from their stored text)."""
        done: list[str] = []
        reindex: list[str] = []
        with self.writing(timeout=timeout) as w:
            self._store.log_intent(w.pending, ["*"])  # killed, it leaves a full repair to do
            for problem in self._scan(self._store.generation()).problems:
                if problem.kind in ("orphan_chunks", "stale_chunks"):
                    self._store.delete_chunks(problem.chunk_ids)
                    w.removed.extend(problem.chunk_ids)
                    done.append(f"removed {len(problem.chunk_ids)} leftover chunk(s) of '{problem.article_id}'")
                elif problem.kind == "missing_chunks":
                    reindex.append(problem.article_id)
            w.rebuild = True
        if done or reindex:
            done.append("rebuilt the BM25 index")
        return done, reindex

    # -- writes -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self, timeout: float = 600) -> Iterator[_Writer]:
        try:
            self._lock.acquire(timeout=timeout)
        except Timeout:
            raise IndexBusy(f"another ingest is still running in {self.home}") from None
        try:
            with self._sync_lock:
                self.sync()  # start from what is stored now, whoever wrote it
                before = self._store.generation()
                # who writes, since when, and after which generation (``_recover`` needs it)
                pending = f"{PENDING}{uuid.uuid4().hex}:{self._writer}:{int(time.time())}:{before}"
                self._store.set_generation(pending)
                writer = _Writer(self, pending)
                try:
                    yield writer
                finally:
                    self._commit(writer, pending, before)
        finally:
            self._lock.release()

    def _commit(self, writer: _Writer, pending: str, before: str) -> None:
        """BM25 catches up with what was written (even after a failure: committed is committed),
        the change is logged, then the generation moves on. Someone else wrote meanwhile, or
        BM25 was not at the generation we started from? Then rebuild from Chroma, and log a
        rescan for the others."""
        concurrent = self._store.generation() != pending
        in_step = before == self.lexical.stamp and not before.startswith(PENDING)
        final = uuid.uuid4().hex
        if writer.rebuild or concurrent or not in_step:
            self._store.log_change(final, "", writer.changes)
            self._store.set_generation(final)
            if not self.config.chroma_host:
                self._reopen()
            self._rebuild(final)
            return
        self.lexical.update(add=writer.added, remove=writer.removed)
        self._store.log_change(final, before, writer.changes)
        self._store.set_generation(final)
        self.lexical.save(final)

    def delete(self, article_id: str, timeout: float = 600) -> bool:
        with self.writing(timeout=timeout) as w:
            return w.delete(article_id)

    # -- reads --------------------------------------------------------------------------------

    def committed(self, chunk_id: str) -> bool:
        return bool(self.lexical.lookup([chunk_id]))

    def dense(self, vector: np.ndarray, n: int, filters: Filters | None = None
              ) -> list[tuple[str, float, str, dict[str, Any]]]:
        try:
            found = self._store.dense_search(vector, n, filters)
        except StoreError:
            if self.config.chroma_host:
                raise
            # embedded Chroma read while another process was writing its vector segment for the
            # first time ("Nothing found on disk"): a moment later, a fresh client reads it
            time.sleep(0.1)
            if self._sync_lock.acquire(timeout=2):
                try:
                    self._reopen()
                finally:
                    self._sync_lock.release()
            found = self._store.dense_search(vector, n, filters)
        known = self.lexical.lookup(r[0] for r in found)
        return [r for r in found if r[0] in known]

    def bm25(self, query: str, lang: str, n: int, filters: Filters | None = None, *, title_boost: float = 0.0,
             prf_terms: int = 0, expand: bool = False) -> list[tuple[str, float]]:
        f = filters or Filters()
        return self.lexical.search(query, lang, n, f.since, f.until, f.source, title_boost=title_boost,
                                   prf_terms=prf_terms, expand=expand)

    def chunks(self, ids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """(text, metadata) of chunks: from BM25's stored copy when it holds them (the generation
        this process reads), from Chroma for the rest."""
        found = self.lexical.stored(ids)
        rest = [cid for cid in ids if cid not in found]
        if rest:
            found.update(self._store.get_chunks(rest))
        return found

    def chunks_of(self, article_id: str) -> list[tuple[str, str, dict[str, Any]]]:
        """One article's committed chunks, in article order: (chunk id, text, metadata)."""
        record = self._store.get_article(article_id)
        if record is None:
            return []
        got = self._store.get_chunks(self._store.chunk_ids_of(article_id))
        rows = [(cid, text, meta) for cid, (text, meta) in got.items()
                if meta.get("content_hash") == record.content_hash]
        return sorted(rows, key=lambda r: int(r[2].get("chunk_index") or 0))

    def article_of(self, chunk_id: str) -> str:
        return self.lexical.article_of(chunk_id)

    @property
    def vocabulary(self) -> dict[str, int]:
        return self.lexical.vocab

    def article(self, article_id: str, with_text: bool = False) -> StoredArticle | None:
        return self._store.get_article(article_id, with_text=with_text)

    def articles(self, filters: Filters | None = None, with_text: bool = False) -> list[StoredArticle]:
        return self._store.list_articles(filters, with_text=with_text)

    def article_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        return self._store.article_vectors(ids)

    def existing(self, articles: Sequence[Article], text_hashes: Sequence[str]):
        return self._store.existing(articles, text_hashes)

    def counts(self) -> tuple[int, int]:
        """(articles, chunks) in Chroma."""
        return self._store.count_articles(), self._store.count_chunks()

    def where(self) -> str:
        return self._store.where()


class _Writer:
    """What a write may do, only inside ``Index.writing()``: BM25 changes are collected and
    applied once when the block ends, and which articles changed is logged for the others."""

    def __init__(self, index: Index, pending: str) -> None:
        self.index = index
        self.pending = pending
        self.added: list[tuple[str, str, str, dict]] = []
        self.removed: list[str] = []
        self.changes: dict[str, list[str]] = {"added": [], "replaced": [], "removed": []}
        self.rebuild = False

    def put(self, batch: Sequence[Prepared]) -> None:
        """One write per collection for the whole batch: Chroma commits each call."""
        if not batch:
            return
        store = self.index.store
        ids, docs, metas, vectors, means = [], [], [], [], []
        for p in batch:
            base = chunk_metadata(p.article)
            ids += [c.id for c in p.chunks]
            docs += [c.text for c in p.chunks]
            metas += [{**base, "chunk_index": c.index, "start": c.start, "end": c.end, "tokens": c.tokens}
                      for c in p.chunks]
            vectors.append(p.vectors)
            mean = p.vectors.mean(axis=0)
            means.append(mean / (np.linalg.norm(mean) or 1.0))
        store.log_intent(self.pending, [p.article.id for p in batch] + [p.replaces for p in batch if p.replaces])
        store.upsert_chunks(ids, np.vstack(vectors), docs, metas)
        store.put_articles([p.article for p in batch], np.vstack(means), [p.text_hash for p in batch],
                           [len(p.chunks) for p in batch])
        self.added += [_row(i, d, m) for i, d, m in zip(ids, docs, metas)]
        for p in batch:
            self.changes["replaced" if p.is_update else "added"].append(p.article.id)
            if p.is_update:
                stale = store.stale_chunk_ids(p.article.id, p.article.content_hash)
                store.delete_chunks(stale)
                self.removed += stale
            if p.replaces:
                self.delete(p.replaces)

    def delete(self, article_id: str) -> bool:
        """Record first: from then on the article is gone, even if a crash follows."""
        store = self.index.store
        if store.get_article(article_id) is None:
            return False
        ids = store.chunk_ids_of(article_id)
        store.log_intent(self.pending, [article_id])
        store.delete_records([article_id])
        store.delete_chunks(ids)
        self.removed += ids
        self.changes["removed"].append(article_id)
        return True
