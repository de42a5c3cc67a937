"""Files → articles → a plan (new, changed, unchanged, duplicate) → chunks and vectors.

Ingest only decides what to write and prepares it; ``rag.index.Index`` writes it, in an order
that keeps the store safe (see its docstring). Per-item errors never stop a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rag.chunking import chunk_article
from rag.config import Config
from rag.embeddings import Embedder, embed_batched, passage_text
from rag.index import Index, IndexBusy, Prepared
from rag.models import Article, Chunk
from rag.parsing import IngestError, iter_files, parse_file, text_hash

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


def ingest_paths(paths: Iterable[str | Path], *, config: Config, embedder: Embedder, index: Index,
                 progress: Progress | None = None, lock_timeout: float = 600) -> IngestReport:
    report = IngestReport()
    articles = collect(paths, config.max_file_bytes, report)
    return _ingest(articles, report, config, embedder, index, progress, lock_timeout)


def ingest_articles(articles: list[Article], *, config: Config, embedder: Embedder, index: Index,
                    errors: Iterable[IngestError] = (), progress: Progress | None = None,
                    lock_timeout: float = 600, force: Iterable[str] = ()) -> IngestReport:
    """``force``: ids to rewrite even if unchanged (repairing an article whose chunks are gone)."""
    report = IngestReport()
    for error in errors:
        report.errors.append(error)
        report.failed += 1
    return _ingest(articles, report, config, embedder, index, progress, lock_timeout, set(force))


def _ingest(articles: list[Article], report: IngestReport, config: Config, embedder: Embedder,
            index: Index, progress: Progress | None, lock_timeout: float, force: set[str] | None = None,
            ) -> IngestReport:
    try:
        with index.writing(timeout=lock_timeout) as writer:
            work = _plan(index, config, articles, report, force or set())
            _write(work, writer, embedder, config, report, progress)
    except IndexBusy as exc:
        report.errors.append(IngestError(str(index.home), "another ingest is still running"))
        report.failed += len(articles)
        report.notes.append(str(exc))
    if progress:
        progress("index", 1, 1)
    return report


def _plan(index: Index, config: Config, articles: list[Article], report: IngestReport,
          force: set[str]) -> list[_Work]:
    work: list[_Work] = []
    seen_ids: set[str] = set()
    seen_text: dict[str, str] = {}
    hashes = [text_hash(a) for a in articles]
    by_id, by_hash, by_path = index.existing(articles, hashes)
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
        if existing and existing.get("content_hash") == art.content_hash and art.id not in force:
            report.unchanged += 1
            report.article_ids.append(art.id)
            continue
        other = by_hash.get(th)
        if other and other != art.id:
            report.skipped += 1
            report.notes.append(f"{art.path}: skipped, same text already stored as {other}")
            continue
        chunks = chunk_article(art, config.chunk_tokens, config.chunk_overlap)
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


def _write(work: list[_Work], writer, embedder: Embedder, config: Config, report: IngestReport,
           progress: Progress | None) -> None:
    """Embed and hand over in groups: memory stays flat and a killed ingest keeps what it wrote."""
    total = sum(len(w.chunks) for w in work)
    if progress and total:
        progress("embed", 0, total)
    group_size = max(1, config.embed_batch) * 8
    start, i = 0, 0
    while i < len(work):
        group, n = [], 0
        while i < len(work) and (not group or n < group_size):
            group.append(work[i])
            n += len(work[i].chunks)
            i += 1
        texts = [passage_text(w.article.title, c.text) for w in group for c in w.chunks]
        vectors = embed_batched(
            embedder, texts, config.embed_batch,
            (lambda d, _t, s=start: progress("embed", s + d, total)) if progress else None,
        )
        prepared, offset = [], 0
        for w in group:
            prepared.append(Prepared(w.article, w.text_hash, w.chunks, vectors[offset : offset + len(w.chunks)],
                                     is_update=w.is_update, replaces=w.replaces))
            offset += len(w.chunks)
        writer.put(prepared)
        for w in group:
            if w.is_update:
                report.updated += 1
            else:
                report.added += 1
            report.article_ids.append(w.article.id)
            report.chunks += len(w.chunks)
        start += n
    if progress:
        progress("index", 0, 1)
