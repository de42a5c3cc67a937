"""Token-aware chunks cut at sentence boundaries, each keeping its span in the article.

Token counts use tiktoken's o200k_base (what current OpenAI models count), so a chunk budget
means the same thing to the packer and to the model. Spans let a citation quote the article's
exact characters instead of a re-joined copy.
"""

from __future__ import annotations

from functools import lru_cache

import tiktoken

from rag.models import Article, Chunk
from rag.text import sentence_spans


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding("o200k_base")


def count_tokens(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


def _split_long(text: str, start: int, end: int, max_tokens: int) -> list[tuple[int, int]]:
    """A 'sentence' over the budget (a table, a list without stops) is cut at token edges."""
    enc = encoding()
    tokens = enc.encode(text[start:end], disallowed_special=())
    pieces, offset = [], start
    for i in range(0, len(tokens), max_tokens):
        piece = enc.decode(tokens[i : i + max_tokens])
        pieces.append((offset, min(end, offset + len(piece))))
        offset += len(piece)
    return [p for p in pieces if p[1] > p[0]]


def chunk_article(article: Article, max_tokens: int = 250, overlap: float = 0.15) -> list[Chunk]:
    text = article.text
    units: list[tuple[int, int, int]] = []  # (start, end, tokens)
    for s, e in sentence_spans(text, article.lang):
        n = count_tokens(text[s:e])
        if n > max_tokens:
            units.extend((a, b, count_tokens(text[a:b])) for a, b in _split_long(text, s, e, max_tokens))
        else:
            units.append((s, e, n))
    if not units:
        return []
    overlap_tokens = int(max_tokens * overlap)
    chunks: list[Chunk] = []
    i = 0
    while i < len(units):
        j, total = i, 0
        while j < len(units) and (total + units[j][2] <= max_tokens or j == i):
            total += units[j][2]
            j += 1
        start, end = units[i][0], units[j - 1][1]
        chunks.append(
            Chunk(
                id=f"{article.id}::{article.content_hash[:10]}::{len(chunks)}",
                article_id=article.id,
                index=len(chunks),
                text=text[start:end],
                start=start,
                end=end,
                tokens=total,
            )
        )
        if j >= len(units):
            break
        # step back whole sentences until about `overlap` of the budget is repeated (at least one
        # sentence when overlap > 0), always moving forward
        back, k = 0, j
        while overlap_tokens and k - 1 > i and back < overlap_tokens:
            k -= 1
            back += units[k][2]
        i = k
    return chunks
