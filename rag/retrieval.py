"""Hybrid retrieval: Chroma dense top-n and BM25 top-n, fused into one ranking of articles.

The retriever only reads: ``rag.index.Index`` owns both indexes and keeps them in step, and
tells the retriever nothing it has not committed.

How the two are fused is a ``Settings`` value, read from ``Config`` for the shipped behaviour
(mode ``hybrid``) or fixed by a named mode (``MODES``), so the eval harness can compare fusions
side by side in one run. The shipped fusion (measured in README, "Retrieval"):

* a convex combination of min-max normalised scores per article (``rag.fusion``), which keeps
  how far ahead each retriever's first candidate is, where rank fusion kept only the order;
* BM25 with the title as a field of its own and English names spelled the Italian way;
* a bonus for chunks holding the question's adjacent word pairs as pairs (``proximity``);
* for questions about the present ("chi allena la Roma?"), the newest of near-tied articles
  first (``recency_tiebreak``, never a filter).

Afterwards, chunks that repeat each other (overlapping windows of one article, or a re-report of
the same story) are collapsed so the context is not five copies of one sentence.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from rag import claims
from rag.config import Config
from rag.dates import day_number
from rag.embeddings import Embedder
from rag.fusion import article_rrf, best_per_article, convex, recency_bonus, rrf
from rag.index import Index
from rag.models import Filters, Hit
from rag.text import detect_lang, fold

__all__ = ["MODES", "FUSIONS", "Retrieval", "Retriever", "Settings", "article_rrf", "collapse", "rrf"]

FUSIONS = ("convex", "rrf")
_BESIDE = ThreadPoolExecutor(max_workers=4, thread_name_prefix="cronaca-bm25")  # BM25 beside the dense query


@dataclass(frozen=True)
class Settings:
    """Everything that decides a ranking besides the question and the stores."""

    dense: bool = True
    lexical: bool = True
    fusion: str = "convex"  # convex | rrf
    weight: float = 0.6  # dense share in the convex combination (Config.fusion_weight)
    rrf_k: int = 10
    title_boost: float = 0.0  # BM25 title field, as a share of its score
    proximity: float = 0.0  # weight of the adjacent-pair bonus (convex fusion, both retrievers)
    prf_terms: int = 0  # BM25 pseudo-relevance feedback words (0 = off)
    recency: float = 0.0  # largest date bonus for present-state questions (convex fusion)
    expand: bool = True  # Italian spellings of English names in BM25 queries
    # BM25's share of the convex sum scaled by the share of the question it can see (its
    # words' idf mass the index knows): a question BM25 half-reads leans on dense
    coverage: bool = True

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        return cls(fusion=config.fusion, weight=config.fusion_weight, rrf_k=config.rrf_k,
                   title_boost=config.title_boost, proximity=config.proximity, prf_terms=config.prf_terms,
                   recency=config.recency_tiebreak)


_PLAIN = {"title_boost": 0.0, "proximity": 0.0, "prf_terms": 0, "recency": 0.0, "expand": False, "coverage": False}
# name -> changes to the configured settings. ``hybrid`` is what the product ships; the others
# exist to be compared with it (python -m eval run ... --retrieval hybrid,hybrid-rrf,...).
MODES: dict[str, dict[str, Any]] = {
    "hybrid": {},
    "dense": {"lexical": False},
    "bm25": {"dense": False},
    "hybrid-rrf": {"fusion": "rrf", **_PLAIN},  # the fusion before issue 16: article RRF, plain BM25
    "hybrid-convex": {"fusion": "convex", **_PLAIN},  # score fusion alone, without the other features
    "hybrid-prf": {"prf_terms": 10},  # the shipped settings plus BM25 pseudo-relevance feedback
    "hybrid-flat": {"coverage": False},  # the shipped settings with BM25's weight fixed
    "bm25-plain": {"dense": False, **_PLAIN},  # BM25 as it was: no title field, no name spellings
}


def settings_for(mode: str, config: Config) -> Settings:
    if mode not in MODES:
        raise ValueError(f"unknown retrieval mode '{mode}' (use {', '.join(MODES)})")
    base = Settings.from_config(config)
    if base.fusion not in FUSIONS:
        raise ValueError(f"unknown fusion '{base.fusion}' (use {', '.join(FUSIONS)})")
    return replace(base, **MODES[mode])


@dataclass
class Retrieval:
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)
    lang: str = "it"
    vector: np.ndarray | None = None  # the question's embedding, for the answerer to reuse


def _overlap(a: Hit, b: Hit) -> float:
    if a.article_id != b.article_id:
        return 0.0
    inter = min(a.end, b.end) - max(a.start, b.start)
    return max(0.0, inter) / max(1, min(a.end - a.start, b.end - b.start))


def collapse(hits: list[Hit], span_overlap: float = 0.5, near_dup: float = 0.8) -> list[Hit]:
    """Drop a hit that overlaps a kept chunk of its own article, or that repeats a kept hit
    word for word *and states the same facts* (``rag.claims.agree``): a re-report giving other
    numbers, scores, dates or names is a conflicting version and stays, so no outlet's figure
    is dropped silently."""
    kept: list[Hit] = []
    shingles: list[set[str]] = []
    for hit in hits:
        toks = set(fold(hit.text).split())  # near-duplicate test: plain words are enough, and fast
        if any(_overlap(hit, k) > span_overlap for k in kept):
            continue
        # Jaccard is at most the ratio of the two sizes: most pairs are ruled out by their lengths
        if any(min(len(toks), len(s)) >= near_dup * max(len(toks), len(s)) and claims.overlap(toks, s) >= near_dup
               and claims.agree(hit.text, k.text) for k, s in zip(kept, shingles)):
            continue
        kept.append(hit)
        shingles.append(toks)
    return kept


def asks_about_now(question: str, lang: str) -> bool:
    from rag.question import analyse

    return analyse(question, lang).current


@dataclass
class _Fused:
    articles: dict[str, float]  # article id -> score, what ranks
    chunks: dict[str, float]  # chunk id -> score, orders an article's chunks


class Retriever:
    def __init__(self, index: Index, embedder: Embedder, config: Config) -> None:
        settings_for("hybrid", config)  # a misspelt fusion fails at start, not at the first question
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
        vector: np.ndarray | None = None,
    ) -> Retrieval:
        """``vector``: the question's embedding when the caller has it already (a second search
        for the same question), so it is not embedded again."""
        s = settings_for(mode, self.config)
        k = k or self.config.top_k
        filters = filters or Filters()
        n = max(self.config.candidates, k * 4)
        timings: dict[str, float] = {}
        lang = detect_lang(question)
        self.index.refresh()
        dense: dict[str, float] = {}
        lexical: dict[str, float] = {}
        found: dict[str, tuple[str, dict]] = {}
        if s.dense and vector is None:
            t = time.perf_counter()
            vector = self.embedder.embed_query(question)
            timings["embed_query"] = (time.perf_counter() - t) * 1000
        started = time.perf_counter()

        def lexical_search() -> dict[str, float]:
            t = time.perf_counter()
            out = dict(self.index.bm25(question, lang, n, filters, title_boost=s.title_boost,
                                       prf_terms=s.prf_terms, expand=s.expand))
            timings["bm25"] = (time.perf_counter() - t) * 1000
            return out

        # BM25 runs beside the dense query (tantivy releases the GIL; Chroma answers from its
        # own process or server), so hybrid costs about the slower of the two, not their sum
        pending = _BESIDE.submit(lexical_search) if s.lexical and s.dense else None
        if s.dense:
            t = time.perf_counter()
            hits = self.index.dense(vector, n, filters)
            timings["dense"] = (time.perf_counter() - t) * 1000
            dense = {cid: score for cid, score, *_ in hits}
            found.update({cid: (doc, meta) for cid, _, doc, meta in hits})
        if pending is not None:
            lexical = pending.result()
        elif s.lexical:
            lexical = lexical_search()
        t = time.perf_counter()
        article_of = {cid: self.index.article_of(cid) or found.get(cid, ("", {}))[1].get("article_id", cid)
                      for cid in dense.keys() | lexical.keys()}
        fused = self._fuse(s, question, lang, dense, lexical, article_of)
        # articles in fused order, each article's chunks in fused order; texts are fetched only
        # for the head of that list: enough to collapse duplicates
        order = sorted(fused.chunks, key=lambda c: (-fused.articles[article_of[c]], -fused.chunks[c]))[: k * 2 + 5]
        missing = [c for c in order if c not in found]
        found.update(self.index.chunks(missing))
        ranks = {name: {cid: r for r, cid in enumerate(scores, 1)}  # each retriever's own order
                 for name, scores in (("dense", dense), ("bm25", lexical)) if scores}
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
                    score=fused.articles[article_of[cid]] + fused.chunks[cid] / 1000,
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
        timings["retrieval"] = (time.perf_counter() - started) * 1000  # all of it, the question's embedding aside
        return Retrieval(hits=hits[:k], timings_ms=timings, lang=lang, vector=vector)

    def _fuse(self, s: Settings, question: str, lang: str, dense: dict[str, float], lexical: dict[str, float],
              article_of: dict[str, str]) -> _Fused:
        if s.fusion == "rrf":
            rankings = {name: list(scores) for name, scores in (("dense", dense), ("bm25", lexical)) if scores}
            return _Fused(article_rrf(rankings, article_of, s.rrf_k), rrf(rankings, s.rrf_k))
        weight = s.weight
        if s.coverage and dense and lexical:
            weight = 1.0 - (1.0 - s.weight) * self.index.lexical.coverage(question, lang, s.expand)
        chunks = convex(dense, lexical, weight)
        articles = convex(best_per_article(dense, article_of), best_per_article(lexical, article_of), weight)
        if not (dense and lexical):
            return _Fused(articles, chunks)  # one retriever: its own order, nothing to break ties for
        if s.proximity > 0:
            near = self.index.lexical.proximity(question, lang, chunks)
            bonus = {cid: s.proximity * v for cid, v in near.items()}
            chunks = {cid: v + bonus.get(cid, 0.0) for cid, v in chunks.items()}
            best = best_per_article(bonus, article_of)
            articles = {aid: v + best.get(aid, 0.0) for aid, v in articles.items()}
        if s.recency > 0 and asks_about_now(question, lang):
            days: dict[str, int] = {}
            for cid, date_int in self.index.lexical.dates(chunks).items():
                aid = article_of[cid]
                days[aid] = max(days.get(aid, 0), day_number(date_int))
            articles = recency_bonus(articles, days, s.recency)
        return _Fused(articles, chunks)
