"""The offline answerer: pick the sentences of the retrieved chunks that best answer the question.

No language model, so no paraphrase: the answer is the best two or three sentences, quoted,
each cited. "Best" combines meaning (e5 similarity of question and sentence, which also works
across Italian and English), shared rare words, and whether the sentence holds the kind of
thing asked for (names for who/which, numbers for how many, dates for when). A sentence that is
itself a question is never an answer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from rag.embeddings import Embedder
from rag.models import Hit
from rag.text import fold, sentence_spans, tokenize

_WHO = re.compile(r"\b(chi|quali?|quale|which|who|whom|what club|che squadra|che club|quale club)\b", re.I)
_PLURAL = re.compile(r"\b(quali|chi sono|which \w+s|what \w+s|who are)\b", re.I)
_NAME_PAIR = re.compile(r"\b[A-ZÀ-Ý][\w'’-]+ (?:e|ed|o|and|or|&) [A-ZÀ-Ý][\w'’-]+")
_HOW_MANY = re.compile(
    r"\b(quanti|quante|quanto|quanta|how many|how much|punteggio|risultato|score|stipendio|ingaggio|"
    r"salary|prezzo|price|fee|costo|cost)\b",
    re.I,
)
_WHEN = re.compile(r"\b(quando|in che anno|when|what year|che giorno)\b", re.I)
_CAPITAL = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-ZÀ-Ý][\w'’-]+)")
_NUMBER = re.compile(  # a quantity: digits that are not a year, or a number word
    r"\b((?!(?:1[89]|20)\d\d\b)\d[\d.,]*|due|tre|quattro|cinque|sei|sette|otto|nove|dieci|cento|mille|"
    r"two|three|four|five|six|seven|eight|nine|ten|hundred|thousand|milion\w*|million\w*)\b",
    re.I,
)
_YEAR_OR_DATE = re.compile(
    r"\b(1[89]\d\d|20\d\d|gennaio|febbraio|marzo|aprile|maggio|giugno|luglio|agosto|settembre|"
    r"ottobre|novembre|dicembre|january|february|march|april|may|june|july|august|september|"
    r"october|november|december)\b",
    re.I,
)


@dataclass
class Candidate:
    hit_index: int
    start: int  # span within the hit's chunk
    end: int
    text: str
    score: float = 0.0


def candidates(hits: list[Hit], lang: str = "it") -> list[Candidate]:
    """Sentences of the hits; one sentence seen in two overlapping chunks counts once."""
    out, seen = [], set()
    for i, hit in enumerate(hits):
        for s, e in sentence_spans(hit.text, lang):
            sent = hit.text[s:e]
            key = (hit.article_id, hit.start + s)
            if len(sent.split()) >= 4 and key not in seen:
                seen.add(key)
                out.append(Candidate(i, s, e, sent))
    return out


def _features(question: str, cand: Candidate, q_tokens: set[str], idf: dict[str, float]) -> float:
    sent = cand.text
    s_tokens = set(tokenize(sent, "it")) | set(tokenize(sent, "en"))
    overlap = sum(idf.get(t, 1.0) for t in q_tokens & s_tokens) / max(
        1e-6, sum(idf.get(t, 1.0) for t in q_tokens)
    )
    q_fold = fold(question)
    bonus = 0.0
    new_names = [w for w in _CAPITAL.findall(sent) if fold(w) not in q_fold]
    if _WHO.search(question) and new_names:
        bonus += min(0.2, 0.07 * len(new_names))
    if _PLURAL.search(question) and any(
        fold(m) not in q_fold for m in _NAME_PAIR.findall(sent)
    ):  # "which clubs" asks for a list: "Roma e Milan" is the shape of the answer
        bonus += 0.15
    # a question about a quantity or a time is answered only by a sentence holding one
    if _HOW_MANY.search(question) and _NUMBER.search(sent):
        bonus += 0.3
    if _WHEN.search(question) and _YEAR_OR_DATE.search(sent):
        bonus += 0.3
    if sent.rstrip().endswith("?"):
        bonus -= 0.5
    elif sent.rstrip()[-1:] not in ".!»\"”)":  # a headline or caption, not a statement
        bonus -= 0.1
    words = len(sent.split())
    if words > 30:  # long sentences collect similarity without answering more
        bonus -= min(0.15, 0.004 * (words - 30))
    return overlap * 0.45 + bonus


def select(
    question: str,
    hits: list[Hit],
    embedder: Embedder | None,
    lang: str = "it",
    max_sentences: int = 3,
    margin: float = 0.25,
    shortlist_size: int = 12,
) -> list[Candidate]:
    cands = candidates(hits, lang)
    if not cands:
        return []
    q_tokens = set(tokenize(question, lang)) | set(tokenize(question, "it"))
    df: dict[str, int] = {}
    for c in cands:
        for t in set(tokenize(c.text, "it")):
            df[t] = df.get(t, 0) + 1
    idf = {t: math.log(1 + len(cands) / (1 + n)) for t, n in df.items()}
    for c in cands:
        c.score = _features(question, c, q_tokens, idf) + 0.05 / (1 + c.hit_index)
    # embedding sentences is the slow part: only the most promising ones are compared by meaning
    shortlist = sorted(cands, key=lambda c: -c.score)[:shortlist_size]
    if embedder is not None and len(shortlist) > 1:
        q = embedder.embed_query(question)
        dense = embedder.embed_passages([c.text for c in shortlist]) @ q
        dense = (dense - dense.mean()) / (dense.std() + 1e-6) * 0.1
        for c, d in zip(shortlist, dense):
            c.score += float(d)
    ranked = sorted(shortlist, key=lambda c: -c.score)
    best = ranked[0].score
    chosen = [c for c in ranked[:max_sentences] if c.score >= best - margin]
    return chosen


def confidence(question: str, chosen: list[Candidate], lang: str) -> float:
    """Share of the question's content words found in the chosen sentences (0..1)."""
    q_tokens = set(tokenize(question, lang)) | set(tokenize(question, "it"))
    if not q_tokens or not chosen:
        return 0.0
    s_tokens: set[str] = set()
    for c in chosen:
        s_tokens |= set(tokenize(c.text, "it")) | set(tokenize(c.text, "en"))
    return len(q_tokens & s_tokens) / len(q_tokens)


_NAME = re.compile(r"\b([A-ZÀ-Ý][\w'’-]{2,})")


def _question_names(question: str) -> list[str]:
    """Capitalised words after the first: the first is capitalised anyway."""
    return _NAME.findall(" ".join(question.split()[1:]))


def unknown_names(question: str, vocabulary: dict[str, int]) -> list[str]:
    """Names in the question (capitalised words after the first) that no stored article has:
    a question about the Tour de France cannot be answered from football news."""
    return [n for n in _question_names(question)
            if not any(t in vocabulary for t in tokenize(n, "it") + tokenize(n, "en"))]


def foreign_names_missing(question: str, hits: list[Hit], vocabulary: dict[str, int]) -> list[str]:
    """Across languages names change a little (Brazil/Brasile), so a name counts as present
    when a word of the retrieved text is close to it; Wimbledon in football news is not."""
    from difflib import SequenceMatcher

    words = {w for h in hits for w in re.findall(r"\w{3,}", fold(h.text))}
    missing = []
    for name in _question_names(question):
        name = re.sub(r"['’]s?$", "", name)
        n = fold(name)
        if n in words or len(n) < 4 or any(t in vocabulary for t in tokenize(name, "it")):
            continue
        if not any(abs(len(w) - len(n)) <= 3 and SequenceMatcher(None, n, w).ratio() >= 0.75 for w in words):
            missing.append(name)
    return missing


def lacks_asked_type(question: str, chosen: list[Candidate]) -> bool:
    """'How much does X earn?' is not answered by a sentence without a number in it."""
    text = " ".join(c.text for c in chosen)
    if _HOW_MANY.search(question) and not _NUMBER.search(text):
        return True
    return bool(_WHEN.search(question) and not _YEAR_OR_DATE.search(text))
