"""The one entry point the CLI, the page and the eval harness share."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rag.answering import answer as _answer
from rag.answering import stream_answer as _stream_answer
from rag.config import Config
from rag.embeddings import Embedder, make_embedder
from rag.ingest import IngestReport, Progress, ingest
from rag.lexical import LexicalIndex
from rag.retrieval import Retriever
from rag.store import Store


class Library:
    def __init__(self, config: Config | None = None, embedder: Embedder | None = None) -> None:
        self.config = config or Config.load()
        self.home = Path(self.config.home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.embedder = embedder or make_embedder(self.config)
        self.store = Store(self.config, self.embedder)
        suffix = self.config.collection
        if self.config.chroma_host:
            suffix = f"{self.config.chroma_host}_{self.config.chroma_port}_{suffix}"
        self.lexical = LexicalIndex(self.home / f"bm25-{suffix}")
        self.retriever = Retriever(self.store, self.lexical, self.embedder, self.config,
                                   reopen=None if self.config.chroma_host else self._reopen)
        self.retriever.sync(force=self._dirty_path.exists())
        self.clear_dirty()

    def _reopen(self) -> Store:
        """A new embedded client, so writes by another process (a terminal ingest while the
        page runs) become visible instead of failing on a stale cached index."""
        from chromadb.api.client import SharedSystemClient

        SharedSystemClient.clear_system_cache()
        self.store = Store(self.config, self.embedder)
        return self.store

    # an ingest marks the store dirty until BM25 has caught up with Chroma
    @property
    def _dirty_path(self) -> Path:
        return self.home / f"ingest-{self.config.collection}.dirty"

    def mark_dirty(self) -> None:
        self._dirty_path.write_text("ingest in progress\n")

    def clear_dirty(self) -> None:
        self._dirty_path.unlink(missing_ok=True)

    def ingest(self, paths: Iterable[str | Path], progress: Progress | None = None) -> IngestReport:
        return ingest(self, paths, progress=progress)

    def ingest_articles(self, articles, errors=(), progress: Progress | None = None) -> IngestReport:
        """Articles that did not come from files (feeds, web pages, the API) go in the same way."""
        from rag.ingest import ingest_articles

        return ingest_articles(self, list(articles), errors=list(errors), progress=progress)

    def ask(self, question: str, **kwargs: Any):
        return _answer(self, question, **kwargs)

    def stream(self, question: str, **kwargs: Any):
        return _stream_answer(self, question, **kwargs)

    def articles(self) -> list[dict[str, Any]]:
        return self.store.list_articles()

    def article(self, article_id: str) -> dict[str, Any] | None:
        return self.store.get_article(article_id, with_text=True)

    def delete(self, article_id: str) -> bool:
        if self.store.get_article(article_id) is None:
            return False
        self.mark_dirty()
        removed = self.store.delete_article(article_id)
        self.lexical.update(remove=removed)
        self.lexical.save(stamp=str(self.store.count_chunks()))
        self.clear_dirty()
        return True

    def stats(self) -> dict[str, Any]:
        arts = self.store.list_articles()
        dates = sorted(a["date"] for a in arts if a.get("date"))
        return {
            "articles": len(arts),
            "chunks": self.store.count_chunks(),
            "bm25_chunks": len(self.lexical),
            "sources": sorted({a.get("source") or "" for a in arts} - {""}),
            "languages": sorted({a.get("lang") or "" for a in arts} - {""}),
            "first_date": dates[0] if dates else "",
            "last_date": dates[-1] if dates else "",
            "embedder": self.embedder.name,
            "store": (f"chroma server {self.config.chroma_host}:{self.config.chroma_port}"
                      if self.config.chroma_host else f"embedded {self.home / 'chroma'}"),
            "answerer": (f"llm {self.config.llm_model}" if self.config.llm_configured
                         else "extractive (no LLM configured)"),
        }
