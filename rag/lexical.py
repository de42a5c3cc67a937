"""BM25 over chunks with bm25s, persisted next to the store and updated on ingest.

bm25s has no incremental add, so we keep the tokenised corpus (vocabulary ids, compact numpy)
and re-index it once per ingest batch: seconds at 100k chunks, never per query. Filters
(date range, source) become a weight mask so BM25 and Chroma see the same candidate set.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import bm25s
import numpy as np
from bm25s.tokenization import Tokenized

from rag.text import tokenize


class LexicalIndex:
    FILES = ("meta.json", "tokens.npy", "offsets.npy", "date_int.npy")

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.lock = threading.Lock()  # guards the swap of a new index
        self.write_lock = threading.Lock()  # one writer at a time
        self.ids: list[str] = []
        self.article_ids: list[str] = []
        self.sources: list[str] = []
        self.date_int = np.zeros(0, dtype=np.int64)
        self.docs: list[np.ndarray] = []  # vocabulary ids per chunk
        self.vocab: dict[str, int] = {}
        self.stamp = ""  # the store generation this index reflects (see rag.index)
        self.model: bm25s.BM25 | None = None
        self._load()

    def __len__(self) -> int:
        return len(self.ids)

    # -- persistence ----------------------------------------------------------------------------

    def _load(self) -> None:
        if not (self.dir / "meta.json").exists():
            return
        try:
            meta = json.loads((self.dir / "meta.json").read_text(encoding="utf-8"))
            tokens = np.load(self.dir / "tokens.npy")
            offsets = np.load(self.dir / "offsets.npy")
            self.date_int = np.load(self.dir / "date_int.npy")
        except (OSError, ValueError, json.JSONDecodeError):
            return  # unreadable: start empty; the retriever resyncs from the store
        self.ids, self.article_ids, self.sources = meta["ids"], meta["article_ids"], meta["sources"]
        self.vocab, self.stamp = meta["vocab"], meta.get("stamp", "")
        self.docs = [tokens[offsets[i] : offsets[i + 1]] for i in range(len(self.ids))]
        self._reindex()

    def save(self, stamp: str = "") -> None:
        """Write to a temporary folder and swap it in, so a crash never leaves half an index."""
        with self.write_lock, self.lock:  # one consistent snapshot, never mid-update
            self.stamp = stamp or self.stamp
            ids, article_ids, sources, docs = self.ids, self.article_ids, self.sources, self.docs
            date_int, vocab, stamp = self.date_int, dict(self.vocab), self.stamp
        tmp = self.dir.with_name(self.dir.name + f".tmp{os.getpid()}-{threading.get_ident()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        lengths = np.array([len(d) for d in docs], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        tokens = np.concatenate(docs).astype(np.int32) if docs else np.zeros(0, np.int32)
        np.save(tmp / "tokens.npy", tokens)
        np.save(tmp / "offsets.npy", offsets)
        np.save(tmp / "date_int.npy", np.asarray(date_int, dtype=np.int64))
        meta = {"ids": ids, "article_ids": article_ids, "sources": sources, "vocab": vocab, "stamp": stamp}
        (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        old = self.dir.with_name(self.dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if self.dir.exists():
            self.dir.rename(old)
        tmp.rename(self.dir)
        shutil.rmtree(old, ignore_errors=True)

    # -- updates --------------------------------------------------------------------------------

    def _token_ids(self, tokens: Iterable[str]) -> np.ndarray:
        vocab = self.vocab
        return np.array([vocab.setdefault(t, len(vocab)) for t in tokens], dtype=np.int32)

    def update(
        self,
        add: Sequence[tuple[str, str, str, dict]] = (),
        remove: Iterable[str] = (),
    ) -> None:
        """``add`` holds (chunk_id, text, lang, metadata); re-adding an id replaces it.

        New lists are built and swapped in whole, so a search running meanwhile (the page
        answering during an upload) sees either the old index or the new one."""
        with self.write_lock:
            drop = set(remove) | {a[0] for a in add}
            keep = [i for i, cid in enumerate(self.ids) if cid not in drop]
            ids = [self.ids[i] for i in keep]
            article_ids = [self.article_ids[i] for i in keep]
            sources = [self.sources[i] for i in keep]
            docs = [self.docs[i] for i in keep]
            dates = [int(d) for d in self.date_int[keep]] if keep else []
            for cid, text, lang, meta in add:
                ids.append(cid)
                article_ids.append(meta.get("article_id", ""))
                sources.append(meta.get("source", ""))
                dates.append(int(meta.get("date_int") or 0))
                docs.append(self._token_ids(tokenize(f"{meta.get('title', '')}\n{text}", lang)))
            model = self._build(docs, self.vocab)
            with self.lock:
                self.ids, self.article_ids, self.sources, self.docs = ids, article_ids, sources, docs
                self.date_int = np.array(dates, dtype=np.int64)
                self.model = model

    def clear(self) -> None:
        self.rebuild([], stamp="")

    def rebuild(self, rows: Sequence[tuple[str, str, str, dict]], stamp: str) -> None:
        """Replace everything (a fresh vocabulary too) in one swap: searches meanwhile see the
        old index, never an empty one."""
        with self.write_lock:
            vocab: dict[str, int] = {}
            ids, article_ids, sources, dates, docs = [], [], [], [], []
            for cid, text, lang, meta in rows:
                ids.append(cid)
                article_ids.append(meta.get("article_id", ""))
                sources.append(meta.get("source", ""))
                dates.append(int(meta.get("date_int") or 0))
                toks = tokenize(f"{meta.get('title', '')}\n{text}", lang)
                docs.append(np.array([vocab.setdefault(t, len(vocab)) for t in toks], dtype=np.int32))
            model = self._build(docs, vocab)
            with self.lock:
                self.ids, self.article_ids, self.sources, self.docs = ids, article_ids, sources, docs
                self.date_int = np.array(dates, dtype=np.int64)
                self.vocab, self.model, self.stamp = vocab, model, stamp

    def _reindex(self) -> None:
        self.model = self._build(self.docs, self.vocab)

    @staticmethod
    def _build(docs: list[np.ndarray], vocabulary: dict[str, int]) -> bm25s.BM25 | None:
        if not docs:
            return None
        model = bm25s.BM25()
        vocab = dict(vocabulary)
        vocab.setdefault("", len(vocab))
        model.index(Tokenized(ids=[d.tolist() for d in docs], vocab=vocab), show_progress=False)
        return model

    def article_map(self) -> dict[str, str]:
        """chunk id → article id, rebuilt lazily after each update."""
        ids, article_ids = self.ids, self.article_ids
        cached = getattr(self, "_article_map", None)
        if cached is None or cached[0] is not ids:
            cached = (ids, dict(zip(ids, article_ids)))
            self._article_map = cached
        return cached[1]

    # -- search ---------------------------------------------------------------------------------

    def mask(self, since: int = 0, until: int = 0, source: str = "") -> np.ndarray | None:
        if not (since or until or source):
            return None
        m = np.ones(len(self.ids), dtype=bool)
        if since:
            m &= self.date_int >= since
        if until:
            m &= self.date_int <= until
        if source:
            m &= np.array([s == source for s in self.sources], dtype=bool)
        return m

    def search(
        self, query: str, lang: str, n: int, since: int = 0, until: int = 0, source: str = ""
    ) -> list[tuple[str, float]]:
        with self.lock:  # a consistent view; updates build outside and swap under the lock
            model, ids = self.model, self.ids
            mask = self.mask(since, until, source)
        if model is None or not ids:
            return []
        tokens = [t for t in tokenize(query, lang) if t in self.vocab]
        if lang != "it":  # questions in English still meet Italian names and stems
            tokens += [t for t in tokenize(query, "it") if t in self.vocab and t not in tokens]
        if not tokens:
            return []
        scores = model.get_scores(tokens)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        n = min(n, int((scores > 0).sum()))
        if n == 0:
            return []
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(ids[i], float(scores[i])) for i in top]
