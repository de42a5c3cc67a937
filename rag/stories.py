"""Same-story detection: two articles about one news event, and grouping articles into stories.

The score combines two signals with one weight:

* meaning: e5 cosine of the two texts (L2-normalised vectors, so a dot product), rescaled from
  e5's compressed range [0.80, 0.95] to 0..1 (on the labelled pairs, unrelated Italian news has
  a median cosine of 0.82, same-story pairs 0.89);
* words: the Jaccard overlap of stemmed content words.

``score = 0.5 * dense + 0.5 * jaccard``: two parameters besides the threshold, on purpose.
Grouping also requires the two articles to be dated within ``MAX_GAP_DAYS`` of each other.

A pair whose score reaches ``DEFAULT_THRESHOLD`` is the same story; stories are built by
average-link agglomeration over those scores (a group joins another only if their mean pair
score reaches the threshold), so one club's season does not chain into a single "story".
Measured on hand-labelled Italian news pairs with ``python -m eval pairs`` (eval/pairs.py):
that set is hard (label 2, "same actors, different story", sits close to 3), so the default
trades recall for precision; see the numbers in eval/pairs.py's output.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rag.models import StoredArticle
from rag.text import fold, tokenize

# e5 cosines of news texts live in a narrow band: map [COS_LOW, COS_HIGH] to [0, 1]
COS_LOW = 0.80
COS_HIGH = 0.95
DENSE_WEIGHT = 0.5  # the rest goes to the lexical overlap
# Chosen for precision (merging two stories misleads, leaving a duplicate apart only repeats):
# on full sample articles different stories of one club score up to ~0.54, a rewrite ~0.92.
DEFAULT_THRESHOLD = 0.55
MAX_GAP_DAYS = 7  # reports of one story are days apart, not months (month-only dates: +31)

_NAME = re.compile(r"\b([A-ZÀ-Ý][\w'’-]{2,})")
_COMMON = ("il lo la le gli un una uno dei del della delle degli nel nella per con che non dopo ecco "
           "anche ma se sono era oggi ieri domani the and for with after this that")
_NAME_STOP = frozenset(fold(w) for w in _COMMON.split())


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
    """Jaccard of stemmed content words. (Name overlap was tried: on the labelled pairs it
    lowers precision, since different stories of one club share all their names.)"""
    return jaccard(content_tokens(a_text), content_tokens(b_text))


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
    articles: list[StoredArticle] = field(default_factory=list, repr=False)

    @property
    def date_range(self) -> str:
        if not self.first_date or self.first_date == self.last_date:
            return self.last_date or self.first_date
        return f"{self.first_date} – {self.last_date}"

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "article_ids": list(self.article_ids),
                "first_date": self.first_date, "last_date": self.last_date}


def _date_key(article: StoredArticle) -> str:
    return article.date or ""


def _text_of(article: StoredArticle) -> str:
    return f"{article.title}\n{article.text}" if article.title else article.text


def score_matrix(articles: Sequence[StoredArticle], vectors,
                 max_gap_days: int | None = MAX_GAP_DAYS) -> np.ndarray:
    """Pairwise same-story scores. ``vectors``: a matrix aligned with ``articles`` or a dict by id;
    articles without a vector get cosine 0 and so can only join a story by their words."""
    n = len(articles)
    if isinstance(vectors, dict):
        dim = next((len(v) for v in vectors.values()), 0)
        mat = np.array([vectors.get(a.id, np.zeros(dim)) for a in articles], dtype=np.float32)
    else:
        mat = np.asarray(vectors, dtype=np.float32)
    mat = mat.reshape(n, -1) if n else mat
    norms = np.linalg.norm(mat, axis=1, keepdims=True) if n else mat
    mat = mat / np.where(norms == 0, 1, norms) if n else mat
    cos = mat @ mat.T if n else np.zeros((0, 0))
    toks = [content_tokens(_text_of(a)) for a in articles]
    days = [_days(_date_key(a)) for a in articles]
    scores = np.eye(n, dtype=np.float32)
    for i in range(n):
        for j in range(i + 1, n):
            if max_gap_days is not None and not _close(days[i], days[j], max_gap_days):
                continue
            scores[i, j] = scores[j, i] = combine(float(cos[i, j]), jaccard(toks[i], toks[j]))
    return scores


def _days(date: str) -> tuple[int, bool] | None:
    """(day number, precise to the day?) of an ISO date, or None."""
    import datetime as dt

    parts = date.split("-")
    try:
        y, m, d = (int(p) for p in (parts + ["1", "1"])[:3])
        return dt.date(y, m, d).toordinal(), len(parts) >= 3
    except (ValueError, TypeError):
        return None


def _close(a: tuple[int, bool] | None, b: tuple[int, bool] | None, max_gap: int) -> bool:
    if a is None or b is None:
        return True  # undated: words and meaning decide
    slack = 0 if a[1] and b[1] else 31
    return abs(a[0] - b[0]) <= max_gap + slack


def group_stories(articles: Sequence[StoredArticle], vectors, threshold: float = DEFAULT_THRESHOLD,
                  max_gap_days: int | None = MAX_GAP_DAYS) -> list[Story]:
    """Average-link clusters of same-story pairs; stories newest first.

    ``articles``: stored articles with their text. ``vectors``: article vectors (matrix aligned
    with ``articles`` or ``{id: vector}``, e.g. ``Store.article_vectors``)."""
    n = len(articles)
    if n == 0:
        return []
    scores = score_matrix(articles, vectors, max_gap_days)
    # average-link agglomeration: two groups merge while the mean score between them reaches
    # the threshold. Single-link (connected components) chains a season of one club's news
    # into one "story" through its many pairwise-similar reports; the mean does not.
    clusters: list[list[int]] = [[i] for i in range(n)]
    while len(clusters) > 1:
        best, pair = threshold, None
        for x in range(len(clusters)):
            for y in range(x + 1, len(clusters)):
                link = float(scores[np.ix_(clusters[x], clusters[y])].mean())
                if link >= best:
                    best, pair = link, (x, y)
        if pair is None:
            break
        x, y = pair
        clusters[x] = clusters[x] + clusters[y]
        del clusters[y]
    groups = {members[0]: members for members in clusters}
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
            title=articles[lead].title or articles[lead].id,
            article_ids=[articles[i].id for i in members],
            first_date=dates[0] if dates else "",
            last_date=dates[-1] if dates else "",
            lead_id=articles[lead].id,
            cohesion=cohesion,
            articles=[articles[i] for i in members],
        ))
    stories.sort(key=lambda s: (s.last_date, len(s.article_ids)), reverse=True)
    return stories
