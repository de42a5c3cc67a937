"""The same ingest and questions against a real ``chroma run`` server and the embedded store."""

from __future__ import annotations

import pytest

from tests.conftest import SAMPLE

QUESTIONS = [
    "Chi ha vinto lo scudetto 2025?",
    "Chi ha sostituito Juric sulla panchina della Roma?",
    "Quando è stato esonerato De Rossi?",
    "Chi è il nuovo allenatore dell'Inter dopo Inzaghi?",
    "Who won the Supercoppa in January 2025?",
    "Ancelotti commissario tecnico del Brasile",
]


@pytest.mark.server
def test_server_and_embedded_agree(make_lib, tmp_path):
    from tests.support.chroma_server import start_chroma_server

    embedded = make_lib(home=tmp_path / "embedded")
    report_e = embedded.ingest([SAMPLE])
    assert report_e.failed == 0, report_e.errors

    with start_chroma_server(tmp_path / "chroma-data") as server:
        remote = make_lib(home=tmp_path / "remote", chroma_host=server.host, chroma_port=server.port)
        assert "chroma server" in remote.stats()["store"]
        report_r = remote.ingest([SAMPLE])
        assert report_r.to_dict()["article_ids"] == report_e.to_dict()["article_ids"]
        assert report_r.chunks == report_e.chunks
        assert remote.index.store.count_chunks() == embedded.index.store.count_chunks() == len(remote.index.lexical)
        assert not (tmp_path / "remote" / "chroma").exists()  # nothing embedded on the client side
        for q in QUESTIONS:
            for mode in ("hybrid", "dense", "bm25"):
                e = [h.chunk_id for h in embedded.retriever.search(q, mode=mode).hits]
                r = [h.chunk_id for h in remote.retriever.search(q, mode=mode).hits]
                assert r == e, (q, mode)
            a_e = embedded.ask(q, answerer="extractive")
            a_r = remote.ask(q, answerer="extractive")
            assert a_r.text == a_e.text
            assert [c.chunk_id for c in a_r.citations] == [c.chunk_id for c in a_e.citations]

        # a second client on the same server (another machine) sees the data: BM25 syncs from it
        other = make_lib(home=tmp_path / "other", chroma_host=server.host, chroma_port=server.port)
        assert len(other.index.lexical) == other.index.store.count_chunks() == embedded.index.store.count_chunks()
        q = QUESTIONS[0]
        assert ([h.chunk_id for h in other.retriever.search(q).hits]
                == [h.chunk_id for h in embedded.retriever.search(q).hits])
