"""The sentence-vector cache: each sentence embedded once per model, across processes' lifetimes,
and a broken file never breaks an answer."""

from __future__ import annotations

import numpy as np

from rag.vector_cache import VectorCache
from tests.conftest import HashEmbedder


class Counting(HashEmbedder):
    def __init__(self, name: str = "test/hash-256") -> None:
        self.name = name
        self.seen: list[str] = []

    def embed_passages(self, texts):
        self.seen.extend(texts)
        return super().embed_passages(texts)


def test_each_sentence_is_embedded_once_and_kept_on_disk(tmp_path):
    path = tmp_path / "v.sqlite"
    emb = Counting()
    first = VectorCache(path).get(emb, ["Il Napoli vince lo scudetto.", "Conte resta.", "Conte resta."])
    assert emb.seen == ["Il Napoli vince lo scudetto.", "Conte resta."]  # a repeat in one call, once
    again = VectorCache(path)  # another process, later: read from the file, nothing embedded
    emb.seen.clear()
    second = again.get(emb, ["Conte resta.", "Il Napoli vince lo scudetto."])
    assert emb.seen == []
    # float16 on disk: cosines move by far less than anything the answerer's thresholds see
    assert np.allclose(second, first[[1, 0]], atol=2e-3)


def test_another_model_never_reuses_the_vectors(tmp_path):
    path = tmp_path / "v.sqlite"
    VectorCache(path).get(Counting("model-a"), ["Gasperini allena la Roma."])
    other = Counting("model-b")
    VectorCache(path).get(other, ["Gasperini allena la Roma."])
    assert other.seen == ["Gasperini allena la Roma."]


def test_an_unusable_file_leaves_a_cache_in_memory(tmp_path):
    bad = tmp_path / "v.sqlite"
    bad.write_bytes(b"not a database at all" * 100)
    cache = VectorCache(bad)
    emb = Counting()
    vectors = cache.get(emb, ["Chivu allena l'Inter."])
    assert vectors.shape == (1, emb.dim)
    emb.seen.clear()
    cache.get(emb, ["Chivu allena l'Inter."])
    assert emb.seen == []  # still remembered, in memory
