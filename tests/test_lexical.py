from rag.lexical import LexicalIndex
from rag.text import tokenize


def test_tokenize_folds_stems_and_drops_stopwords():
    assert tokenize("Quali club vogliono Ancelotti?", "it") == ["club", "vogl", "ancelott"]
    assert tokenize("perché è il", "it") == []
    assert tokenize("L'allenatore della Roma", "it") == ["allen", "rom"]


def test_index_updates_filters_and_persists(tmp_path):
    idx = LexicalIndex(tmp_path / "bm25")
    idx.update(add=[
        ("c1", "Roma e Milan vogliono Ancelotti", "it", {"article_id": "a1", "date_int": 20241101, "source": "A"}),
        ("c2", "Il Napoli vince lo scudetto", "it", {"article_id": "a2", "date_int": 20250523, "source": "B"}),
        ("c3", "Ancelotti va in Brasile", "it", {"article_id": "a3", "date_int": 20250512, "source": "A"}),
    ])
    assert [i for i, _ in idx.search("Ancelotti", "it", 5)][:2] in (["c1", "c3"], ["c3", "c1"])
    assert [i for i, _ in idx.search("Ancelotti", "it", 5, since=20250101)] == ["c3"]
    assert [i for i, _ in idx.search("Ancelotti", "it", 5, source="A", until=20241231)] == ["c1"]
    idx.save(stamp="3")
    again = LexicalIndex(tmp_path / "bm25")
    assert len(again) == 3 and again.stamp == "3"
    again.update(remove=["c1"])
    assert [i for i, _ in again.search("Ancelotti", "it", 5)] == ["c3"]
    assert again.search("parola assente", "it", 5) == []


def _news(tmp_path):
    idx = LexicalIndex(tmp_path / "bm25")
    idx.update(add=[
        ("mercato#0", "Roma e Milan cercano un tecnico. Si parla di Ancelotti e di altri nomi.", "it",
         {"article_id": "mercato", "title": "Il mercato degli allenatori", "date_int": 20241101}),
        ("brasile#0", "La federazione ha scelto il nuovo commissario tecnico dopo Dorival.", "it",
         {"article_id": "brasile", "title": "Ancelotti ct del Brasile", "date_int": 20250512}),
        ("napoli#0", "Il Napoli vince lo scudetto all'ultima giornata contro il Cagliari.", "it",
         {"article_id": "napoli", "title": "Napoli campione d'Italia", "date_int": 20250523}),
        ("oro#0", "Rodri vince il Pallone d'Oro davanti a Vinicius.", "it",
         {"article_id": "oro", "title": "Il Pallone d'Oro a Rodri", "date_int": 20241028}),
    ])
    return idx


def test_title_field_lifts_the_article_a_title_is_about(tmp_path):
    idx = _news(tmp_path)
    plain = [cid for cid, _ in idx.search("Ancelotti", "it", 5)]
    boosted = idx.search("Ancelotti", "it", 5, title_boost=1.0)
    assert set(plain) == {cid for cid, _ in boosted} == {"mercato#0", "brasile#0"}
    assert boosted[0][0] == "brasile#0"  # named in its title: the article is about him
    # a word met only in text gains nothing from the title field
    assert idx.search("scudetto", "it", 5, title_boost=1.0) == idx.search("scudetto", "it", 5)


def test_titles_survive_a_save_and_an_old_index_asks_for_a_rebuild(tmp_path):
    idx = _news(tmp_path)
    idx.save(stamp="7")
    again = LexicalIndex(tmp_path / "bm25")
    assert again.stamp == "7"
    assert again.search("Ancelotti", "it", 5, title_boost=1.0) == idx.search("Ancelotti", "it", 5, title_boost=1.0)
    # a folder as bm25s left it, before tantivy: opened empty, with an unknown generation, so
    # rag.index rebuilds it from the store
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    (old_dir / "meta.json").write_text('{"ids": ["mercato#0"], "stamp": "7"}', encoding="utf-8")
    (old_dir / "tokens.npy").write_bytes(b"\x93NUMPY")
    old = LexicalIndex(old_dir)
    assert old.stamp == "" and len(old) == 0
    old.update(add=[("mercato#0", "Si parla di Ancelotti.", "it", {"article_id": "mercato"})])
    assert [c for c, _ in old.search("Ancelotti", "it", 5)] == ["mercato#0"]


def test_a_chunk_is_kept_with_its_text_and_metadata_and_an_older_schema_is_rebuilt(tmp_path):
    idx = _news(tmp_path)
    held = idx.stored(["brasile#0", "oro#0", "assente#0"])
    assert set(held) == {"brasile#0", "oro#0"}
    assert held["oro#0"] == ("Rodri vince il Pallone d'Oro davanti a Vinicius.",
                             {"article_id": "oro", "title": "Il Pallone d'Oro a Rodri", "date_int": 20241028})
    idx.update(remove=["oro#0"])
    assert idx.stored(["oro#0"]) == {}  # what is held is what is committed
    idx.save(stamp="9")
    # an index written before the stored field (version 1, no schema file): rebuilt from the store
    (tmp_path / "bm25" / "schema").unlink()
    old = LexicalIndex(tmp_path / "bm25")
    assert old.stamp == "" and len(old) == 0


def test_english_names_get_their_italian_spelling(tmp_path):
    from rag.lexical import italian_names, query_tokens

    assert italian_names("Who won the Ballon d'Or?") == ["pallone d'oro"]
    assert italian_names("Who coaches Brazil and Italy?") == ["brasile", "italia"]
    assert italian_names("Chi allena la Roma?") == []
    assert "pallon" in query_tokens("Who won the Ballon d'Or?", "en", expand=True)
    assert "pallon" not in query_tokens("Who won the Ballon d'Or?", "en")
    assert query_tokens("Chi ha vinto il Pallone d'Oro?", "it", expand=True) == tokenize(
        "Chi ha vinto il Pallone d'Oro?", "it")  # Italian questions are left as they are
    idx = _news(tmp_path)
    assert idx.search("Who won the Ballon d'Or?", "en", 5) == []
    assert [c for c, _ in idx.search("Who won the Ballon d'Or?", "en", 5, expand=True)][0] == "oro#0"


def test_feedback_terms_are_bounded_deterministic_and_new():
    import numpy as np

    from rag.lexical import PRF_DOCS, feedback_terms

    docs = [np.array(d, dtype=np.int32) for d in ([0, 1, 2, 2, 3], [0, 2, 4, 5], [1, 6, 7], [0, 8, 9], [9, 9, 9])]
    idf = np.ones(10, dtype=np.float32)
    scores = np.array([3.0, 2.0, 1.0, 0.5, 0.0])
    first = feedback_terms(scores, docs, idf, query_ids=[0], limit=3)
    assert first == feedback_terms(scores, docs, idf, query_ids=[0], limit=3)
    assert len(first) == 3 and 0 not in first
    assert first[0] == 2  # twice in the best result and once in the second
    # only the first PRF_DOCS results are read: words of later ones never come in
    late = {w for d in docs[PRF_DOCS:] for w in d.tolist()} - {w for d in docs[:PRF_DOCS] for w in d.tolist()}
    assert not late & set(feedback_terms(scores, docs, idf, query_ids=[0], limit=100))
    assert feedback_terms(np.zeros(5), docs, idf, query_ids=[0], limit=3) == []
    assert feedback_terms(scores, docs, idf, query_ids=[0], limit=0) == []


def test_feedback_expands_the_query_within_the_filters(tmp_path):
    idx = _news(tmp_path)
    plain = idx.search("Dorival", "it", 5)
    expanded = idx.search("Dorival", "it", 5, prf_terms=5)
    assert [c for c, _ in plain] == ["brasile#0"]
    assert expanded[0][0] == "brasile#0"
    assert expanded[0][1] > plain[0][1]  # its own words came back as expansion
    assert idx.search("Dorival", "it", 5, prf_terms=5, since=20250601) == []


def test_proximity_counts_adjacent_pairs(tmp_path):
    idx = _news(tmp_path)
    near = idx.proximity("Il Napoli vince lo scudetto", "it", ["napoli#0", "mercato#0", "unknown"])
    assert set(near) == {"napoli#0", "mercato#0"}
    assert near["napoli#0"] == 1.0  # "napol vinc", "vinc scudett": both pairs, in order
    assert near["mercato#0"] == 0.0
    half = idx.proximity("scudetto Napoli vince", "it", ["napoli#0"])["napoli#0"]
    assert 0.0 < half < 1.0  # "napol vinc" is there, "scudett napol" is not
    # one pair (two words) says nothing the words' own scores do not: no bonus
    assert idx.proximity("Napoli vince", "it", ["napoli#0"]) == {"napoli#0": 0.0}
    assert idx.proximity("Napoli", "it", ["napoli#0"]) == {"napoli#0": 0.0}


def test_coverage_is_the_share_of_the_question_bm25_can_see(tmp_path):
    idx = _news(tmp_path)
    assert idx.coverage("Il Napoli vince lo scudetto", "it") == 1.0  # every word is in the articles
    assert idx.coverage("il lo", "it") == 1.0  # stopwords only: nothing to doubt
    known = idx.coverage("Napoli vince", "it")
    partial = idx.coverage("Napoli vince Spezia", "it")  # a name no article spells
    assert 0.0 < partial < known == 1.0
    assert idx.coverage("Spezia Sassuolo", "it") == 0.0
