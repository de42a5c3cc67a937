from rag.chunking import chunk_article, count_tokens
from rag.models import Article
from rag.parsing import parse_file
from tests.conftest import SAMPLE


def _article(text: str) -> Article:
    return Article(id="x", title="t", text=text, lang="it", content_hash="h" * 40)


def test_chunks_respect_budget_and_spans_quote_the_article():
    art = parse_file(SAMPLE / "ancelotti_2024-11.txt").articles[0]
    chunks = chunk_article(art, max_tokens=120, overlap=0.15)
    assert len(chunks) >= 4
    for c in chunks:
        assert art.text[c.start:c.end] == c.text
        assert c.tokens <= 120 and count_tokens(c.text) <= 125
    # consecutive chunks leave no gap and repeat whole sentences where the budget allows
    assert all(b.start <= a.end + 3 for a, b in zip(chunks, chunks[1:]))
    assert any(b.start < a.end for a, b in zip(chunks, chunks[1:]))
    assert chunks[0].start == 0 and chunks[-1].end == len(art.text.rstrip())


def test_chunks_end_at_sentence_boundaries():
    text = " ".join(f"Frase numero {i} sul calciomercato della Roma." for i in range(60))
    for c in chunk_article(_article(text), max_tokens=50, overlap=0.0):
        assert c.text.endswith(".")


def test_overlong_sentence_is_split_by_tokens():
    text = "parola " * 1000
    chunks = chunk_article(_article(text.strip()), max_tokens=100, overlap=0.1)
    assert len(chunks) >= 10 and all(c.tokens <= 100 for c in chunks)
