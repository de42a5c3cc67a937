"""The page's handlers and words without a browser: streaming pace, languages, reworded library
messages, views that follow the store, the first start, the article view, feeds."""

from __future__ import annotations

import html
import json
import re
import time
from types import SimpleNamespace

import pytest

from rag import page
from rag.models import Answer, Citation
from rag.ui import ALL_SOURCES, App, SampleIngest, build_ui, paced
from tests.conftest import SAMPLE, HashEmbedder
from tests.support.stub_openai import StubOpenAI

CITED_QUESTION = "Perché la Roma ha esonerato De Rossi?"
# what the scripted model answers: cited, whatever the extractive answerer would make of the question
LLM_REPLY = "Secondo gli articoli la Roma ha cambiato allenatore [1]. Un altro articolo lo conferma [2]."


class SlowHash(HashEmbedder):
    """The test embedder, slowed down for passages: a first start that lasts long enough to watch."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def embed_passages(self, texts):
        time.sleep(self.delay)
        return super().embed_passages(texts)


def drain(generator):
    """Run a streaming handler to its end; returns every yielded tuple."""
    return list(generator)


@pytest.fixture
def stub_llm():
    """A scripted OpenAI-compatible model on 127.0.0.1; ``llm_config(stub)`` points a library at it."""
    with StubOpenAI(default_reply=LLM_REPLY) as stub:
        yield stub


def llm_config(stub) -> dict:
    return {"openai_base_url": stub.base_url, "openai_api_key": "test", "llm_model": "stub-model"}


# ---- streaming pace ----------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_burst_is_released_one_sentence_at_a_time_a_gap_apart():
    clock = FakeClock()
    text = "Prima frase [1]. Seconda frase! [2] Terza frase? [1, 2] Coda"
    words = [w + " " for w in text.split(" ")]
    out = list(paced(words, gap=0.1, clock=clock, sleep=clock.sleep))  # all words at the same instant
    assert out[0] == "Prima "
    assert out[1:4] == ["Prima frase [1]. ", "Prima frase [1]. Seconda frase! [2] ",
                        "Prima frase [1]. Seconda frase! [2] Terza frase? [1, 2] "]
    assert out[-1] == text + " "
    assert clock.slept and all(abs(s - 0.1) < 1e-9 for s in clock.slept)


def test_a_trickle_is_passed_on_delta_by_delta_without_waiting():
    clock = FakeClock()

    def tokens():
        for piece in ["Il ", "Milan ", "vuole ", "Ancelotti"]:
            clock.now += 0.2  # slower than the gap: every token is worth showing
            yield piece

    out = list(paced(tokens(), gap=0.1, clock=clock, sleep=clock.sleep))
    assert out == ["Il ", "Il Milan ", "Il Milan vuole ", "Il Milan vuole Ancelotti"]
    assert clock.slept == []


def test_an_empty_stream_still_yields_once():
    assert list(paced([])) == [""]


# ---- words -----------------------------------------------------------------------------------------
def test_every_word_exists_in_both_languages_with_the_same_fields():
    for key, (it, en) in page.WORDS.items():
        assert it and en, key
        assert set(re.findall(r"{(\w+)}", it)) == set(re.findall(r"{(\w+)}", en)), key
    tables = page.i18n_tables(types=".md", mb="10")
    assert set(tables["it"]) >= set(page.WORDS) and set(tables["en"]) >= set(page.WORDS)
    assert tables["it"]["upload_text.drop_file"] != "Drop File Here"  # Gradio's own, made Italian
    assert "10 MB" in tables["it"]["upload_intro"] and "10 MB" in tables["en"]["upload_intro"]


@pytest.mark.parametrize("value,lang", [("it-IT", "it"), ("it", "it"), ("en-GB", "en"), ("fr-FR", "en"), ("", "en")])
def test_interface_language_from_the_browser(value, lang):
    assert page.norm_lang(value) == lang


@pytest.mark.parametrize("iso,it,en", [
    ("2024-11-05", "5 novembre 2024", "5 November 2024"),
    ("2025-06", "giugno 2025", "June 2025"),
    ("2025", "2025", "2025"),
    ("", "", ""),
])
def test_dates_read_in_the_interface_language(iso, it, en):
    assert page.format_date(iso, "it") == it and page.format_date(iso, "en") == en


def _library_reasons(make_lib, tmp_path) -> list[str]:
    """Real messages from the library, so a rewording there shows up here."""
    from rag.feeds import FeedError, FeedStore
    from rag.parsing import ItemError, check_file

    reasons = []
    for name, size in (("virus.exe", 10), ("vuoto.md", 0), ("grande.md", 50 * 2**20)):
        with pytest.raises(ItemError) as info:
            check_file(name, size, 10 * 2**20)
        reasons.append(str(info.value))
    feeds = FeedStore(tmp_path)
    feeds.add("https://example.org/feed.xml", "esempio")
    for call in (lambda: feeds.add("https://example.org/feed.xml"), lambda: feeds.add("ftp://x/y"),
                 lambda: feeds.add("https://example.org/altro.xml", "esempio"), lambda: feeds.remove("nessuno")):
        with pytest.raises(FeedError) as info:
            call()
        reasons.append(str(info.value))
    return reasons


def test_library_reasons_are_reworded_for_an_italian_reader(make_lib, tmp_path):
    reasons = _library_reasons(make_lib, tmp_path)
    italian = [page.reason(r, "it") for r in reasons]
    assert [page.reason(r, "en") for r in reasons] == reasons  # English readers get them as they are
    assert all(i != r for i, r in zip(italian, reasons)), list(zip(reasons, italian))
    assert italian[0].startswith("tipo di file non ammesso") and italian[1] == "file vuoto"
    assert italian[2].startswith("file troppo grande (50.0 MB")
    assert page.reason("item 3: malformed JSON (Expecting value at column 1)", "it") == \
        "elemento 3: JSON non valido (Expecting value at column 1)"
    assert page.located("https://x.it/a/b: HTTP 404 Not Found", "it") == "https://x.it/a/b: risposta HTTP 404 Not Found"
    assert page.reason("something new", "it") == "something new"  # unknown: left alone, not lost


def test_request_errors_are_worded_by_field_and_code():
    from rag import validation

    with pytest.raises(validation.RequestError) as bad_date:
        validation.filters("2024-13-45")
    with pytest.raises(validation.RequestError) as bad_range:
        validation.filters("2025-01-01", "2024-01-01")
    with pytest.raises(validation.RequestError) as empty:
        validation.question("  ")
    assert "«2024-13-45»" in page.request_error(bad_date.value, "it") and "«Dal»" in page.request_error(
        bad_date.value, "it")
    assert "“From”" in page.request_error(bad_date.value, "en") and "YYYY-MM-DD" in page.request_error(
        bad_date.value, "en")
    assert "«Al»" in page.request_error(bad_range.value, "it")
    assert page.request_error(empty.value, "en") == "Write a question."


# ---- rendering ------------------------------------------------------------------------------------
def _cit(n, date="2024-11-05", title="Titolo <b>"):
    return Citation(n=n, article_id=f"a{n}", title=title, date=date, source="Fonte", url="https://x.it/a",
                    chunk_id=f"c{n}", quote="Il Milan vuole Ancelotti.", chunk_text="Prima. Il Milan vuole Ancelotti.")


def test_cards_come_in_citation_order_dated_collapsible_and_escaped():
    html = page.sources_html([{"turn": 1, "question": "q", "citations": [_cit(2), _cit(1, date="2025-06")]}], "en")
    assert html.index('id="src-1-1"') < html.index('id="src-1-2"')
    assert '<details class="source-card" id="src-1-1" open>' in html
    assert "June 2025" in html and "5 November 2024" in html
    assert "Titolo &lt;b&gt;" in html and "Titolo <b>" not in html
    assert "original article" in html and "articolo originale" not in html


def test_answer_notices_in_the_interface_language():
    answer = Answer(question="e la Juventus?", standalone_question="Chi vuole Ancelotti? Juventus",
                    text="Nessuno [1].", mode="extractive", model="extractive", citations=[_cit(1)])
    en = page.answer_html(answer, 2, asked="e la Juventus?", lang="en")
    it = page.answer_html(answer, 2, asked="e la Juventus?", lang="it")
    assert "Sources: 1 (see below)" in en and "Fonti" not in en and "Question as understood" in en
    assert "Fonti: 1 (vedi sotto)" in it and "Domanda interpretata" in it
    assert 'href="#src-2-1"' in en


def test_archive_line_counts_and_period_in_both_languages():
    stats = {"articles": 1, "chunks": 3, "first_date": "2024-09-18", "last_date": "2025-06-20"}
    assert "1 articolo · 3 passaggi · dal 18 settembre 2024 al 20 giugno 2025" in page.status_html(stats, "it")
    assert "1 article · 3 passages · 18 September 2024 – 20 June 2025" in page.status_html(stats, "en")
    stats["last_date"] = "2025-06-11"  # elided: "all'11", not "al 11"
    assert "dal 18 settembre 2024 all'11 giugno 2025" in html.unescape(page.status_html(stats, "it"))
    running = page.status_html(stats, "en", progress=(4, 25))
    assert "First start" in running and "4 of 25" in running


def test_title_cells_carry_the_id_escaped():
    from rag.models import StoredArticle

    a = StoredArticle(id='x"<y>', title="Un <titolo> \"lungo\"", date="2024-01-01", source="S", chunks=2)
    cell = page.article_rows([a])[0][0]
    assert "<titolo>" not in cell and page.id_from_cell(cell) == 'x"<y>'
    assert page.article_rows([a], "lungo s")[0][0] == cell and page.article_rows([a], "corto") == []


# ---- the page over a library ------------------------------------------------------------------------
@pytest.fixture
def sample_app(hash_sample, tmp_path):
    lib = hash_sample(sample_dir=tmp_path / "no-sample")
    return build_ui(lib).cronaca_app


@pytest.fixture
def llm_app(hash_sample, tmp_path, stub_llm):
    lib = hash_sample(sample_dir=tmp_path / "no-sample", **llm_config(stub_llm))
    return build_ui(lib).cronaca_app


def test_the_page_config_carries_no_store_data(hash_sample, tmp_path):
    lib = hash_sample(sample_dir=tmp_path / "no-sample")
    demo = build_ui(lib)
    config = json.dumps(demo.get_config_file(), default=str)
    articles = lib.articles()
    assert articles
    leaked = [a.id for a in articles if a.id in config] + [a.title for a in articles if a.title in config]
    leaked += [s for s in lib.stats()["sources"] if s in config]
    assert not leaked, leaked
    assert '"25' not in config and "25 articoli" not in config
    # the load event fills them
    loaded = demo.cronaca_app.on_load("it")
    assert "25 articoli" in loaded[6] and len(loaded[8].index) == 25


def test_views_follow_another_process_writing_to_the_store(sample_app, make_lib, tmp_path):
    app = sample_app
    first = app.on_load("it")
    seen = first[11]
    unchanged = app.tick(seen, "it", "", ALL_SOURCES, "")
    assert all(isinstance(v, dict) and v.get("__type__") == "update" and len(v) == 1 for v in unchanged[:6])
    other = make_lib(home=app.lib.home, sample_dir=tmp_path / "no-sample")  # another "process" on the same home
    new = tmp_path / "nuovo.md"
    new.write_text("---\ntitle: Il Circolo Immaginario vince il torneo\ndate: 2025-07-01\nsource: Eco Inventata\n---\n"
                   "Il Circolo Immaginario ha vinto il torneo estivo di Borgo Inventato.\n", encoding="utf-8")
    assert other.ingest([new]).added == 1
    fresh = app.tick(seen, "en", "", ALL_SOURCES, "")
    assert "26 articles" in fresh[0]
    assert ("Eco Inventata", "Eco Inventata") in fresh[1]["choices"]
    assert "1 July 2025" in fresh[2].iloc[0, 1] and "Circolo Immaginario" in fresh[2].iloc[0, 0]
    assert any("Circolo Immaginario" in label for label, _ in fresh[3]["choices"])
    assert fresh[5] != seen


def test_upload_report_in_the_readers_language(sample_app, tmp_path):
    ok = tmp_path / "ok.md"
    ok.write_text("---\ntitle: Prova\nsource: Eco Inventata\n---\nIl Bologna vince la Coppa Italia di prova.\n")
    bad = tmp_path / "virus.exe"
    bad.write_bytes(b"MZ")
    report_en = sample_app.upload([str(ok), str(bad)], "en", "", ALL_SOURCES, "")
    assert "Import: added 1, updated 0" in report_en[0] and "virus.exe: unsupported file type" in report_en[0]
    report_it = sample_app.upload([str(ok)], "it", "", ALL_SOURCES, "")
    assert "Importazione: aggiunti 0, aggiornati 0, invariati 1" in report_it[0]
    assert "26 articoli" in report_it[2]  # the views came back with the upload


def test_a_conversation_is_rendered_again_in_the_other_language(llm_app):
    session = App.new_session()
    steps = drain(llm_app.chat(CITED_QUESTION, "", "", "", ALL_SOURCES, session, "it"))
    assert "Cerco negli articoli" in steps[0][0][-1]["content"]
    final = steps[-1]
    assert "Fonti:" in final[0][-1]["content"] and 'id="src-1-1"' in final[1]
    english = App.messages(session, "en")
    assert "Sources:" in english[-1]["content"] and "Fonti" not in english[-1]["content"]
    assert "Sources of question 1" in App.sources(session, "en")
    bad = drain(llm_app.chat("Chi?", "2024-13-45", "", "", ALL_SOURCES, session, "en"))
    assert "is not a date" in bad[-1][0][-1]["content"]
    assert "non valida" in App.messages(session, "it")[-1]["content"]


def test_as_of_keeps_later_articles_out_of_the_answer(llm_app):
    now, then = App.new_session(), App.new_session()
    drain(llm_app.chat("Chi allena la Roma?", "", "", "", ALL_SOURCES, now, "it"))
    drain(llm_app.chat("Chi allena la Roma?", "", "", "2024-10-31", ALL_SOURCES, then, "it"))
    dates_now = [c.date for c in now["turns"][-1]["answer"].citations]
    dates_then = [c.date for c in then["turns"][-1]["answer"].citations]
    assert dates_then and all(d <= "2024-10-31" for d in dates_then), dates_then
    assert any(d > "2024-10-31" for d in dates_now), dates_now  # the date made the difference


def test_the_article_view_shows_metadata_text_and_chunks(sample_app):
    lib = sample_app.lib
    article = next(a for a in lib.articles() if a.chunks >= 2)
    chunks = lib.chunks_of(article.id)
    assert [c.index for c in chunks] == list(range(article.chunks))
    stored = lib.article(article.id)
    assert all(c.text.strip()[:40] in stored.text for c in chunks)
    evt = SimpleNamespace(row_value=[page.title_cell(article), article.date, article.source, article.chunks])
    html, chosen, button = sample_app.show_article("en", evt)
    assert chosen == article.id and button["visible"] is True
    assert f"<code>{page.esc(article.id)}</code>" in html and f"Passages ({article.chunks})" in html
    kept = sample_app.delete("", article.id, "en", "", ALL_SOURCES, "")  # the reader said no
    assert lib.article(article.id) is not None and kept[0] == kept[1] == {"__type__": "update"}
    out = sample_app.delete("yes", article.id, "en", "", ALL_SOURCES, "")
    assert f"Deleted article {article.id}" in out[0] and lib.article(article.id) is None
    assert "24 articles" in out[4]
    assert "no longer stored" in sample_app.detail(article.id, "en")


# ---- first start -------------------------------------------------------------------------------------
def test_first_start_ingests_in_the_background_and_answers_meanwhile(make_lib, stub_llm):
    lib = make_lib(embedder=SlowHash(0.3), **llm_config(stub_llm))
    assert lib.needs_sample()
    demo = build_ui(lib)
    app = demo.cronaca_app
    run = app.sample
    try:
        assert run is not None and run.total == len(list(SAMPLE.glob("*.md")) + list(SAMPLE.glob("*.txt"))) - 1
        deadline = time.monotonic() + 60
        while run.done < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        loaded = app.on_load("it")  # the page answers while the sample goes in
        assert "Primo avvio" in loaded[6] and f"di {run.total} file" in loaded[6]
        answer = lib.ask(CITED_QUESTION)
        assert run.running, "the test embedder should be slow enough to answer before the end"
        in_now = {a.id for a in lib.articles()}
        assert answer.citations and {c.article_id for c in answer.citations} <= in_now
        assert len(in_now) < 25
    finally:
        assert run.wait(120)
    assert lib.stats()["articles"] == 25 and not run.errors
    done = app.tick("stale", "it", "", ALL_SOURCES, "")
    assert "Primo avvio" not in done[0] and "25 articoli" in done[0]


def test_no_sample_run_when_the_store_has_articles(sample_app):
    assert sample_app.sample is None


def test_sample_ingest_counts_files_like_the_cli(make_lib):
    run = SampleIngest(make_lib())
    run.start()
    assert run.wait(300)
    from rag.parsing import iter_files

    files = [p for p, e in iter_files([run.lib.config.sample_dir]) if e is None]
    assert (run.done, run.total) == (len(files), len(files)) and "README.md" not in {p.name for p in files}
    assert run.added == len(files) and not run.errors
