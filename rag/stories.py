"""Same-story detection: two articles about one news event, and grouping articles into stories.

The score combines two signals with one weight:

* meaning: e5 cosine of the two texts (L2-normalised vectors, so a dot product), rescaled from
  e5's compressed range (unrelated Italian news sits around 0.75-0.80, rewrites near 0.95) to 0..1;
* words: the larger of the Jaccard overlap of stemmed content words and the overlap of names
  (capitalised words, folded), because two reports of one event always share who and where.

A pair whose score reaches ``DEFAULT_THRESHOLD`` is the same story; stories are the connected
components of those pairs (single-link), which is what a reader means by "the same story told
by three papers". The threshold and weights were chosen on a hand-labelled set of Italian news
pairs (``python -m eval pairs``); see ``eval/pairs.py``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rag.lexical import tokenize
from rag.text import fold

# e5 cosines of news texts live in a narrow band: map [COS_LOW, COS_HIGH] to [0, 1]
COS_LOW = 0.75
COS_HIGH = 0.95
DENSE_WEIGHT = 0.6  # the rest goes to the lexical overlap
DEFAULT_THRESHOLD = 0.50

_NAME = re.compile(r"\b([A-ZÀ-Ý][\w'’-]{2,})")
_NAME_STOP = frozenset(fold(w) for w in (
    "il lo la le gli un una uno dei del della delle degli nel nella per con che non dopo ecco "
    "anche ma se sono era oggi ieri domani the and for with after this that".split()
))


def content_tokens(text: str) -> set[str]:
    return set(tokenize(text, "it"))


def names(text: str) -> set[str]:
    """Capitalised words (folded), minus those that are capitalised only for starting a sentence
    when they are common words."""
    return {fold(m) for m in _NAME.findall(text)} - _NAME_STOP


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def overlap(a: set[str], b: set[str]) -> float:
    """Overlap coefficient: shared / size of the smaller set (a short report inside a long one)."""
    return len(a & b) / min(len(a), len(b)) if a and b else 0.0


def dense_part(cosine: float) -> float:
    return float(np.clip((cosine - COS_LOW) / (COS_HIGH - COS_LOW), 0.0, 1.0))


def lexical_part(a_text: str, b_text: str) -> float:
    ja = jaccard(content_tokens(a_text), content_tokens(b_text))
    na, nb = names(a_text), names(b_text)
    # names: overlap coefficient, but only once both sides name at least two things
    nm = overlap(na, nb) if min(len(na), len(nb)) >= 2 else 0.0
    return max(ja, 0.5 * nm)


def combine(cosine: float, lexical: float) -> float:
    return DENSE_WEIGHT * dense_part(cosine) + (1 - DENSE_WEIGHT) * lexical


def same_story_score(a_text: str, b_text: str, embedder=None, *, cosine: float | None = None) -> float:
    """0..1, higher = more likely the same story. Pass ``cosine`` when vectors are at hand."""
    if cosine is None:
        if embedder is None:
            raise ValueError("same_story_score needs an embedder or a precomputed cosine")
        va, vb = embedder.embed_passages([a_text, b_text])
        cosine = float(np.dot(va, vb))
    return combine(cosine, lexical_part(a_text, b_text))


def is_same_story(a_text: str, b_text: str, embedder=None, threshold: float = DEFAULT_THRESHOLD) -> bool:
    return same_story_score(a_text, b_text, embedder) >= threshold


@dataclass
class Story:
    title: str  # of the most central article (ties: the newest)
    article_ids: list[str]  # newest first
    first_date: str = ""
    last_date: str = ""
    lead_id: str = ""  # the article the title comes from
    cohesion: float = 1.0  # mean pair score inside the story (1.0 for one article)
    articles: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def date_range(self) -> str:
        if not self.first_date or self.first_date == self.last_date:
            return self.last_date or self.first_date
        return f"{self.first_date} – {self.last_date}"

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "article_ids": list(self.article_ids),
                "first_date": self.first_date, "last_date": self.last_date}


def _date_key(article: dict[str, Any]) -> str:
    return str(article.get("date") or "")


def _text_of(article: dict[str, Any]) -> str:
    title, text = article.get("title") or "", article.get("text") or ""
    return f"{title}\n{text}" if title else text


def score_matrix(articles: Sequence[dict[str, Any]], vectors) -> np.ndarray:
    """Pairwise same-story scores. ``vectors``: a matrix aligned with ``articles`` or a dict by id;
    articles without a vector get cosine 0 and so can only join a story by their words."""
    n = len(articles)
    if isinstance(vectors, dict):
        dim = next((len(v) for v in vectors.values()), 0)
        mat = np.array([vectors.get(a["id"], np.zeros(dim)) for a in articles], dtype=np.float32)
    else:
        mat = np.asarray(vectors, dtype=np.float32)
    mat = mat.reshape(n, -1) if n else mat
    norms = np.linalg.norm(mat, axis=1, keepdims=True) if n else mat
    mat = mat / np.where(norms == 0, 1, norms) if n else mat
    cos = mat @ mat.T if n else np.zeros((0, 0))
    toks = [content_tokens(_text_of(a)) for a in articles]
    nms = [names(_text_of(a)) for a in articles]
    scores = np.eye(n, dtype=np.float32)
    for i in range(n):
        for j in range(i + 1, n):
            nm = overlap(nms[i], nms[j]) if min(len(nms[i]), len(nms[j])) >= 2 else 0.0
            lex = max(jaccard(toks[i], toks[j]), 0.5 * nm)
            scores[i, j] = scores[j, i] = combine(float(cos[i, j]), lex)
    return scores


def group_stories(articles: Sequence[dict[str, Any]], vectors, threshold: float = DEFAULT_THRESHOLD,
                  ) -> list[Story]:
    """Connected components of same-story pairs; stories newest first.

    ``articles``: dicts with id, title, text, date. ``vectors``: article vectors (matrix aligned
    with ``articles`` or ``{id: vector}``, e.g. ``Store.article_vectors``)."""
    n = len(articles)
    if n == 0:
        return []
    scores = score_matrix(articles, vectors)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        for j in range(i + 1, n):
            if scores[i, j] >= threshold:
                parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    stories = []
    for members in groups.values():
        members.sort(key=lambda i: _date_key(articles[i]), reverse=True)
        if len(members) > 1:
            sub = scores[np.ix_(members, members)]
            centrality = (sub.sum(axis=1) - 1) / (len(members) - 1)
            lead = members[int(np.argmax(centrality))]  # first max = newest among equals
            cohesion = float(centrality.mean())
        else:
            lead, cohesion = members[0], 1.0
        dates = sorted(d for d in (_date_key(articles[i]) for i in members) if d)
        stories.append(Story(
            title=articles[lead].get("title") or articles[lead]["id"],
            article_ids=[articles[i]["id"] for i in members],
            first_date=dates[0] if dates else "",
            last_date=dates[-1] if dates else "",
            lead_id=articles[lead]["id"],
            cohesion=cohesion,
            articles=[articles[i] for i in members],
        ))
    stories.sort(key=lambda s: (s.last_date, len(s.article_ids)), reverse=True)
    return stories
