"""What a journalist reads on the page and in the API's text: plain words, outlets and links,
one date style per language (Italian elision included), summary language, streaming as chosen."""

from __future__ import annotations

import html

import pytest

from rag import page
from rag.dates import preposed, spoken_range
from rag.models import Answer, Citation, StoredArticle
from tests.support.stub_openai import StubOpenAI, reply


# ---- dates ------------------------------------------------------------------------------------
@pytest.mark.parametrize("first, last, it, en", [
    ("2024-11-05", "2025-06-11", "dal 5 novembre 2024 all'11 giugno 2025", "5 November 2024 – 11 June 2025"),
    ("2025-06-02", "2025-06-11", "dal 2 all'11 giugno 2025", "2–11 June 2025"),
    ("2025-06-08", "2025-06-11", "dall'8 all'11 giugno 2025", "8–11 June 2025"),
    ("2025-05-30", "2025-06-01", "dal 30 maggio al 1 giugno 2025", "30 May – 1 June 2025"),
    ("2024-11", "2025-06", "da novembre 2024 a giugno 2025", "November 2024 – June 2025"),
    ("2025-06-11", "2025-06-11", "11 giugno 2025", "11 June 2025"),
])
def test_a_period_is_said_once_per_language_with_italian_elision(first, last, it, en):
    assert spoken_range(first, last, "it") == it
    assert spoken_range(first, last, "en") == en


def test_a_date_after_a_preposition():
    assert preposed("a", "2025-06-11") == "all'11 giugno 2025"
    assert preposed("da", "2025-03-08") == "dall'8 marzo 2025"
    assert preposed("a", "2025-06-12") == "al 12 giugno 2025"
    assert preposed("a", "2025-06") == "a giugno 2025"
    assert preposed("from", "2025-06-11", "en") == "from 11 June 2025"


def test_tables_digests_and_the_api_text_say_dates_in_words():
    from rag.api import sources_text
    from rag.stories import Story
    from rag.summaries import _heading

    a = StoredArticle(id="a1", title="Titolo", date="2025-06-20", source="Il Post", chunks=3)
    row = page.article_rows([a], lang="it")[0]
    assert "20 giugno 2025" in row[1] and 'datetime="2025-06-20"' in row[1]  # sorts by time
    assert "20 giugno 2025 · Il Post · 3 passaggi" in row[0]  # the phone's card line
    assert page.article_rows([a], "giugno", "it") and page.article_rows([a], "june", "en")
    story = Story(title="Una storia", article_ids=["a1", "a2"], first_date="2025-06-02", last_date="2025-06-11")
    assert _heading(story, "it") == "Una storia (dal 2 all'11 giugno 2025; 2 articoli)"
    assert _heading(story, "en") == "Una storia (2–11 June 2025; 2 articles)"
    answer = Answer(question="q", text="t [1].", mode="extractive", model="extractive", lang="en",
                    citations=[_cit(1)])
    assert "[1] Titolo — 5 November 2024 — Il Post — https://x.it/a" in sources_text(answer)
    assert answer.to_dict()["citations"][0]["date"] == "2024-11-05"  # JSON keeps ISO


# ---- words ------------------------------------------------------------------------------------
def test_no_jargon_on_the_main_screen_and_a_link_to_the_help():
    from rag.config import Config

    offline = Config()
    for lang, words in (("it", "Risposte composte da frasi degli articoli (nessun modello linguistico)"),
                        ("en", "Answers made of sentences from the articles (no language model)")):
        badge = html.unescape(page.badge_html(offline, lang))
        assert words in badge and 'href="#help-model"' in badge
        assert "OPENAI" not in badge and "CRONACA_" not in badge
    # the help it links to names what to set, in both languages
    assert "OPENAI_BASE_URL" in page.t("it", "help_model") and "CRONACA_LLM_MODEL" in page.t("en", "help_model")


def test_passages_not_chunks_in_every_word_the_reader_sees():
    import re

    for key, (it, en) in page.WORDS.items():
        it, en = re.sub(r"\{\w+\}", "", it), re.sub(r"\{\w+\}", "", en)  # placeholders are not words
        assert "framment" not in it.lower() and "fram." not in it.lower(), key
        assert "chunk" not in en.lower(), key
    assert page.t("it", "col_chunks") == "Passaggi" and page.t("en", "col_chunks") == "Passages"


def _cit(n: int, source: str = "Il Post", url: str = "https://x.it/a") -> Citation:
    return Citation(n=n, article_id=f"a{n}", title="Titolo", date="2024-11-05", source=source, url=url,
                    chunk_id=f"c{n}", quote="Il Milan vuole Ancelotti.", chunk_text="Prima. Il Milan vuole Ancelotti.")


def test_cards_and_markers_name_the_outlet_and_link_the_original_only_when_known():
    full = page.card_html(_cit(1), 1, "it")
    assert '<span class="source-outlet">Il Post</span>' in full and 'href="https://x.it/a"' in full
    bare = page.card_html(_cit(2, source="", url=""), 1, "it")
    assert "source-outlet" not in bare and "source-meta" not in bare and "href=" not in bare
    assert "<span></span>" not in bare and " ·  ·" not in bare
    unsafe = page.card_html(_cit(3, source="", url="javascript:alert(1)"), 1, "it")
    assert "javascript" not in unsafe
    answer = Answer(question="q", text="Sì [1].", mode="extractive", model="extractive", citations=[_cit(1)])
    assert 'title="Il Post · Titolo · 5 novembre 2024"' in page.answer_html(answer, 1, lang="it")


def test_feed_rows_carry_their_name_for_choosing_and_a_card_for_a_phone():
    from types import SimpleNamespace

    feed = SimpleNamespace(name='il<post>', url="https://www.ilpost.it/feed/", last_run="2025-06-11T08:30:00Z",
                           last_status="ok", stored_items=3, items=4, last_error="")
    row = page.feed_rows([feed], "it")[0]
    assert page.name_from_cell(row[0]) == "il<post>" and "<post>" not in row[0]
    assert "11 giugno 2025 08:30 UTC" in row[0] and "https://www.ilpost.it/feed/" in row[0]
    assert page.name_from_cell("plain") == "plain"


# ---- summary language -------------------------------------------------------------------------
def test_an_offline_summary_in_another_language_says_its_quotes_stay_in_theirs(hash_sample, tmp_path):
    from rag.ui import App

    lib = hash_sample(sample_dir=tmp_path / "no-sample")
    app = App(lib)
    *_, (body, _sources) = app.summarise("", "Ancelotti", "", "", "en", "it")  # Italian page, English summary
    assert "original language (Italian)" in html.unescape(body)
    *_, (body, _sources) = app.summarise("", "Ancelotti", "", "", "it", "en")
    assert "lingua originale" not in html.unescape(body)  # nothing to say: the quotes are Italian


def test_with_a_model_the_summary_is_written_in_the_chosen_language(hash_sample, tmp_path):
    from rag.ui import App

    with StubOpenAI() as stub:
        lib = hash_sample(sample_dir=tmp_path / "no-sample", openai_base_url=stub.base_url, openai_api_key="k",
                          llm_model="stub")
        aid = next(a.id for a in lib.articles() if "napoli-scudetto" in a.path)
        stub.script([reply("Napoli won the title with Conte [1].")])
        *_, (body, _sources) = App(lib).summarise(aid, "", "", "", "en", "it")
        system = stub.chat_requests[-1].json["messages"][0]["content"]
    assert "Write in English" in system
    assert "Napoli won the title" in body


# ---- streaming --------------------------------------------------------------------------------
def test_offline_answers_stream_each_claim_as_it_is_chosen(hash_sample):
    """The first claim is out before the "since then" search runs, and the deltas are the text."""
    from rag.answering import extractive_stream

    lib = hash_sample()
    question = "Chi allena il Milan?"  # answered over the test embedder, with something since
    hits = lib.search(question, k=5).hits
    events: list[str] = []

    def later(after: str):
        events.append("since-search")
        return lib.search(question, k=6, since=after).hits

    stream = extractive_stream(lib.config, lib.embedder, lib.retriever.vocabulary, question, hits, "it",
                               later=later)
    deltas = []
    while True:
        try:
            deltas.append(next(stream))
            events.append("claim")
        except StopIteration as done:
            answer = done.value
            break
    assert events[0] == "claim" and "since-search" in events, events
    assert "".join(deltas) == answer.text and len(deltas) >= 2
    whole = lib.stream(question, answerer="extractive")
    assert len(list(whole)) >= 2  # the library's stream too, claim by claim


# ---- uploads ----------------------------------------------------------------------------------
def test_the_server_refuses_each_file_over_the_limit_on_its_own_in_the_readers_language(hash_sample, tmp_path):
    """What the CLI does: the small file goes in, the big one is named and refused; Gradio's own
    check (in the browser, English, all files dropped) only meets files beyond a transport cap."""
    from rag import ui
    from rag.ui import ALL_SOURCES, App

    lib = hash_sample(sample_dir=tmp_path / "no-sample", max_file_mb=1.0)
    assert ui.transport_limit(lib.config) == "8mb"
    small = tmp_path / "torneo.md"
    small.write_text("---\ntitle: Il torneo di Borgo Inventato\ndate: 2025-07-02\nsource: Eco Inventata\n---\n"
                     "Il Circolo di Borgo Inventato ha vinto il torneo estivo.\n", encoding="utf-8")
    big = tmp_path / "enorme.txt"
    big.write_text("Una riga di cronaca locale.\n" * 60_000, encoding="utf-8")  # about 1.6 MB
    for lang, added, refused in (("it", "aggiunti 1", "enorme.txt: file troppo grande (1.6 MB, limite 1 MB)"),
                                 ("en", "added 0", "enorme.txt: file too large (1.6 MB, limit 1 MB)")):
        report = html.unescape(App(lib).upload([str(small), str(big)], lang, "", ALL_SOURCES, "")[0])
        assert added in report and refused in report, report
    assert any(a.title == "Il torneo di Borgo Inventato" for a in lib.articles())
