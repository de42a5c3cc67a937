from rag.citations import markers, validate
from rag.models import Hit


def _hit(n: int, text: str) -> Hit:
    return Hit(chunk_id=f"c{n}", article_id=f"a{n}", text=text, score=1.0, title=f"T{n}")


HITS = [
    _hit(1, "Il Napoli ha vinto lo scudetto. Conte è l'allenatore."),
    _hit(2, "In pole ci sarebbero Roma e Milan. Ancelotti resta al Real."),
    _hit(3, "La Juventus ha cambiato allenatore."),
]


def test_invalid_markers_removed_and_renumbered():
    text, cits = validate("Roma e Milan vogliono Ancelotti [2][9]. Il Napoli è campione [1, 7].", HITS)
    assert text == "Roma e Milan vogliono Ancelotti [1]. Il Napoli è campione [2]."
    assert [(c.n, c.article_id) for c in cits] == [(1, "a2"), (2, "a1")]
    assert cits[0].quote == "In pole ci sarebbero Roma e Milan."
    assert cits[1].quote == "Il Napoli ha vinto lo scudetto."
    assert sorted(markers(text)) == [c.n for c in cits]


def test_uncited_sources_are_not_listed_and_no_markers_means_no_citations():
    text, cits = validate("Nessuna fonte citata qui.", HITS)
    assert cits == [] and text == "Nessuna fonte citata qui."
    _, cits = validate("Solo la Juve [3].", HITS)
    assert [c.article_id for c in cits] == ["a3"]
