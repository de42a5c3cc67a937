"""The one door: the CLI, the page, the HTTP API and the eval harness all go through ``Library``.

It wires the parts together (configuration, embedder, index, retriever) and hands each stage
only what it needs. Request values arrive as the user typed them and are checked by
``rag.validation``; its ``RequestError`` names the field, for each front-end to word.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag import validation
from rag.config import Config
from rag.embeddings import Embedder, make_embedder
from rag.index import Index, Problem
from rag.ingest import IngestReport, Progress, collect, ingest_articles, ingest_paths
from rag.models import Answer, Article, Chunk, StoredArticle
from rag.parsing import IngestError
from rag.retrieval import Retrieval, Retriever
from rag.streams import Stream
from rag.uploads import Upload, stage
from rag.vector_cache import VectorCache


@dataclass
class DoctorReport:
    problems: list[Problem] = field(default_factory=list)  # found before any repair
    actions: list[str] = field(default_factory=list)  # what the repair did
    remaining: list[Problem] = field(default_factory=list)  # still there afterwards

    @property
    def clean(self) -> bool:
        return not (self.remaining if self.actions else self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {"problems": [str(p) for p in self.problems], "actions": self.actions,
                "remaining": [str(p) for p in self.remaining], "clean": self.clean}


def usable_home(home: Path) -> None:
    """``CRONACA_HOME`` is a folder we can write (locks, BM25, feeds live there even with a Chroma
    server), else one StoreError line naming it: a file or a read-only path would otherwise
    surface as a traceback from whichever module touched it first."""
    from rag.store import StoreError

    if home.exists() and not home.is_dir():
        raise StoreError(f"CRONACA_HOME {home} is a file, not a folder: point it at a folder")
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"CRONACA_HOME {home} cannot be created ({exc.strerror or exc})") from None
    if not os.access(home, os.W_OK | os.X_OK):
        raise StoreError(f"CRONACA_HOME {home} is not writable by this user")


class Library:
    def __init__(self, config: Config | None = None, embedder: Embedder | None = None) -> None:
        self.config = config or Config.load()
        self.home = Path(self.config.home)
        usable_home(self.home)
        self.embedder = embedder or make_embedder(self.config)
        self.index = Index(self.config, self.embedder)
        self.retriever = Retriever(self.index, self.embedder, self.config)
        self.vectors = VectorCache(self.home / "sentence-vectors.sqlite")
        if self.index.write_interrupted():  # a killed write: clean up before anyone reads
            self.doctor(repair=True)

    # -- ingest -------------------------------------------------------------------------------

    def ingest(self, paths: Iterable[str | Path], progress: Progress | None = None,
               lock_timeout: float = 600) -> IngestReport:
        """Files, folders, and ``http(s)://`` URLs of single articles (fetched politely)."""
        paths = list(paths)
        urls = [str(p) for p in paths if str(p).lower().startswith(("http://", "https://"))]
        files = [p for p in paths if str(p) not in urls]
        if not urls:
            return ingest_paths(files, config=self.config, embedder=self.embedder, index=self.index,
                                progress=progress, lock_timeout=lock_timeout)
        from rag.fetch import fetch_urls

        fetched, errors = fetch_urls(urls, self.config, progress=progress)
        report = IngestReport()
        articles = collect(files, self.config.max_file_bytes, report)
        more = ingest_articles(articles + fetched, config=self.config, embedder=self.embedder, index=self.index,
                               errors=[*report.errors, *errors], progress=progress, lock_timeout=lock_timeout)
        return more

    def ingest_articles(self, articles: Sequence[Article], errors: Iterable[IngestError] = (),
                        progress: Progress | None = None) -> IngestReport:
        """Articles that did not come from files (feeds, web pages, the API) go in the same way."""
        return ingest_articles(list(articles), config=self.config, embedder=self.embedder, index=self.index,
                               errors=errors, progress=progress)

    def ingest_uploads(self, uploads: Iterable[Upload], progress: Progress | None = None,
                       lock_timeout: float = 600) -> IngestReport:
        """Files sent by the page or the API: refused ones get an error line, accepted ones are
        kept under CRONACA_HOME/uploads when anything from them was stored."""
        batch = stage(uploads, self.home, self.config.max_file_bytes)
        report = ingest_paths(batch.paths, config=self.config, embedder=self.embedder, index=self.index,
                              progress=progress, lock_timeout=lock_timeout)
        report.errors = [IngestError(batch.local(e.path), e.reason, e.line) for e in [*batch.errors, *report.errors]]
        report.failed += len(batch.errors)
        report.notes = [batch.local(n) for n in report.notes]
        if not (report.added or report.updated):
            batch.discard()
        return report

    def is_empty(self) -> bool:
        """No article stored (a count, not a read of the records)."""
        return self.index.counts()[0] == 0

    def needs_sample(self) -> bool:
        """First start: nothing stored yet, and the bundled sample is there to show what we do."""
        return self.is_empty() and Path(self.config.sample_dir).is_dir()

    def ingest_sample(self, progress: Progress | None = None) -> IngestReport:
        """The bundled sample, one write per file: a write holds this process's index until it
        ends, so readers (a page answering during its first start) wait for one file at most, and
        each file is searchable as soon as it is written. ``progress("file", done, total)``."""
        from rag.parsing import iter_files

        files = [path for path, error in iter_files([self.config.sample_dir]) if error is None]
        total = IngestReport()
        if progress:
            progress("file", 0, len(files))
        for done, path in enumerate(files, 1):
            report = self.ingest([path])
            for name in ("added", "updated", "unchanged", "skipped", "failed", "chunks"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
            total.errors += report.errors
            total.notes += report.notes
            total.article_ids += report.article_ids
            if progress:
                progress("file", done, len(files))
        return total

    # -- feeds --------------------------------------------------------------------------------

    @property
    def feeds(self):
        """The followed RSS/Atom feeds (state in CRONACA_HOME/feeds.sqlite)."""
        from rag.feeds import FeedStore

        return FeedStore(self.home)

    def refresh_feeds(self, names: Sequence[str] | None = None, force: bool = False,
                      progress: Progress | None = None):
        return self.feeds.refresh(self, names or None, force=force, progress=progress)

    # -- questions ----------------------------------------------------------------------------

    def stream(self, question: str, *, history: Any = None, k: int | str | None = None, since: str = "",
               until: str = "", source: str = "", as_of: str = "", answerer: str | None = "auto",
               fallback: str | None = None, retrieval_mode: str = "hybrid") -> Stream[Answer]:
        """Text deltas, then the ``Answer``. ``history``: earlier (question, answer) turns; a
        follow-up is rewritten into a standalone question first."""
        from rag.answering import stream_answer

        asked = validation.question(question)
        turns = validation.history(history)
        filters = validation.filters(since, until, source, as_of)
        chosen = validation.answerer(answerer, self.config.llm_configured)
        on_failure = validation.fallback(fallback)
        n = validation.k(k)

        def items() -> Iterator[str | Answer]:
            standalone = self._standalone(turns, asked, chosen)
            for item in stream_answer(standalone, config=self.config, retriever=self.retriever,
                                      embedder=self.embedder, k=n, filters=filters, answerer=chosen,
                                      fallback=on_failure, retrieval_mode=retrieval_mode, vectors=self.vectors):
                if isinstance(item, Answer):
                    item.question, item.standalone_question = asked, standalone
                yield item

        return Stream(items(), Answer)

    def ask(self, question: str, **kwargs: Any) -> Answer:
        return self.stream(question, **kwargs).finish()

    def _standalone(self, history: list[tuple[str, str]], question: str, answerer: str) -> str:
        from rag.conversation import standalone_question

        if not history:
            return question
        llm = None
        if self.config.llm_configured and answerer != "extractive":
            from rag.llm import LLM

            llm = LLM(self.config)
        return standalone_question(history, question, llm=llm)

    def search(self, question: str, *, k: int | None = None, since: str = "", until: str = "",
               source: str = "", as_of: str = "", mode: str = "hybrid", collapse_duplicates: bool = True
               ) -> Retrieval:
        """Retrieval alone, for evaluation and debugging."""
        return self.retriever.search(question, k=k, filters=validation.filters(since, until, source, as_of),
                                     mode=mode, collapse_duplicates=collapse_duplicates)

    # -- summaries ----------------------------------------------------------------------------

    def stream_summary(self, *, article_id: str | None = None, query: str | None = None, since: str = "",
                       until: str = "", source: str = "", lang: str = "it", digest: bool = False,
                       k: int | str | None = None, answerer: str | None = "auto",
                       fallback: str | None = "extractive"):
        from rag.summaries import Summary, stream_summary

        request = validation.summary_request(article_id, query, since, until, source, lang, digest, k)
        items = stream_summary(request, config=self.config, index=self.index, retriever=self.retriever,
                               embedder=self.embedder,
                               answerer=validation.answerer(answerer, self.config.llm_configured),
                               fallback=validation.fallback(fallback))
        return Stream(items, Summary)

    def summarise(self, **kwargs: Any):
        return self.stream_summary(**kwargs).finish()

    # -- the archive --------------------------------------------------------------------------

    def generation(self) -> str:
        """A token that changes with every write by any process: cheap to poll for "did the
        archive change?" (the page does, to refresh its lists)."""
        return self.index.store.generation()

    def ping(self) -> None:
        """Raises ``StoreError`` when the store does not answer (health checks)."""
        self.index.counts()

    def sync(self) -> bool:
        """See what other processes wrote (the page calls this when it loads)."""
        return self.index.sync()

    def articles(self, since: str = "", until: str = "", source: str = "") -> list[StoredArticle]:
        self.index.refresh()
        return self.index.articles(validation.filters(since, until, source))

    def article(self, article_id: str) -> StoredArticle | None:
        return self.index.article(article_id, with_text=True)

    def chunks_of(self, article_id: str) -> list[Chunk]:
        """One article's chunks as the index holds them, in order (the page's article view)."""
        return [Chunk(id=cid, article_id=article_id, index=int(meta.get("chunk_index") or 0), text=text,
                      start=int(meta.get("start") or 0), end=int(meta.get("end") or 0),
                      tokens=int(meta.get("tokens") or 0))
                for cid, text, meta in self.index.chunks_of(article_id)]

    def delete(self, article_id: str, lock_timeout: float = 600) -> bool:
        return self.index.delete(article_id, timeout=lock_timeout)

    def doctor(self, repair: bool = False) -> DoctorReport:
        report = DoctorReport(problems=self.index.check())
        if not repair or not report.problems:
            return report
        report.actions, reindex = self.index.repair()
        if reindex:
            stored = [a for a in (self.index.article(i, with_text=True) for i in reindex) if a]
            redo = ingest_articles([a.to_article() for a in stored], config=self.config, embedder=self.embedder,
                                   index=self.index, force=[a.id for a in stored])
            report.actions += [f"re-indexed '{i}' from its stored text" for i in reindex]
            report.actions += [f"could not re-index: {e}" for e in redo.errors]
        report.remaining = self.index.check()
        return report

    def stats(self, articles: list[StoredArticle] | None = None) -> dict[str, Any]:
        """``articles``: every stored article, when the caller has just read them (the page shows
        both), so they are not read again."""
        self.index.refresh()
        arts = self.index.articles() if articles is None else articles
        dates = sorted(a.date for a in arts if a.date)
        return {
            "articles": len(arts),
            "chunks": self.index.counts()[1],
            "bm25_chunks": len(self.index.lexical),
            "sources": sorted({a.source for a in arts} - {""}),
            "languages": sorted({a.lang for a in arts} - {""}),
            "first_date": dates[0] if dates else "",
            "last_date": dates[-1] if dates else "",
            "embedder": self.embedder.name,
            "store": (f"chroma server {self.config.chroma_host}:{self.config.chroma_port}"
                      if self.config.chroma_host else f"embedded {self.home / 'chroma'}"),
            "answerer": (f"llm {self.config.llm_model}" if self.config.llm_configured
                         else "extractive (no LLM configured)"),
        }
