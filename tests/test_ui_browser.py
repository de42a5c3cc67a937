"""The page in headless Chromium, served from this process over the fast test embedder.

What needs control over the library to show: an answer streaming from a (slow, scripted) language
model, the first start with a slow embedder, feeds against a local news site, the article view,
the login wall (nothing about the store before it), and a phone. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import gradio as gr
import httpx
import pytest

from rag import page as words
from rag import ui
from tests import test_app_browser as shared
from tests.support import stub_openai
from tests.support.news_site import NewsSite
from tests.test_app_api import free_port
from tests.test_app_browser import (
    DESKTOP,
    PHONE,
    RECORD_JS,
    archive_count,
    ask,
    foreign_in,
    interface_text,
    is_local,
    open_page,
    shot,
    source_options,
    wait_loaded,
)
from tests.test_ui import CITED_QUESTION, LLM_REPLY, SlowHash, llm_config

pytestmark = [pytest.mark.browser]
browser = shared.browser  # one Chromium per module
AUTH = ("redazione", "segreta")


@contextlib.contextmanager
def served(lib, auth: tuple[str, str] | None = None, max_file_size: str | int = "10mb") -> Iterator[SimpleNamespace]:
    """``build_ui(lib)`` mounted at ``/`` as ``rag.server`` mounts it, on a free port, in a thread."""
    import uvicorn
    from fastapi import FastAPI

    demo = ui.build_ui(lib)
    app = FastAPI()
    gr.mount_gradio_app(app, demo, path="/", auth=auth, theme=ui.theme(), css=words.CSS, head=words.HEAD,
                        footer_links=["api"], show_error=False, max_file_size=max_file_size)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, name="page-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the page did not start")
        time.sleep(0.05)
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}/", app=demo.cronaca_app)
    finally:
        server.should_exit = True
        thread.join(20)


@pytest.fixture
def sample_lib(hash_sample, tmp_path):
    return hash_sample(sample_dir=tmp_path / "no-sample", fetch_delay=0.05)


@pytest.fixture
def stub():
    with stub_openai.StubOpenAI(default_reply=LLM_REPLY) as model:
        yield model


@pytest.fixture
def llm_lib(hash_sample, tmp_path, stub):
    """The sample with a scripted model: every question gets a cited answer, whatever its words."""
    return hash_sample(sample_dir=tmp_path / "no-sample", **llm_config(stub))


# ---- streaming ------------------------------------------------------------------------------------------

def test_an_llm_answer_streams_token_by_token(browser, llm_lib, stub):
    reply = ("Daniele De Rossi è stato esonerato dalla Roma dopo quattro giornate [1]. Al suo posto è arrivato "
             "Ivan Juric, il 18 settembre 2024 [1].")
    stub.script([stub_openai.trickle(reply, interval=0.08, chunk_size=6)])
    with served(llm_lib) as site:
        context, pg = open_page(browser, site.url)
        assert "stub-model" in pg.locator("#mode-badge").inner_text()
        pg.evaluate(RECORD_JS)
        final = ask(pg, CITED_QUESTION, 1)
        states = pg.evaluate("window.__states")
        shot(pg, "stream-llm.png")
        context.close()
    flat = " ".join(reply.split())
    partial = [s for s in states if s != states[-1] and flat.startswith(" ".join(s.split())) and len(s) > 5]
    assert len(partial) >= 3, states  # seen growing several times before it was complete
    assert [len(s) for s in partial] == sorted(len(s) for s in partial)
    assert "Juric" in final and "[1]" in final and "Fonti: 1" in final


# ---- first start ----------------------------------------------------------------------------------------
def test_first_start_serves_at_once_shows_progress_and_answers_meanwhile(browser, make_lib, stub):
    lib = make_lib(embedder=SlowHash(0.5), **llm_config(stub))
    assert lib.needs_sample()
    started = time.monotonic()
    with served(lib) as site:
        context, pg = open_page(browser, site.url)
        status = pg.locator("#status").inner_text()
        assert "Primo avvio" in status and "di 25 file" in status, status
        assert time.monotonic() - started < 30 and site.app.sampling
        shot(pg, "first-start.png")
        pg.wait_for_function("() => /Primo avvio: importo gli articoli di esempio \\(([3-9]|\\d\\d) di/"
                             ".test(document.querySelector('#status').innerText)", timeout=60_000)
        ask(pg, CITED_QUESTION, 1)
        assert site.app.sampling, "the slow embedder should keep the sample going past the first answer"
        cited = pg.locator("#sources-panel .source-title").all_inner_texts()
        stored = {a.title for a in lib.articles()}
        assert cited and set(cited) <= stored and len(stored) < 25, (cited, len(stored))
        assert "Primo avvio" in pg.locator("#status").inner_text()
        # the note goes away when the sample is in, without a reload
        pg.wait_for_function("() => { const s = document.querySelector('#status').innerText;"
                             " return s.includes('25 articoli') && !s.includes('Primo avvio'); }", timeout=120_000)
        shot(pg, "first-start-done.png")
        context.close()


# ---- the login wall ---------------------------------------------------------------------------------------
def test_nothing_about_the_store_reaches_a_visitor_who_has_not_logged_in(browser, sample_lib):
    articles = sample_lib.articles()
    secrets = ([a.id for a in articles] + [a.title for a in articles] + sample_lib.stats()["sources"]
               + ["25 articoli", "25 articles"])
    with served(sample_lib, auth=AUTH) as site:
        for path in ("", "config", "gradio_api/info", "info", "gradio_api/config"):
            response = httpx.get(site.url + path, timeout=20)
            body = response.text
            leaked = [s for s in secrets if s in body]
            assert not leaked, (path, response.status_code, leaked[:5])
        context = browser.new_context(locale="it-IT", viewport=DESKTOP)
        pg = context.new_page()
        pg.goto(site.url, wait_until="load")
        pg.locator("input[type=password]").wait_for(timeout=30_000)
        assert not [s for s in secrets if s in pg.content()]
        pg.locator("input[type=text], input:not([type])").first.fill(AUTH[0])
        pg.locator("input[type=password]").fill(AUTH[1])
        pg.locator("button", has_text=re.compile("Accedi|Login")).click()
        wait_loaded(pg)
        assert archive_count(pg) == 25
        assert set(sample_lib.stats()["sources"]) <= set(source_options(pg))
        pg.get_by_role("tab", name="Articoli").click()
        pg.locator("#articles-table", has_text=articles[0].title[:30]).wait_for(timeout=10_000)
        shot(pg, "after-login.png")
        context.close()


# ---- articles ---------------------------------------------------------------------------------------------
def test_an_article_opens_in_a_detail_view_and_can_be_deleted(browser, sample_lib):
    article = next(a for a in sample_lib.articles() if a.chunks >= 2)
    with served(sample_lib) as site:
        context, pg = open_page(browser, site.url, locale="en-US")
        pg.get_by_role("tab", name="Articles").click()
        pg.locator("#table-search textarea, #table-search input").first.fill(article.title[:25])
        pg.wait_for_timeout(1500)
        rows = pg.locator("#articles-table [role=row]").filter(has=pg.locator("[role=gridcell]"))
        texts = rows.all_inner_texts()
        assert texts and all(article.title[:25] in t for t in texts), texts
        when = words.format_date(article.date, "en")  # dates in words, in the reader's language
        pg.locator("#articles-table").get_by_text(when, exact=True).filter(visible=True).first.click()
        detail = pg.locator("#article-detail")
        detail.locator(".article-title").wait_for(timeout=20_000)
        assert article.id in detail.inner_text() and article.title in detail.inner_text()
        assert f"Passages ({article.chunks})" in detail.inner_text()
        detail.locator("summary", has_text="Passages").click()
        assert detail.locator(".article-chunks li").count() == article.chunks
        shot(pg, "article-detail.png")
        asked: list[str] = []
        pg.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))  # the reader says no
        pg.locator("#delete").click()
        pg.wait_for_timeout(2000)
        assert asked and "delete" in asked[0].lower()
        assert sample_lib.article(article.id) is not None and archive_count(pg) == 25
        assert "Deleted" not in pg.locator("#upload-report").inner_text()
        pg.once("dialog", lambda d: (asked.append(d.message), d.accept()))  # and then yes
        pg.locator("#delete").click()
        pg.wait_for_function("() => (document.querySelector('#upload-report')?.innerText || '').includes('Deleted')",
                             timeout=30_000)
        assert archive_count(pg) == 24 and sample_lib.article(article.id) is None
        assert "no longer" in detail.inner_text() or "Choose an article" in detail.inner_text()
        context.close()


def test_uploads_speak_the_readers_language(browser, sample_lib, tmp_path):
    good = tmp_path / "torneo.md"
    good.write_text("---\ntitle: Il torneo di Borgo Inventato\ndate: 2025-07-02\nsource: Eco Inventata\n---\n"
                    "Il Circolo di Borgo Inventato ha vinto il torneo estivo.\n", encoding="utf-8")
    empty = tmp_path / "vuoto.md"
    empty.write_text("", encoding="utf-8")
    with served(sample_lib) as site:
        context, pg = open_page(browser, site.url, locale="en-US")
        pg.get_by_role("tab", name="Articles").click()
        assert "Drop File Here" in interface_text(pg)
        pg.locator("#upload input[type=file]").set_input_files([str(good), str(empty)])
        pg.wait_for_timeout(1500)
        pg.locator("#import").click()
        pg.wait_for_function("() => (document.querySelector('#upload-report')?.innerText || '').includes('Import')",
                             timeout=60_000)
        report = pg.locator("#upload-report").inner_text()
        assert "Import: added 1" in report and "vuoto.md: empty file" in report, report
        assert not foreign_in(interface_text(pg), "en")
        assert archive_count(pg) == 26 and "Eco Inventata" in source_options(pg)
        shot(pg, "upload-english.png")
        context.close()


# ---- feeds ------------------------------------------------------------------------------------------------
def test_feeds_are_added_refreshed_and_removed_from_the_page(browser, sample_lib):
    sample_lib.config = sample_lib.config.with_(fetch_allow_private=True)  # the news site is on 127.0.0.1
    with NewsSite() as site:
        for path, fixture in (("/cronaca/2025/03/12/genova-diga-collaudo", "genova-diga.html"),
                              ("/cronaca/2025/03/14/firenze-tram-linea-3", "firenze-tram.html"),
                              ("/cronaca/2025/03/15/agrigento-turni-acqua", "agrigento-acqua.html")):
            site.page(path, fixture=fixture)
        feed_url = site.feed("/feed/cronaca.xml", fixture="gazzetta-rss.xml")
        broken_url = site.feed("/feed/rotto.xml", fixture="broken.xml")
        with served(sample_lib) as page_site:
            context, pg = open_page(browser, page_site.url)
            pg.get_by_role("tab", name="Articoli").click()
            for url, name in ((feed_url, "gazzetta"), (broken_url, "rotto")):
                pg.locator("#feed-url textarea, #feed-url input").first.fill(url)
                pg.locator("#feed-name textarea, #feed-name input").first.fill(name)
                pg.locator("#feed-add").click()
                pg.locator("#feed-report", has_text=f"Aggiunto il feed «{name}»").wait_for(timeout=20_000)
            table = pg.locator("#feeds-table")
            assert "gazzetta" in table.inner_text() and "mai" in table.inner_text()
            pg.locator("#feeds-table").get_by_text("gazzetta", exact=True).filter(visible=True).first.click()
            pg.wait_for_timeout(800)
            pg.locator("#feed-refresh").click()
            pg.locator("#feed-report", has_text="1 feed: aggiunti 3").wait_for(timeout=90_000)
            assert archive_count(pg) == 28
            assert "La Gazzetta del Golfo" in source_options(pg)
            pg.get_by_role("tab", name="Articoli").click()
            pg.locator("#articles-table", has_text="Genova, la nuova diga").wait_for(timeout=10_000)
            assert "riuscito" in table.inner_text()
            # a broken feed: its error, reworded
            pg.locator("#feeds-table").get_by_text("rotto", exact=True).filter(visible=True).first.click()
            pg.wait_for_timeout(800)
            pg.locator("#feed-refresh").click()
            pg.locator("#feed-report", has_text="non riuscito").wait_for(timeout=60_000)
            report = pg.locator("#feed-report").inner_text()
            assert "feed RSS o Atom" in report or "XML del feed non valido" in report, report
            shot(pg, "feeds.png")
            pg.locator("#feed-remove").click()
            pg.locator("#feed-report", has_text="Rimosso il feed «rotto»").wait_for(timeout=20_000)
            assert "rotto" not in table.inner_text() and "gazzetta" in table.inner_text()
            context.close()


# ---- time and the phone -------------------------------------------------------------------------------------
def test_as_of_keeps_later_articles_out_and_cards_are_dated(browser, llm_lib):
    with served(llm_lib) as site:
        context, pg = open_page(browser, site.url, locale="en-US")
        pg.locator("#as-of input, #as-of textarea").first.fill("2024-10-31")
        ask(pg, "Chi allena la Roma?", 1)
        then = pg.locator("#sources-panel details.sources-turn[open] .source-date").all_inner_texts()
        assert then and all(re.fullmatch(r"\d+ (September|October) 2024", d) for d in then), then
        pg.locator("#as-of input, #as-of textarea").first.fill("")
        ask(pg, "Chi allena la Roma?", 2)
        now = pg.locator("#sources-panel details.sources-turn[open] .source-date").all_inner_texts()
        assert any(d.endswith("2025") for d in now), now
        shot(pg, "as-of.png")
        context.close()


def test_the_phone_keeps_the_page_at_the_top_and_folds_the_cards(browser, llm_lib):
    with served(llm_lib) as site:
        context, pg = open_page(browser, site.url, viewport=PHONE, is_mobile=True, has_touch=True)
        pg.wait_for_timeout(1000)
        assert pg.evaluate("scrollY") == 0
        ask(pg, CITED_QUESTION, 1)
        pg.wait_for_timeout(500)
        cards = pg.locator("#sources-panel details.source-card")
        assert cards.evaluate_all("cs => cs.length > 0 && cs.every(c => !c.open)")
        assert pg.evaluate("document.documentElement.scrollHeight") < 3500
        assert not [u for u in pg.requests if not is_local(u)]
        shot(pg, "phone-inprocess.png")
        context.close()
