"""Fusion functions: how a dense and a BM25 ranking become one ranking of articles.

Pure functions over plain dicts, so each rule can be tested on a handful of numbers.

Two fusions are offered. Reciprocal rank fusion (``rrf``) looks only at ranks. The convex
combination (``convex``) looks at scores: each retriever's scores are min-max normalised over
its own candidates, then mixed with one weight. Bruch, Gai and Ingber ("An Analysis of Fusion
Functions for Hybrid Retrieval", ACM TOIS 2023) found the convex combination more accurate than
RRF in and out of domain and cheap to fit (one parameter); on SQuAD-it dev it lifts hit@1 from
0.75 to 0.79 because it keeps how far ahead a retriever's first candidate is, which RRF throws
away. Min-max rather than the theoretical minimum: e5 cosines sit in a narrow band (about
0.75-0.9), so dividing by the distance from -1 (or 0) would flatten the dense side.

Everything is done per article, each ranked by its best chunk: a long article split into many
chunks must not push a short one down, nor win by having many mediocre chunks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def rrf(rankings: Mapping[str, Sequence[str]], k: int = 60) -> dict[str, float]:
    """Sum of 1 / (k + rank) over the rankings an item appears in."""
    scores: dict[str, float] = {}
    for ranking in rankings.values():
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return scores


def article_rrf(rankings: Mapping[str, Sequence[str]], article_of: Mapping[str, str], k: int = 60
                ) -> dict[str, float]:
    """RRF over articles, each placed where its best chunk stands in each ranking."""
    deduped = {}
    for name, ranking in rankings.items():
        seen: dict[str, None] = {}
        for cid in ranking:
            seen.setdefault(article_of.get(cid, cid), None)
        deduped[name] = list(seen)
    return rrf(deduped, k)


def best_per_article(scores: Mapping[str, float], article_of: Mapping[str, str]) -> dict[str, float]:
    """Each article's best chunk score (a chunk without a known article stands for itself)."""
    out: dict[str, float] = {}
    for cid, score in scores.items():
        aid = article_of.get(cid, cid)
        if aid not in out or score > out[aid]:
            out[aid] = score
    return out


def minmax(scores: Mapping[str, float]) -> dict[str, float]:
    """Scale to [0, 1] over the candidates given: the best is 1, the worst 0. When all are equal
    (a single candidate, or ties only) each gets 1: nothing says one is worse than another."""
    if not scores:
        return {}
    lo, hi = min(scores.values()), max(scores.values())
    if hi <= lo:
        return {key: 1.0 for key in scores}
    span = hi - lo
    return {key: (value - lo) / span for key, value in scores.items()}


def convex(dense: Mapping[str, float], lexical: Mapping[str, float], weight: float) -> dict[str, float]:
    """``weight`` x normalised dense + (1 - weight) x normalised BM25, over the union of both
    candidate sets. A candidate one retriever did not return scores 0 on that side: it ranked
    below that retriever's last candidate, which is 0 after normalisation. With one retriever
    empty, the other's order is kept as it is."""
    d, b = minmax(dense), minmax(lexical)
    keys = [*d, *(key for key in b if key not in d)]  # a stable order: dense first, as given
    return {key: weight * d.get(key, 0.0) + (1.0 - weight) * b.get(key, 0.0) for key in keys}


def recency_bonus(scores: Mapping[str, float], days: Mapping[str, int], weight: float) -> dict[str, float]:
    """Add up to ``weight`` by date (``days``: a day number, 0 = undated), linearly from the
    oldest dated candidate (0) to the newest (``weight``): for questions about the present ("chi
    allena la Roma?") the newest of several equally relevant articles should lead. It is a
    tie-break, never a filter: two articles whose scores differ by more than ``weight`` keep
    their order, and undated articles get nothing."""
    dated = {key: days[key] for key in scores if days.get(key)}
    if weight <= 0 or len(set(dated.values())) < 2:
        return dict(scores)
    lo, hi = min(dated.values()), max(dated.values())
    return {key: value + weight * (dated[key] - lo) / (hi - lo) if key in dated else value
            for key, value in scores.items()}


def ranked(scores: Mapping[str, float]) -> list[str]:
    """Best first; equal scores keep the order given (RRF gives many ties: an article first in
    one list only ties with one first in the other only, and the dense one has always led)."""
    return sorted(scores, key=lambda key: -scores[key])
