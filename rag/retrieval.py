"""Hybrid retrieval: Chroma dense top-n and BM25 top-n, fused by reciprocal rank fusion.

The retriever only reads: ``rag.index.Index`` owns both indexes and keeps them in step, and
tells the retriever nothing it has not committed.

RRF needs no score calibration between a cosine and a BM25 score, which is why it is the
standard way to fuse them. Afterwards, chunks that repeat each other (overlapping windows of
one article, or a re-report of the same story) are collapsed so the context is not five copies
of one sentence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from rag.config import Config
from rag.embeddings import Embedder
from rag.index import Index
from rag.models import Filters, Hit
from rag.text import detect_lang, fold

MODES = ("hybrid", "dense", "bm25")


@dataclass
class Retrieval:
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)
    lang: str = "it"
    vector: np.ndarray | None = None  # the question's embedding, for the answerer to reuse


def rrf(rankings: dict[str, list[str]], k: int = 60) -> dict[str, float]:
    scores: dict[str, float] = {}
    for ranking in rankings.values():
        for rank, cid in enumerate(ranking, 1):
            scores[cid] = scores.get(cid, 0.0) + 1.0 / (k + rank)
    return scores


def article_rrf(rankings: dict[str, list[str]], article_of: dict[str, str], k: int = 60) -> dict[str, float]:
    """RRF over articles, each ranked where its best chunk stands: a long article split into
    many chunks must not push a short one down, nor win by having many mediocre chunks."""
    deduped = {}
    for name, ranking in rankings.items():
        seen: dict[str, None] = {}
        for cid in ranking:
            seen.setdefault(article_of.get(cid, cid), None)
        deduped[name] = list(seen)
    return rrf(deduped, k)


def _overlap(a: Hit, b: Hit) -> float:
    if a.article_id != b.article_id:
        return 0.0
    inter = min(a.end, b.end) - max(a.start, b.start)
    return max(0.0, inter) / max(1, min(a.end - a.start, b.end - b.start))


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / max(1, len(a | b))


def collapse(hits: list[Hit], span_overlap: float = 0.5, near_dup: float = 0.8) -> list[Hit]:
    kept: list[Hit] = []
    shingles: list[set[str]] = []
    for hit in hits:
        toks = set(fold(hit.text).split())  # near-duplicate test: plain words are enough, and fast
        if any(_overlap(hit, k) > span_overlap for k in kept):
            continue
        if any(_jaccard(toks, s) >= near_dup for s in shingles):
            continue
        kept.append(hit)
        shingles.append(toks)
    return kept


class Retriever:
    def __init__(self, index: Index, embedder: Embedder, config: Config) -> None:
        self.index, self.embedder, self.config = index, embedder, config

    @property
    def vocabulary(self) -> dict[str, int]:
        """Every stemmed word the stored articles use: a name outside it is unknown here."""
        return self.index.vocabulary

    def search(
        self,
        question: str,
        k: int | None = None,
        filters: Filters | None = None,
        mode: str = "hybrid",
        collapse_duplicates: bool = True,
    ) -> Retrieval:
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode '{mode}' (use {', '.join(MODES)})")
        k = k or self.config.top_k
        filters = filters or Filters()
        n = max(self.config.candidates, k * 4)
        timings: dict[str, float] = {}
        lang = detect_lang(question)
        self.index.refresh()
        rankings: dict[str, list[str]] = {}
        vector = None
        found: dict[str, tuple[str, dict]] = {}
        if mode in ("hybrid", "dense"):
            t = time.perf_counter()
            vector = self.embedder.embed_query(question)
            timings["embed_query"] = (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            dense = self.index.dense(vector, n, filters)
            timings["dense"] = (time.perf_counter() - t) * 1000
            rankings["dense"] = [cid for cid, *_ in dense]
            found.update({cid: (doc, meta) for cid, _, doc, meta in dense})
        if mode in ("hybrid", "bm25"):
            t = time.perf_counter()
            lexical = self.index.bm25(question, lang, n, filters)
            timings["bm25"] = (time.perf_counter() - t) * 1000
            rankings["bm25"] = [cid for cid, _ in lexical]
        t = time.perf_counter()
        fused = rrf(rankings, self.config.rrf_k)
        article_of = {cid: self.index.article_of(cid) or found.get(cid, ("", {}))[1].get("article_id", cid)
                      for cid in fused}
        by_article = article_rrf(rankings, article_of, self.config.rrf_k)
        # articles in fused order, each article's chunks in fused order; texts are fetched only
        # for the head of that list: enough to collapse duplicates
        order = sorted(fused, key=lambda c: (-by_article[article_of[c]], -fused[c]))[: k * 2 + 5]
        missing = [c for c in order if c not in found]
        found.update(self.index.chunks(missing))
        ranks = {name: {cid: r for r, cid in enumerate(ids, 1)} for name, ids in rankings.items()}
        hits = []
        for cid in order:
            if cid not in found:
                continue  # deleted since BM25 was built
            doc, meta = found[cid]
            hits.append(
                Hit(
                    chunk_id=cid,
                    article_id=meta.get("article_id", ""),
                    text=doc,
                    score=by_article[article_of[cid]] + fused[cid] / 1000,
                    title=meta.get("title", ""),
                    date=meta.get("date", ""),
                    source=meta.get("source", ""),
                    url=meta.get("url", ""),
                    path=meta.get("path", ""),
                    start=int(meta.get("start", 0)),
                    end=int(meta.get("end", 0)),
                    ranks={name: r[cid] for name, r in ranks.items() if cid in r},
                )
            )
        if collapse_duplicates:
            hits = collapse(hits)
        timings["fusion"] = (time.perf_counter() - t) * 1000
        return Retrieval(hits=hits[:k], timings_ms=timings, lang=lang, vector=vector)
