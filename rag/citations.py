"""Check every [n] in a generated answer against the sources the model was given.

A marker that points at no source is removed (the claim stays, unsupported claims are for
the reader to judge, invented sources are not). Markers are renumbered 1..m in order of first
use, and only cited sources become citations, each with an exact quote from its article.
"""

from __future__ import annotations

import re

from rag.models import Citation, Hit
from rag.text import sentence_spans, tokenize

MARKER = re.compile(r"\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")


def markers(text: str) -> list[int]:
    return [int(n) for m in MARKER.finditer(text) for n in re.split(r"[,;]", m.group(1))]


def best_quote(hit: Hit, claim: str, lang: str = "it") -> str:
    """The sentence of the chunk that shares most words with the claim citing it."""
    spans = sentence_spans(hit.text, lang)
    if not spans:
        return hit.text.strip()
    claim_tokens = set(tokenize(claim, lang)) | set(tokenize(claim, "it"))

    def score(span: tuple[int, int]) -> float:
        toks = set(tokenize(hit.text[span[0] : span[1]], "it"))
        return len(toks & claim_tokens) / (1 + 0.02 * len(toks))

    s, e = max(spans, key=score)
    return hit.text[s:e]


def citation_for(n: int, hit: Hit, quote: str) -> Citation:
    return Citation(
        n=n, article_id=hit.article_id, title=hit.title, date=hit.date, source=hit.source,
        url=hit.url, chunk_id=hit.chunk_id, quote=quote, path=hit.path, chunk_text=hit.text,
    )


def validate(text: str, hits: list[Hit], lang: str = "it") -> tuple[str, list[Citation]]:
    """Return the answer with only valid, renumbered markers, and its citations."""
    mapping: dict[int, int] = {}
    claims: dict[int, list[str]] = {}
    sentences = [text[s:e] for s, e in sentence_spans(text, lang)] or [text]

    def claim_of(pos: int) -> str:
        acc = 0
        for sent in sentences:
            idx = text.find(sent, acc)
            if idx <= pos < idx + len(sent) + 1:
                return sent
            acc = max(acc, idx)
        return text

    def replace(m: re.Match) -> str:
        out = []
        for raw in re.split(r"[,;]", m.group(1)):
            n = int(raw)
            if not 1 <= n <= len(hits):
                continue
            if n not in mapping:
                mapping[n] = len(mapping) + 1
            claims.setdefault(n, []).append(claim_of(m.start()))
            if f"[{mapping[n]}]" not in out:
                out.append(f"[{mapping[n]}]")
        return "".join(out)

    cleaned = MARKER.sub(replace, text)
    cleaned = re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", cleaned)).strip()
    citations = [
        citation_for(new, hits[old - 1], best_quote(hits[old - 1], " ".join(claims[old]), lang))
        for old, new in sorted(mapping.items(), key=lambda kv: kv[1])
    ]
    return cleaned, citations
