"""Deterministic metrics: retrieval (hit@k, recall, MRR, nDCG), answer text, citations, latency."""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import PurePath

from rag.citations import MARKER

_ARTICLES = {"il", "lo", "la", "i", "gli", "le", "l", "un", "una", "uno", "un'", "the", "a", "an"}
_ELIDED = re.compile(r"\b(l|un|dell|all|dall|nell|sull|d|c|s|m|t|v|quest|quell)['’]", re.I)
_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_PATH_SUFFIX = re.compile(r"(:\d+|#\d+)$")

# --------------------------------------------------------------------------- text


def normalize(text: str) -> str:
    """Lower-case, no accents, no punctuation, no articles (it/en), single spaces."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = MARKER.sub(" ", text)
    text = _ELIDED.sub(lambda m: " " if m.group(1).lower() in ("l", "un") else m.group(0), text)
    text = _PUNCT.sub(" ", text).replace("_", " ")
    return " ".join(t for t in text.split() if t not in _ARTICLES)


def contains(answer: str, golds: Iterable[str]) -> bool:
    hay = f" {normalize(answer)} "
    for g in golds:
        n = normalize(g)
        if n and f" {n} " in hay:
            return True
    return False


def exact_match(answer: str, golds: Iterable[str]) -> bool:
    a = normalize(answer)
    return any(a == normalize(g) for g in golds)


def token_f1(answer: str, golds: Iterable[str]) -> float:
    pred = normalize(answer).split()
    best = 0.0
    for g in golds:
        gold = normalize(g).split()
        common = sum((Counter(pred) & Counter(gold)).values())
        if not common:
            continue
        p, r = common / len(pred), common / len(gold)
        best = max(best, 2 * p * r / (p + r))
    return best


# --------------------------------------------------------------------------- retrieval


def strip_path(path: str) -> str:
    return PurePath(_PATH_SUFFIX.sub("", path or "")).name


def ranked_articles(hits: Sequence) -> list[tuple[str, str]]:
    """(article_id, file basename) in rank order, each article once."""
    seen, out = set(), []
    for h in hits:
        aid = h["article_id"] if isinstance(h, dict) else h.article_id
        path = h.get("path", "") if isinstance(h, dict) else h.path
        if aid in seen:
            continue
        seen.add(aid)
        out.append((aid, strip_path(path)))
    return out


def relevance(ranked: Sequence[tuple[str, str]], relevant: Iterable[str]) -> list[set[str]]:
    """For each ranked article, the relevant entries it satisfies (empty set = not relevant)."""
    rel = set(relevant)
    return [{x for x in (aid, base) if x in rel} for aid, base in ranked]


def hit_at(rel: Sequence[set[str]], k: int) -> float:
    return float(any(rel[:k]))


def recall_at(rel: Sequence[set[str]], n_relevant: int, k: int) -> float:
    found = set().union(*rel[:k]) if rel[:k] else set()
    return len(found) / n_relevant if n_relevant else 0.0


def mrr_at(rel: Sequence[set[str]], k: int = 10) -> float:
    for i, r in enumerate(rel[:k], 1):
        if r:
            return 1.0 / i
    return 0.0


def ndcg_at(rel: Sequence[set[str]], n_relevant: int, k: int = 10) -> float:
    dcg = sum(1.0 / math.log2(i + 1) for i, r in enumerate(rel[:k], 1) if r)
    ideal = sum(1.0 / math.log2(i + 1) for i in range(1, min(n_relevant, k) + 1))
    return dcg / ideal if ideal else 0.0


# --------------------------------------------------------------------------- citations


def citations_resolve(text: str, citation_numbers: Iterable[int]) -> float | None:
    from rag.citations import markers

    found = markers(text)
    if not found:
        return None
    known = set(citation_numbers)
    return sum(n in known for n in found) / len(found)


def cited_sentences(text: str, lang: str = "it") -> float | None:
    from rag.text import sentence_spans

    # a marker may follow the sentence's full stop: "... Roma. [1]" - attach it to the sentence
    spans = sentence_spans(text, lang)
    sentences = [text[s:e] for s, e in spans if normalize(text[s:e])]
    if not sentences:
        return None
    flagged = []
    for s, e in spans:
        piece = text[s:e]
        if not normalize(piece):
            if flagged and MARKER.search(piece):
                flagged[-1] = True
            continue
        flagged.append(bool(MARKER.search(piece)))
    return sum(flagged) / len(flagged)


# --------------------------------------------------------------------------- aggregation


def mean(values: Iterable[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def percentile(values: Sequence[float], q: float) -> float | None:
    vals = sorted(values)
    if not vals:
        return None
    pos = (len(vals) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)
