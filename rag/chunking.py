"""Token-aware chunks cut at sentence boundaries, each keeping its span in the article.

Token counts use tiktoken's o200k_base (what current OpenAI models count), so a chunk budget
means the same thing to the packer and to the model. Spans let a citation quote the article's
exact characters instead of a re-joined copy.

Everything here is linear in the length of the text. tiktoken's byte-pair merge is quadratic in
the length of one pre-token (a 10 MB line without spaces is one), so a long string is encoded in
bounded ``segments``; sentences come bounded from ``sentence_spans`` already.
"""

from __future__ import annotations

from functools import lru_cache

import tiktoken

from rag.models import Article, Chunk
from rag.text import SEGMENT_CHARS, segments, sentence_spans


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding("o200k_base")


def count_tokens(text: str) -> int:
    """Exact for text up to ``SEGMENT_CHARS`` characters; beyond, the sum over bounded segments
    (cut at spaces where there are any), which differs from the exact count by a token or so a
    cut and never takes quadratic time."""
    enc = encoding()
    if len(text) <= SEGMENT_CHARS:
        return len(enc.encode(text, disallowed_special=()))
    return sum(len(enc.encode(text[a:b], disallowed_special=())) for a, b in segments(text))


def _split_long(text: str, start: int, end: int, max_tokens: int) -> list[tuple[int, int, int]]:
    """A 'sentence' over the budget (a table, a list without stops) is cut at token edges.

    Returns ``(start, end, tokens)`` pieces that cover the span. Each bounded segment is encoded
    once; a piece's end is found from the byte length of its tokens, moved forward to the next
    character boundary when a token ends inside a multi-byte character (that character goes
    whole to the earlier piece). Nothing is re-encoded piece by piece.
    """
    enc = encoding()
    pieces: list[tuple[int, int, int]] = []
    for a, b in segments(text[start:end]):
        base, segment = start + a, text[start + a : start + b]
        raw = segment.encode("utf-8", "surrogatepass")  # tiktoken counts a lone surrogate as 3 bytes too
        tokens = enc.encode(segment, disallowed_special=())
        token_end = byte_start = char_start = 0
        for i in range(0, len(tokens), max_tokens):
            group = tokens[i : i + max_tokens]
            token_end += len(enc.decode_bytes(group))
            cut = token_end
            while cut < len(raw) and 0x80 <= raw[cut] < 0xC0:  # inside a character: finish it
                cut += 1
            if cut > byte_start:
                char_end = char_start + len(raw[byte_start:cut].decode("utf-8", "surrogatepass"))
                pieces.append((base + char_start, base + char_end, len(group)))
                byte_start, char_start = cut, char_end
    return pieces


def chunk_article(article: Article, max_tokens: int = 250, overlap: float = 0.15) -> list[Chunk]:
    text = article.text
    units: list[tuple[int, int, int]] = []  # (start, end, tokens)
    for s, e in sentence_spans(text, article.lang):
        n = count_tokens(text[s:e])
        if n > max_tokens:
            units.extend(_split_long(text, s, e, max_tokens))
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
