"""Sentence vectors, kept: in memory (LRU) and in ``CRONACA_HOME/sentence-vectors.sqlite``.

The extractive answerer compares the question with a dozen sentences of the retrieved articles,
and embedding them is its whole cost. The same sentences come back question after question and
run after run (an archive is asked about its own articles), so each sentence is embedded once
per model, ever. Vectors are stored as float16 (cosines change by less than 1e-3); the key is a
hash of the model name and the text, so a changed sentence is simply a new entry.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from rag.embeddings import Embedder


def _key(model: str, text: str) -> bytes:
    return hashlib.sha1(f"{model}\x1f{text}".encode()).digest()


class VectorCache:
    def __init__(self, path: Path | None = None, size: int = 20000) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.memory: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.db: sqlite3.Connection | None = None
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(str(path), check_same_thread=False, timeout=5)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")
                self.db.commit()
            except sqlite3.Error:
                self.db = None  # a read-only or broken home: the cache is only in memory

    def get(self, embedder: Embedder, texts: list[str]) -> np.ndarray:
        """Vectors of ``texts`` in order, embedding only those never seen with this model."""
        keys = [_key(embedder.name, t) for t in texts]
        found: dict[bytes, np.ndarray] = {}
        with self.lock:
            for k in keys:
                if k in self.memory:
                    self.memory.move_to_end(k)
                    found[k] = self.memory[k]
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        if missing and self.db is not None:
            found.update(self._load(missing))
            missing = [k for k in missing if k not in found]
        if missing:
            by_key = dict(zip(keys, texts))
            vectors = np.asarray(embedder.embed_passages([by_key[k] for k in missing]), dtype=np.float32)
            new = dict(zip(missing, vectors))
            found.update(new)
            self._store(new)
        with self.lock:
            for k, v in found.items():
                self.memory[k] = v
                self.memory.move_to_end(k)
            while len(self.memory) > self.size:
                self.memory.popitem(last=False)
        return np.vstack([found[k] for k in keys]) if keys else np.zeros((0, 0), dtype=np.float32)

    def _load(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        out: dict[bytes, np.ndarray] = {}
        try:
            with self.lock:
                for i in range(0, len(keys), 500):
                    part = keys[i : i + 500]
                    rows = self.db.execute(  # type: ignore[union-attr]
                        f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(part))})", part)
                    for key, blob in rows:
                        out[key] = np.frombuffer(blob, dtype=np.float16).astype(np.float32)
        except sqlite3.Error:
            return {}
        return out

    def _store(self, vectors: dict[bytes, np.ndarray]) -> None:
        if self.db is None or not vectors:
            return
        try:
            with self.lock:
                self.db.executemany("INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)",
                                    [(k, v.astype(np.float16).tobytes()) for k, v in vectors.items()])
                self.db.commit()
        except sqlite3.Error:
            pass  # another process holds the file for longer than the timeout: memory is enough
