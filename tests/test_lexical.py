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
