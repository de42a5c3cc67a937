"""The page in headless Chromium: ask, read the cited sources, upload an article, ask about it.

Nothing may leave the machine: every request the page makes is recorded and must be local.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.test_app_api import start_app, stop_app

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
SEED_TITLE = "Non sta vivendo un periodo sereno Carlo Ancelotti"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CRONACA_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{CHROMIUM} not found and CRONACA_REQUIRE_BROWSER=1")
        pytest.skip(f"{CHROMIUM} not found: install chromium to run the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def app_url(sample_home, tmp_path_factory):
    """The app over a copy of the already ingested sample store (conftest's sample_home)."""
    base = tmp_path_factory.mktemp("browser-app")
    home = base / "home"
    shutil.copytree(sample_home, home)
    proc, url = start_app(home, base / "app.log")
    yield url
    stop_app(proc)


def is_local(url: str) -> bool:
    p = urlparse(url)
    if p.scheme in ("data", "blob", "about"):
        return True
    return p.hostname in ("127.0.0.1", "localhost", "::1")


def ask(page, question: str, n_answers: int, timeout: float = 180_000):
    page.locator("#question textarea").fill(question)
    page.locator("#send").click()
    # the answer is final when its sources note is rendered (streaming shows plain text)
    bots = page.locator("#chatbot .message.bot, #chatbot [data-testid='bot']")
    page.wait_for_function(
        """([n]) => {
            const panel = document.querySelector('#sources-panel');
            const turns = panel ? panel.querySelectorAll('details.sources-turn').length : 0;
            return turns >= n;
        }""", arg=[n_answers], timeout=timeout)
    return bots.last.inner_text()


def test_ask_read_sources_upload_and_ask_again(browser, app_url, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(app_url, wait_until="load")
    page.locator("#question textarea").wait_for(timeout=60_000)

    # 1. a question over the sample articles
    answer = ask(page, "Quali club vogliono Ancelotti?", 1)
    names_clubs = "Roma" in answer and "Milan" in answer  # checked last, after the page checks
    assert "Ancelotti" in answer and "[1]" in answer, answer
    cards = page.locator("#sources-panel .source-card")
    assert cards.count() >= 1
    seed = page.locator("#sources-panel .source-card", has_text=SEED_TITLE)
    assert seed.count() >= 1, page.locator("#sources-panel").inner_text()
    quote = seed.first.locator("mark")
    assert quote.count() >= 1 and len(quote.first.inner_text()) > 20
    # the [n] marker links to its card
    link = page.locator("#chatbot a.cite").first
    href = link.get_attribute("href")
    assert href and href.startswith("#src-1-")
    assert page.locator(href).count() == 1
    pages_before = len(context.pages)
    link.click()
    page.wait_for_timeout(1000)  # smooth scroll
    assert len(context.pages) == pages_before  # the marker jumps in the page, no new tab
    in_view = page.locator(href).evaluate(
        "e => { const r = e.getBoundingClientRect(); return r.bottom > 0 && r.top < innerHeight; }")
    assert in_view, "clicking a [n] marker should bring its source card into view"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat.png"), full_page=True)

    # 2. upload a new (fictional) article in the Articles tab
    article = tmp_path / "val-brembana.md"
    article.write_text(textwrap.dedent("""\
        ---
        title: "La Polisportiva Val Brembana ha nominato allenatore Mario Fittizio"
        date: 2025-06-20
        source: Eco Immaginaria
        ---
        La Polisportiva Val Brembana, squadra dilettantistica di fantasia, ha nominato allenatore
        Mario Fittizio. Il nuovo tecnico, ex portiere del Circolo Sportivo Immaginario, guiderà la
        prima squadra nel campionato di Promozione. La presentazione ufficiale si è tenuta al campo
        comunale di Borgo Inventato, davanti a duecento tifosi.
        """), encoding="utf-8")
    page.get_by_role("tab", name="Articoli").click()
    page.locator("#upload input[type=file]").set_input_files(str(article))
    page.wait_for_timeout(1500)  # the file is uploaded to the server before Importa can use it
    page.locator("#import").click()
    page.wait_for_function(
        "() => (document.querySelector('#upload-report')?.innerText || '').includes('Importazione')",
        timeout=180_000)
    report = page.locator("#upload-report").inner_text()
    assert "added 1" in report, report
    page.locator("#articles-table", has_text="Polisportiva Val Brembana").wait_for(timeout=30_000)

    # 3. a question only the new article answers
    page.get_by_role("tab", name="Chat").click()
    answer2 = ask(page, "Chi ha nominato allenatore la Polisportiva Val Brembana?", 2)
    assert "Fittizio" in answer2, answer2
    assert page.locator("#sources-panel .source-card",
                        has_text="Polisportiva Val Brembana").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "chat-upload.png"), full_page=True)

    foreign = [u for u in requests if not is_local(u)]
    assert not foreign, foreign
    context.close()
    assert names_clubs, f"the answer should name Roma and Milan: {answer[:300]}"


def test_summaries_tab_streams_a_cited_summary(browser, app_url):
    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    page = context.new_page()
    page.goto(app_url, wait_until="load")
    page.get_by_role("tab", name="Riassunti").click()
    page.locator("#summary-topic textarea").fill("Ancelotti")
    page.locator("#summarise").click()
    page.wait_for_function(
        "() => document.querySelectorAll('#summary-sources .source-card').length > 0", timeout=240_000)
    text = page.locator("#summary-output").inner_text()
    assert "Roma" in text and "Milan" in text, text
    assert "senza un modello linguistico" in text
    links = page.locator("#summary-output a.cite")
    assert links.count() >= 2
    for i in range(links.count()):  # every marker resolves to a card in the panel
        assert page.locator(links.nth(i).get_attribute("href")).count() == 1
    assert page.locator("#summary-sources .source-card", has_text=SEED_TITLE).count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "summary.png"), full_page=True)
    context.close()
