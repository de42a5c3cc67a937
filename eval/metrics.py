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


def contains_all(answer: str, required: Iterable[str]) -> bool:
    """Every one of ``required`` is in the answer (list and compare questions)."""
    return all(contains(answer, [r]) for r in required)


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


# --------------------------------------------------------------------------- answer shape


def sentences(text: str, lang: str = "it") -> list[str]:
    """The sentences of an answer with the citation markers removed; empty ones dropped.

    Markers go first, so that "... Roma. [1] Poi ..." splits as two sentences, not three."""
    from rag.text import sentence_spans

    clean = MARKER.sub(" ", text)
    return [clean[s:e] for s, e in sentence_spans(clean, lang) if normalize(clean[s:e])]


def lead_contains(text: str, golds: Iterable[str], lang: str = "it") -> bool:
    """A gold string is in the first sentence: the reader gets the answer without reading on."""
    first = sentences(text, lang)[:1]
    return bool(first) and contains(first[0], golds)


def current_correct(text: str, current: Sequence[str], superseded: Sequence[str], lang: str = "it") -> bool:
    """The answer gives the current state, and is not led by an earlier one: the first sentence
    that mentions any state (current or superseded) mentions a current one."""
    if not contains(text, current):
        return False
    for sentence in sentences(text, lang):
        if contains(sentence, current):
            return True
        if contains(sentence, superseded):
            return False
    return False


def version_cited(text: str, value: str, source: str, sources: dict[int, str]) -> bool:
    """One version of a disputed fact is in the answer, cited to its outlet: a clause (split at
    sentence ends and semicolons) holds ``value`` and a marker [n] whose citation's outlet is
    ``source``. ``sources``: citation number -> outlet."""
    from rag.citations import markers

    want = normalize(source)
    for clause in re.split(r"(?<=[.;!?])\s+|;", text):
        if contains(clause, [value]) and any(normalize(sources.get(n, "")) == want for n in markers(clause)):
            return True
    return False


def conflict_reported(text: str, versions: Iterable[tuple[str, str]], sources: dict[int, str],
                      conflicts: int) -> bool:
    """The answer says the sources disagree (``conflicts`` > 0) and states every version, each
    cited to its outlet."""
    return conflicts > 0 and all(version_cited(text, v, s, sources) for v, s in versions)


def dup_sentences(text: str, quotes: Iterable[str] = (), lang: str = "it") -> int:
    """Repeated material: each extra copy of a sentence of the answer (compared normalised,
    markers stripped), plus each citation whose quote repeats an earlier citation's quote."""
    said = [normalize(s) for s in sentences(text, lang)]
    quoted = [q for q in (normalize(x) for x in quotes) if q]
    return (len(said) - len(set(said))) + (len(quoted) - len(set(quoted)))


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
