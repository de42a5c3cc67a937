"""The retriever end to end over a small store (fast hash embedder): modes and their settings,
the recency tie-break for present-state questions, the title field, and that every mode keeps
the filters."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.config import Config
from rag.parsing import make_article
from rag.retrieval import MODES, Settings, settings_for

ROMA = [
    ("roma-2024", "2024-11-14", "Roma, Ranieri allena la Roma",
     "Claudio Ranieri allena la Roma: è lui l'allenatore della Roma dopo l'esonero di Ivan Juric, "
     "e la Roma lo ha scelto fino al termine della stagione."),
    ("roma-2025", "2025-06-05", "Roma, Gasperini allena la Roma",
     "Gian Piero Gasperini allena la Roma: firma un contratto di tre anni e prende il posto di "
     "Claudio Ranieri, che diventa consigliere della proprietà."),
    ("napoli-2025", "2025-05-23", "Napoli campione d'Italia",
     "Il Napoli di Antonio Conte vince lo scudetto battendo il Cagliari all'ultima giornata: "
     "decidono i gol di McTominay e Lukaku davanti al pubblico del Maradona."),
    ("tennis-2025", "2025-06-08", "Sinner perde la finale del Roland Garros",
     "Jannik Sinner perde una finale lunghissima contro Carlos Alcaraz a Parigi dopo aver avuto tre "
     "match point nel quarto set."),
]


@pytest.fixture
def roma_lib(make_lib):
    def factory(**overrides):
        lib = make_lib(**overrides)
        articles = [make_article(body=body, path=Path(f"{aid}.md"), title=title, date=date, source="Test",
                                 explicit_id=aid) for aid, date, title, body in ROMA]
        assert lib.ingest_articles(articles).failed == 0
        return lib

    return factory


def _articles(result) -> list[str]:
    return list(dict.fromkeys(h.article_id for h in result.hits))


def test_modes_keep_the_old_ones_and_name_the_shipped_one():
    assert {"hybrid", "dense", "bm25", "hybrid-rrf"} <= set(MODES)
    config = Config()
    assert settings_for("hybrid", config) == Settings.from_config(config)
    old = settings_for("hybrid-rrf", config)
    assert (old.fusion, old.title_boost, old.proximity, old.recency, old.expand) == ("rrf", 0.0, 0.0, 0.0, False)
    assert not settings_for("dense", config).lexical and not settings_for("bm25", config).dense
    with pytest.raises(ValueError, match="unknown retrieval mode"):
        settings_for("hybird", config)


def test_settings_follow_the_config():
    config = Config().with_(fusion="rrf", fusion_weight=0.7, title_boost=0.0, proximity=0.1, prf_terms=4,
                            recency_tiebreak=0.05, rrf_k=20)
    s = settings_for("hybrid", config)
    assert (s.fusion, s.weight, s.title_boost, s.proximity, s.prf_terms, s.recency, s.rrf_k) == (
        "rrf", 0.7, 0.0, 0.1, 4, 0.05, 20)
    assert settings_for("hybrid-prf", config).prf_terms == 10  # a comparison mode fixes what it is about


def test_an_unknown_fusion_fails_when_the_library_starts(make_lib):
    with pytest.raises(ValueError, match="unknown fusion"):
        make_lib(fusion="rank")


def test_every_mode_answers_and_keeps_the_filters(roma_lib):
    lib = roma_lib()
    for mode in MODES:
        got = _articles(lib.search("Chi è il nuovo allenatore della Roma?", k=4, mode=mode))
        assert got and set(got) <= {a for a, *_ in ROMA}, mode
        assert got[0] in ("roma-2024", "roma-2025"), mode
        only_2024 = _articles(lib.search("Chi è il nuovo allenatore della Roma?", k=4, mode=mode,
                                         until="2024-12-31"))
        assert only_2024 == ["roma-2024"], mode


def test_hits_carry_each_retrievers_rank(roma_lib):
    lib = roma_lib()
    hits = lib.search("scudetto del Napoli", k=4).hits
    assert hits[0].article_id == "napoli-2025"
    assert hits[0].ranks == {"dense": 1, "bm25": 1}
    assert hits[0].score > hits[-1].score


def _scores(result) -> dict[str, float]:
    return {h.article_id: h.score for h in result.hits}


def test_recency_only_reorders_articles_closer_than_its_weight(roma_lib):
    question = "Chi allena la Roma adesso?"  # present tense + "adesso": a present-state question
    off = _scores(roma_lib(recency_tiebreak=0.0).search(question, k=4))
    assert list(off)[:2] == ["roma-2024", "roma-2025"]  # the older article leads on words alone
    gap = off["roma-2024"] - off["roma-2025"]
    for weight in (0.3, 1.0):
        on = _scores(roma_lib(recency_tiebreak=weight).search(question, k=4))
        assert set(on) == set(off)  # a tie-break, never a filter
        for aid in off:
            assert -1e-9 <= on[aid] - off[aid] <= weight + 2e-3  # bounded (chunk scores add < 1e-3)
        for a in off:
            for b in off:
                if off[a] - off[b] > weight + 2e-3:
                    assert on[a] > on[b], (weight, a, b)
        newest_first = list(on)[0] == "roma-2025"
        assert newest_first == (weight > gap), (weight, gap)
    assert 0.3 < gap < 1.0  # so both branches above were exercised


def test_recency_leaves_questions_about_the_past_alone(roma_lib):
    past = "Chi ha sostituito Juric sulla panchina della Roma?"
    assert _scores(roma_lib(recency_tiebreak=1.0).search(past, k=4)) == _scores(
        roma_lib(recency_tiebreak=0.0).search(past, k=4))


def test_a_given_question_vector_is_used_not_embedded_again(roma_lib):
    """The answerer's second search for the same question ("since then") reuses the first one's
    vector: one embedding per question, and the same hits either way."""
    lib = roma_lib()
    question = "Chi è il nuovo allenatore della Roma?"
    first = lib.search(question, k=4)
    calls = []
    embed = lib.embedder.embed_query
    lib.embedder.embed_query = lambda text: calls.append(text) or embed(text)
    again = lib.retriever.search(question, k=4, vector=first.vector)
    assert calls == []
    assert [h.chunk_id for h in again.hits] == [h.chunk_id for h in first.hits]
    searches = []
    search = lib.retriever.search
    lib.retriever.search = lambda *a, **kw: searches.append(kw.get("vector")) or search(*a, **kw)
    answer = lib.ask("Ranieri allena la Roma?", answerer="extractive")
    assert "Da allora" in answer.text  # the "since" search ran ...
    assert len(searches) == 2 and searches[1] is not None  # ... given the first search's vector
    assert calls == ["Ranieri allena la Roma?"]


def test_hybrid_runs_bm25_beside_the_dense_query(roma_lib):
    """The dense query waits until BM25 has started: run one after the other, this would time
    out. The hits are those of the same search with the two run in turn."""
    import threading

    lib = roma_lib()
    question = "Chi allena la Roma?"
    before = lib.search(question, k=4)
    bm25_started = threading.Event()
    bm25, dense = lib.index.bm25, lib.index.dense

    def slow_bm25(*a, **kw):
        bm25_started.set()
        return bm25(*a, **kw)

    def waiting_dense(*a, **kw):
        assert bm25_started.wait(timeout=5), "BM25 did not start while the dense query ran"
        return dense(*a, **kw)

    lib.index.bm25, lib.index.dense = slow_bm25, waiting_dense
    during = lib.retriever.search(question, k=4, vector=before.vector)
    assert [h.chunk_id for h in during.hits] == [h.chunk_id for h in before.hits]
    assert during.timings_ms["retrieval"] >= max(during.timings_ms["dense"], during.timings_ms["bm25"])


def test_hits_found_only_by_bm25_come_with_their_text_without_asking_chroma(roma_lib):
    lib = roma_lib()
    question = "Sinner Alcaraz match point Parigi"
    asked = []
    get_chunks = lib.index._store.get_chunks
    lib.index._store.get_chunks = lambda ids: asked.append(list(ids)) or get_chunks(ids)
    found = lib.retriever.search(question, k=4, mode="bm25")
    assert found.hits and found.hits[0].article_id == "tennis-2025"
    assert "match point" in found.hits[0].text and found.hits[0].title == "Sinner perde la finale del Roland Garros"
    assert found.hits[0].date == "2025-06-08" and asked == []
