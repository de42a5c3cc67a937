"""Shared fixtures: a deterministic embedder for fast unit tests, and libraries over temp homes."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import rag  # noqa: F401  (offline setup before anything else imports gradio/chroma)
from rag.config import Config
from rag.text import tokenize

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
SHARED = ROOT.parent / "shared" / "data"


class HashEmbedder:
    """Bag of stemmed words hashed into 256 dims: deterministic, instant, and similar texts
    really are close, so retrieval tests mean something without the real model."""

    name = "test/hash-256"
    dim = 256

    def _vec(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for tok in tokenize(text, "it") + tokenize(text, "en"):
            h = int(hashlib.md5(tok.encode()).hexdigest(), 16)
            v[h % self.dim] += 1.0 if (h >> 8) % 2 else -1.0
        n = np.linalg.norm(v)
        return v / n if n else v

    def embed_passages(self, texts):
        return np.array([self._vec(t) for t in texts], dtype=np.float32).reshape(len(texts), self.dim)

    def embed_query(self, text):
        return self._vec(text)


def make_config(home: Path, **overrides) -> Config:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CRONACA_", "OPENAI_", "CHROMA_"))}
    env["CRONACA_HOME"] = str(home)
    return Config.load(path=home / "none.toml", env=env).with_(**overrides)


@pytest.fixture
def hash_embedder():
    return HashEmbedder()


@pytest.fixture
def make_lib(tmp_path):
    """make_lib(**config_overrides, embedder=None) -> Library on a fresh temporary home."""
    from rag.library import Library

    def factory(embedder=None, home: Path | None = None, **overrides):
        cfg = make_config(home or tmp_path / "home", **overrides)
        return Library(cfg, embedder=embedder or HashEmbedder())

    return factory


@pytest.fixture
def hash_sample(make_lib):
    """hash_sample(**config_overrides) -> Library holding data/sample, with the fast embedder."""

    def factory(**overrides):
        lib = make_lib(**overrides)
        assert lib.ingest([SAMPLE]).failed == 0
        return lib

    return factory


@pytest.fixture(scope="session")
def sample_home(tmp_path_factory):
    """data/sample ingested once with the real default embedder (about half a minute)."""
    from rag.library import Library

    home = tmp_path_factory.mktemp("sample-home")
    lib = Library(make_config(home))
    report = lib.ingest([SAMPLE])
    assert report.failed == 0, report.errors
    return home


@pytest.fixture
def sample_lib(sample_home, tmp_path):
    """A private copy of the ingested sample store, so tests may change it freely."""
    from rag.library import Library

    home = tmp_path / "home"
    shutil.copytree(sample_home, home)
    return Library(make_config(home))


def shared_or_skip(rel: str) -> Path:
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"shared data {rel} not found at {path} (only present on the team's machines)")
    return path
