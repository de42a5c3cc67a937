from rag import extractive
from rag.models import Hit

TEXT = (
    "Il Real Madrid attraversa un periodo difficile. E quindi, quale futuro ci sarà per Ancelotti? "
    "In pole ci sarebbero proprio Roma e Milan, pronte a puntare su Ancelotti come allenatore. "
    "Il contratto scade nel 2026 e vale 11 milioni di euro a stagione."
)


def _hits():
    return [Hit(chunk_id="c1", article_id="a1", text=TEXT, score=1.0)]


def test_question_sentences_are_never_answers_and_names_answer_who():
    chosen = extractive.select("Quali club vogliono Ancelotti?", _hits(), None, "it", max_sentences=1)
    assert chosen[0].text.startswith("In pole ci sarebbero proprio Roma e Milan")


def test_how_much_prefers_numbers_and_needs_one():
    chosen = extractive.select("Quanto guadagna Ancelotti?", _hits(), None, "it", max_sentences=1)
    assert "11 milioni" in chosen[0].text
    no_number = [extractive.Candidate(0, 0, 10, "Ancelotti è molto stimato a Madrid.")]
    assert extractive.lacks_asked_type("Quanto guadagna Ancelotti?", no_number)
    assert extractive.lacks_asked_type("Quando arriva Ancelotti?", no_number)
    assert not extractive.lacks_asked_type("Chi vuole Ancelotti?", no_number)


def test_unknown_names_detects_subjects_absent_from_the_corpus():
    vocab = {"ancelott": 0, "rom": 1}
    assert extractive.unknown_names("Chi ha vinto il Tour de France?", vocab) == ["Tour", "France"]
    assert extractive.unknown_names("Quali club vogliono Ancelotti?", vocab) == []


def test_sentences_repeated_in_overlapping_chunks_count_once():
    first = Hit(chunk_id="c1", article_id="a1", text=TEXT[:120], score=1.0, start=0, end=120)
    second = Hit(chunk_id="c2", article_id="a1", text=TEXT[47:], score=0.9, start=47, end=len(TEXT))
    texts = [c.text for c in extractive.candidates([first, second])]
    assert len(texts) == len(set(texts))
