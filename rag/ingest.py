"""Files → articles → chunks → vectors → Chroma + BM25, with counts and per-item errors.

Order of writes is what keeps the store safe: new chunks first (new ids, derived from the
content hash), then the article record, then the old chunks are removed. Killed at any point,
the old version stays searchable and a rerun finishes the job without duplicates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from rag.chunking import chunk_article
from rag.embeddings import embed_batched, passage_text
from rag.models import Article, Chunk
from rag.parsing import IngestError, iter_files, parse_file, text_hash
from rag.store import chunk_metadata

Progress = Callable[[str, int, int], None]


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[IngestError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    article_ids: list[str] = field(default_factory=list)
    chunks: int = 0

    def summary(self) -> str:
        return (
            f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, "
            f"skipped {self.skipped}, failed {self.failed}"
        )

    def to_dict(self) -> dict:
        return {
            "added": self.added, "updated": self.updated, "unchanged": self.unchanged,
            "skipped": self.skipped, "failed": self.failed, "chunks": self.chunks,
            "errors": [str(e) for e in self.errors], "notes": self.notes,
            "article_ids": self.article_ids,
        }


@dataclass
class _Work:
    article: Article
    text_hash: str
    chunks: list[Chunk]
    is_update: bool
    replaces: str = ""  # an earlier version of the same file, stored under its old text hash


def collect(paths: Iterable[str | Path], max_bytes: int, report: IngestReport) -> list[Article]:
    articles: list[Article] = []
    for path, error in iter_files(paths):
        if error:
            report.errors.append(error)
            report.failed += 1
            continue
        parsed = parse_file(path, max_bytes)
        articles.extend(parsed.articles)
        report.errors.extend(parsed.errors)
        report.failed += len(parsed.errors)
    return articles


def ingest(lib, paths: Iterable[str | Path], progress: Progress | None = None,
           lock_timeout: float = 600) -> IngestReport:
    report = IngestReport()
    articles = collect(paths, lib.config.max_file_bytes, report)
    lock = FileLock(str(lib.home / "ingest.lock"))
    try:
        lock.acquire(timeout=lock_timeout)
    except Timeout:
        report.errors.append(IngestError(str(lib.home), "another ingest is still running"))
        report.failed += len(articles)
        return report
    try:
        _ingest_locked(lib, articles, report, progress)
    finally:
        lock.release()
    return report


def ingest_articles(lib, articles: list[Article], errors: list[IngestError] | None = None,
                    progress: Progress | None = None, lock_timeout: float = 600) -> IngestReport:
    report = IngestReport()
    for error in errors or []:
        report.errors.append(error)
        report.failed += 1
    lock = FileLock(str(lib.home / "ingest.lock"))
    try:
        lock.acquire(timeout=lock_timeout)
    except Timeout:
        report.errors.append(IngestError(str(lib.home), "another ingest is still running"))
        report.failed += len(articles)
        return report
    try:
        _ingest_locked(lib, articles, report, progress)
    finally:
        lock.release()
    return report


def _plan(lib, articles: list[Article], report: IngestReport) -> list[_Work]:
    work: list[_Work] = []
    seen_ids: set[str] = set()
    seen_text: dict[str, str] = {}
    hashes = [text_hash(a) for a in articles]
    by_id, by_hash, by_path = lib.store.existing(articles, hashes)
    for art, th in zip(articles, hashes):
        if art.id in seen_ids:
            report.skipped += 1
            report.notes.append(f"{art.path}: skipped, same id as an earlier item ({art.id})")
            continue
        if th in seen_text:
            report.skipped += 1
            report.notes.append(f"{art.path}: skipped, same text as {seen_text[th]}")
            continue
        seen_ids.add(art.id)
        seen_text[th] = art.id
        existing = by_id.get(art.id)
        if existing and existing.get("content_hash") == art.content_hash:
            report.unchanged += 1
            report.article_ids.append(art.id)
            continue
        other = by_hash.get(th)
        if other and other != art.id:
            report.skipped += 1
            report.notes.append(f"{art.path}: skipped, same text already stored as {other}")
            continue
        chunks = chunk_article(art, lib.config.chunk_tokens, lib.config.chunk_overlap)
        if not chunks:
            report.failed += 1
            report.errors.append(IngestError(art.path, "no text to index after cleaning"))
            continue
        replaces = ""
        if existing is None and art.id.startswith("a-"):  # no url/id: the file path says "same"
            replaces = next((r for r in by_path.get(art.path, []) if r != art.id and r.startswith("a-")), "")
        work.append(_Work(art, th, chunks, is_update=existing is not None or bool(replaces),
                          replaces=replaces))
    return work


def _ingest_locked(lib, articles: list[Article], report: IngestReport,
                   progress: Progress | None) -> None:
    work = _plan(lib, articles, report)
    if not work:
        return
    total = sum(len(w.chunks) for w in work)
    texts = [passage_text(w.article.title, c.text) for w in work for c in w.chunks]
    lib.mark_dirty()
    done = 0
    lexical_add, lexical_remove = [], []
    group: list[_Work] = []
    group_chunks = 0
    batch = max(1, lib.config.embed_batch) * 8

    def flush(group: list[_Work], start: int) -> int:
        n = sum(len(w.chunks) for w in group)
        vectors = embed_batched(
            lib.embedder, texts[start : start + n], lib.config.embed_batch,
            (lambda d, _t: progress("embed", start + d, total)) if progress else None,
        )
        # one write per collection per group: Chroma commits each call, so calls are what cost
        ids, docs, metas, vecs_all = [], [], [], []
        mean_vectors = []
        offset = 0
        for w in group:
            vecs = vectors[offset : offset + len(w.chunks)]
            offset += len(w.chunks)
            base = chunk_metadata(w.article)
            ids += [c.id for c in w.chunks]
            docs += [c.text for c in w.chunks]
            metas += [{**base, "chunk_index": c.index, "start": c.start, "end": c.end,
                       "tokens": c.tokens} for c in w.chunks]
            vecs_all.append(vecs)
            mean = vecs.mean(axis=0)
            mean_vectors.append(mean / (np.linalg.norm(mean) or 1.0))
        lib.store.upsert_chunks(ids, np.vstack(vecs_all), docs, metas)
        lib.store.put_articles([w.article for w in group], np.vstack(mean_vectors),
                               [w.text_hash for w in group], [len(w.chunks) for w in group])
        for w in group:
            if w.is_update:
                lexical_remove.extend(lib.store.delete_stale_chunks(w.article.id, w.article.content_hash))
                if w.replaces:
                    lexical_remove.extend(lib.store.delete_article(w.replaces))
                report.updated += 1
            else:
                report.added += 1
            report.article_ids.append(w.article.id)
            report.chunks += len(w.chunks)
            meta = {"article_id": w.article.id, "title": w.article.title,
                    "date_int": w.article.date_int, "source": w.article.source}
            lexical_add.extend((c.id, c.text, w.article.lang, meta) for c in w.chunks)
        return start + n

    start = 0
    for w in work:
        group.append(w)
        group_chunks += len(w.chunks)
        if group_chunks >= batch:
            start = flush(group, start)
            done += group_chunks
            group, group_chunks = [], 0
    if group:
        flush(group, start)
    if progress:
        progress("index", 0, 1)
    lib.lexical.update(add=lexical_add, remove=lexical_remove)
    lib.lexical.save(stamp=str(lib.store.count_chunks()))
    lib.clear_dirty()
    if progress:
        progress("index", 1, 1)
