"""The real page (``python app.py`` over the ingested sample) in headless Chromium.

Ask, read the cited sources, upload an article and ask about it; see a CLI ingest appear; one
interface language per reader; the articles table at 1280 px; the page on a phone. Nothing may
leave the machine: every request the page makes is recorded and must be local. Screenshots are
kept under test-artifacts/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import pytest

from rag import page as words
from tests.test_app_api import app_env, start_app, stop_app

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
SEED_TITLE = "Non sta vivendo un periodo sereno Carlo Ancelotti"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

pytestmark = [pytest.mark.browser, pytest.mark.slow]


# ---- helpers shared with tests/test_ui_browser.py -------------------------------------------------
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


def is_local(url: str) -> bool:
    p = urlparse(url)
    if p.scheme in ("data", "blob", "about"):
        return True
    return p.hostname in ("127.0.0.1", "localhost", "::1")


def open_page(browser, url: str, locale: str = "it-IT", viewport: dict | None = None, **options):
    """A new context and page, loaded until the archive line is filled; requests are recorded."""
    context = browser.new_context(locale=locale, viewport=viewport or DESKTOP, **options)
    pg = context.new_page()
    pg.requests = []  # type: ignore[attr-defined]
    pg.on("request", lambda r: pg.requests.append(r.url))
    pg.goto(url, wait_until="load")
    wait_loaded(pg)
    return context, pg


def wait_loaded(pg, timeout: float = 60_000) -> None:
    pg.wait_for_function("() => !!document.querySelector('#status .archive-line')", timeout=timeout)


def shot(pg, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / name), full_page=True)


def ask(pg, question: str, n_answers: int, timeout: float = 180_000) -> str:
    pg.locator("#question textarea").fill(question)
    pg.locator("#send").click()
    # the answer is final when its turn of sources is rendered (streaming shows plain text)
    pg.wait_for_function(
        "([n]) => document.querySelectorAll('#sources-panel details.sources-turn').length >= n",
        arg=[n_answers], timeout=timeout)
    return pg.locator("#chatbot .message.bot, #chatbot [data-testid='bot']").last.inner_text()


def archive_count(pg) -> int:
    m = re.search(r"(\d+) (?:articoli|articolo|articles|article)\b", pg.locator("#status").inner_text())
    assert m, pg.locator("#status").inner_text()
    return int(m.group(1))


def dropdown_options(pg, elem_id: str) -> list[str]:
    """The choices a dropdown shows when opened (its tab must be the one shown)."""
    pg.locator(f"#{elem_id} input").click()
    options = pg.locator("[role='listbox'] [role='option'], ul.option-list li")
    options.first.wait_for(timeout=10_000)
    texts = [t.replace("✓", "").strip() for t in options.all_inner_texts()]
    pg.keyboard.press("Escape")
    return texts


def source_options(pg) -> list[str]:
    """The choices of the chat's source filter, as the browser shows them."""
    pg.get_by_role("tab", name="Chat").click()
    return dropdown_options(pg, "source")


# what is content (articles, answers, questions), not interface
CONTENT = ("#articles-table [role=gridcell], #feeds-table [role=gridcell], .source-card, #summary-output, "
           "#summary-sources, "
           "#article-detail .article-title, #article-detail .article-text, #article-detail .chunk-text, "
           "#article-detail dd, #chatbot .message, .sources-turn > summary, #lang-switch, #summary-lang, "
           "#source, #summary-article")

INTERFACE_TEXT_JS = """(content) => {
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (!el || el.closest(content) || !el.checkVisibility()) continue;
    if (el.closest('script, style')) continue;
    out.push(walker.currentNode.textContent);
  }
  document.querySelectorAll('input[placeholder], textarea[placeholder]').forEach(e => {
    if (e.checkVisibility() && !e.closest(content)) out.push(e.getAttribute('placeholder'));
  });
  document.querySelectorAll('.answer-notice').forEach(e => out.push(e.innerText));
  return out.join('\\n');
}"""


def interface_text(pg) -> str:
    return pg.evaluate(INTERFACE_TEXT_JS, CONTENT)


def _fragments(template: str) -> set[str]:
    """The literal parts of a words template that are long enough to mean something."""
    parts = (p.replace("*", "").replace("`", "").strip(" :·().,«»“”-") for p in re.split(r"{\w+}", template))
    return {p for p in parts if len(p) >= 3}


GRADIO_EN = ("Drop File Here", "Click to Upload", "Use via API", "Built with Gradio", "Copy message")


def foreign_words(lang: str) -> list[str]:
    """Interface words of the other language, minus those both languages share."""
    it = {f for pair in words.WORDS.values() for f in _fragments(pair[0])} | set(words.GRADIO_IT.values())
    en = {f for pair in words.WORDS.values() for f in _fragments(pair[1])} | set(GRADIO_EN)
    shared = (it & en) | {"password", "Menu", "Chat", "API", "OPENAI_BASE_URL", "OPENAI_API_KEY",
                          "CRONACA_LLM_MODEL"}
    return sorted((en if lang == "it" else it) - shared, key=len, reverse=True)


def foreign_in(text: str, lang: str) -> list[str]:
    return [w for w in foreign_words(lang) if re.search(rf"(?<!\w){re.escape(w)}(?!\w)", text)]


def visit_tabs(pg, names: tuple[str, str, str]) -> str:
    """The interface text of every tab, one after the other."""
    seen = []
    for name in names:
        pg.get_by_role("tab", name=name).click()
        pg.wait_for_timeout(400)
        seen.append(interface_text(pg))
    return "\n".join(seen)


# ---- the app over a copy of the ingested sample ------------------------------------------------------
@pytest.fixture(scope="module")
def served(sample_home, tmp_path_factory):
    """``python app.py`` over a copy of the already ingested sample store (conftest's sample_home)."""
    base = tmp_path_factory.mktemp("browser-app")
    home = base / "home"
    shutil.copytree(sample_home, home)
    proc, url = start_app(home, base / "app.log")
    yield SimpleNamespace(url=url, home=home, log=base / "app.log")
    stop_app(proc)


@pytest.fixture(scope="module")
def app_url(served):
    return served.url


# records every state of the last assistant message, to see an answer grow while it streams
RECORD_JS = """() => {
  window.__states = [];
  const chat = document.querySelector('#chatbot');
  new MutationObserver(() => {
    const bots = chat.querySelectorAll('.message.bot, [data-testid="bot"]');
    const last = bots[bots.length - 1];
    if (!last) return;
    const text = last.innerText.trim();
    if (text && window.__states[window.__states.length - 1] !== text) window.__states.push(text);
  }).observe(chat, {subtree: true, childList: true, characterData: true});
}"""


def test_ask_read_sources_upload_and_ask_again(browser, served, tmp_path):
    context, pg = open_page(browser, served.url)
    before = archive_count(pg)

    # 1. a question over the sample articles, seen streaming sentence by sentence
    pg.evaluate(RECORD_JS)
    answer = ask(pg, "Quali club vogliono Ancelotti?", 1)
    names_clubs = "Roma" in answer and "Milan" in answer  # checked last, after the page checks
    assert "Ancelotti" in answer and "[1]" in answer, answer
    states = pg.evaluate("window.__states")
    first_words = " ".join(answer.split()[:4])
    growing = [s for s in states[:-1] if first_words in " ".join(s.split())]
    assert len(growing) >= 2 and len(set(growing)) == len(growing), states
    assert "Fonti:" in answer and "Sources:" not in answer
    cards = pg.locator("#sources-panel .source-card")
    assert cards.count() >= 1
    numbers = [int(n.strip("[]")) for n in pg.locator("#sources-panel .source-card .source-n").all_inner_texts()]
    assert numbers == sorted(numbers), "cards come in citation order"
    dates = pg.locator("#sources-panel .source-card .source-date").all_inner_texts()
    assert dates and all(re.search(r"(gennaio|febbraio|marzo|aprile|maggio|giugno|luglio|agosto|settembre|"
                                   r"ottobre|novembre|dicembre) \d{4}", d) for d in dates), dates
    seed = pg.locator("#sources-panel .source-card", has_text=SEED_TITLE)
    assert seed.count() >= 1, pg.locator("#sources-panel").inner_text()
    quote = seed.first.locator("mark")
    assert quote.count() >= 1 and len(quote.first.inner_text()) > 20
    # the [n] marker links to its card, which becomes the chosen one
    links = pg.locator("#chatbot a.cite")
    href = links.first.get_attribute("href")
    assert href and href.startswith("#src-1-")
    assert pg.locator(href).count() == 1
    pages_before = len(context.pages)
    links.first.click()
    pg.wait_for_timeout(1000)  # smooth scroll
    assert len(context.pages) == pages_before  # the marker jumps in the page, no new tab
    card = pg.locator(href)
    in_view = card.evaluate("e => { const r = e.getBoundingClientRect(); return r.bottom > 0 && r.top < innerHeight; }")
    assert in_view, "clicking a [n] marker should bring its source card into view"
    assert "chosen" in card.get_attribute("class")
    chosen_bg = card.evaluate("e => getComputedStyle(e).backgroundColor")
    others = pg.locator("#sources-panel .source-card:not(.chosen)")
    if others.count():
        assert others.first.evaluate("e => getComputedStyle(e).backgroundColor") != chosen_bg
    other_href = next((h for h in (links.nth(i).get_attribute("href") for i in range(links.count())) if h != href),
                      None)
    if other_href:  # choosing another card moves the highlight
        pg.locator(f'#chatbot a.cite[href="{other_href}"]').first.click()
        pg.wait_for_timeout(600)
        assert "chosen" in pg.locator(other_href).get_attribute("class")
        assert "chosen" not in card.get_attribute("class")
    shot(pg, "chat.png")

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
    pg.get_by_role("tab", name="Articoli").click()
    pg.locator("#upload input[type=file]").set_input_files(str(article))
    pg.wait_for_timeout(1500)  # the file is uploaded to the server before Importa can use it
    pg.locator("#import").click()
    pg.wait_for_function(
        "() => (document.querySelector('#upload-report')?.innerText || '').includes('Importazione')",
        timeout=180_000)
    report = pg.locator("#upload-report").inner_text()
    assert "aggiunti 1" in report and "added" not in report, report
    pg.locator("#articles-table", has_text="Polisportiva Val Brembana").wait_for(timeout=30_000)
    assert archive_count(pg) == before + 1
    assert "Eco Immaginaria" in source_options(pg)
    shot(pg, "articles-upload.png")

    # 3. a reload sees the same store: count, table, source filter, summaries' list
    pg.reload(wait_until="load")
    wait_loaded(pg)
    assert archive_count(pg) == before + 1
    assert "Eco Immaginaria" in source_options(pg)
    pg.get_by_role("tab", name="Articoli").click()
    pg.locator("#articles-table", has_text="Polisportiva Val Brembana").wait_for(timeout=10_000)
    pg.get_by_role("tab", name="Riassunti").click()
    assert any("Polisportiva Val Brembana" in o for o in dropdown_options(pg, "summary-article"))

    # 4. a question only the new article answers
    pg.get_by_role("tab", name="Chat").click()
    answer2 = ask(pg, "Chi ha nominato allenatore la Polisportiva Val Brembana?", 1)
    assert "Fittizio" in answer2, answer2
    assert pg.locator("#sources-panel .source-card", has_text="Polisportiva Val Brembana").count() >= 1
    shot(pg, "chat-upload.png")

    foreign = [u for u in pg.requests if not is_local(u)]
    assert not foreign, foreign
    context.close()
    assert names_clubs, f"the answer should name Roma and Milan: {answer[:300]}"


def test_summaries_tab_streams_a_cited_summary(browser, app_url):
    context = browser.new_context(viewport={"width": 1280, "height": 1400}, locale="it-IT")
    page = context.new_page()
    page.goto(app_url, wait_until="load")
    wait_loaded(page)
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


def cli() -> list[str]:
    found = shutil.which("cronaca")
    return [found] if found else [sys.executable, "-m", "rag.cli"]


def test_an_article_ingested_from_the_cli_shows_up_live_and_after_a_reload(browser, served, tmp_path):
    context, pg = open_page(browser, served.url)
    before = archive_count(pg)
    article = tmp_path / "borgo-inventato.md"
    article.write_text(textwrap.dedent("""\
        ---
        title: "Il Circolo Scacchistico di Borgo Inventato vince il torneo di fantasia"
        date: 2025-06-25
        source: Gazzetta di Fantasia
        ---
        Il Circolo Scacchistico di Borgo Inventato ha vinto il torneo regionale di fantasia battendo in
        finale la Società Immaginaria di Valle Finta. Il capitano, Ugo Inesistente, ha dedicato la vittoria
        ai soci fondatori del circolo.
        """), encoding="utf-8")
    done = subprocess.run([*cli(), "ingest", str(article)], env=app_env(served.home), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    # the page's timer notices the new generation without a reload (it looks every 15 s)
    pg.wait_for_function(f"() => /\\b{before + 1} articoli\\b/.test(document.querySelector('#status').innerText)",
                         timeout=40_000)
    pg.reload(wait_until="load")
    wait_loaded(pg)
    assert archive_count(pg) == before + 1
    assert "Gazzetta di Fantasia" in source_options(pg)
    pg.get_by_role("tab", name="Articoli").click()
    pg.locator("#articles-table", has_text="Circolo Scacchistico di Borgo Inventato").wait_for(timeout=10_000)
    shot(pg, "cli-ingest-after-reload.png")
    context.close()


def test_an_english_browser_sees_no_italian_interface(browser, app_url):
    context, pg = open_page(browser, app_url, locale="en-US")
    assert pg.evaluate("document.documentElement.lang") == "en"
    text = visit_tabs(pg, ("Chat", "Articles", "Summaries"))
    assert "Archive:" in text and "Drop File Here" in text and "Stored articles" in text
    assert not foreign_in(text, "en"), foreign_in(text, "en")
    pg.get_by_role("tab", name="Chat").click()
    answer = ask(pg, "Which clubs want Ancelotti?", 1)
    assert "Sources:" in answer and "Fonti" not in answer
    text = interface_text(pg)
    assert "Sources of question 1" in pg.locator("#sources-panel").inner_text()
    assert not foreign_in(text, "en"), foreign_in(text, "en")
    dates = pg.locator("#sources-panel .source-date").all_inner_texts()
    assert dates and all(re.search(r"(January|February|March|April|May|June|July|August|September|October|"
                                   r"November|December) \d{4}", d) for d in dates), dates
    shot(pg, "english.png")
    context.close()


def test_an_italian_browser_sees_no_english_interface_and_can_switch(browser, app_url):
    context, pg = open_page(browser, app_url, locale="it-IT")
    assert pg.evaluate("document.documentElement.lang") == "it"
    text = visit_tabs(pg, ("Chat", "Articoli", "Riassunti"))
    assert "Archivio:" in text and "Trascina qui i file" in text
    assert not foreign_in(text, "it"), foreign_in(text, "it")
    # placeholders read as examples, in a lighter style than values
    since = pg.locator("#since input, #since textarea").first
    assert since.get_attribute("placeholder").startswith("es. ")
    colours = since.evaluate("e => [getComputedStyle(e, '::placeholder').color, getComputedStyle(e).color, "
                             "getComputedStyle(e, '::placeholder').fontStyle]")
    assert colours[0] != colours[1] and colours[2] == "italic", colours

    # the visible switch: English now, and after a reload (the choice is kept)
    pg.get_by_role("tab", name="Chat").click()
    pg.locator("#lang-switch label", has_text="English").click()
    pg.wait_for_function("() => document.querySelector('#status').innerText.includes('Archive:')", timeout=20_000)
    text = visit_tabs(pg, ("Chat", "Articles", "Summaries"))
    assert not foreign_in(text, "en"), foreign_in(text, "en")
    pg.reload(wait_until="load")
    wait_loaded(pg)
    assert "Archive:" in pg.locator("#status").inner_text()
    pg.locator("#lang-switch label", has_text="Italiano").click()
    pg.wait_for_function("() => document.querySelector('#status').innerText.includes('Archivio:')",
                         timeout=20_000)
    shot(pg, "italian.png")
    context.close()


def test_the_articles_table_fits_at_1280_px(browser, app_url):
    context, pg = open_page(browser, app_url)
    pg.get_by_role("tab", name="Articoli").click()
    table = pg.locator("#articles-table")
    table.locator("[role=row] [role=gridcell]").first.wait_for()
    heads = pg.evaluate("""() => [...document.querySelectorAll('#articles-table th')]
        .filter(th => th.checkVisibility())
        .map(th => { const r = th.getBoundingClientRect(); return [th.innerText.trim(), r.left, r.right]; })""")
    names = [h[0] for h in heads]
    assert names[:4] == ["Titolo", "Data", "Fonte", "Passaggi"], names
    assert all(left >= 0 and right <= DESKTOP["width"] for _, left, right in heads), heads
    scroll = pg.evaluate("""() => [...document.querySelectorAll('#articles-table *')]
        .filter(e => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'hidden'
                     && getComputedStyle(e).overflowX !== 'visible').length""")
    assert scroll == 0, "nothing in the table should need horizontal scrolling"
    title = table.locator("span.t").first
    assert title.get_attribute("title")  # the whole title on hover
    widths = [right - left for _, left, right in heads]
    assert widths[0] < 800 and min(widths[1:4]) > 60, widths
    shot(pg, "articles-1280.png")
    context.close()


def test_a_phone_opens_at_the_top_with_a_compact_header_and_a_short_page(browser, app_url):
    context, pg = open_page(browser, app_url, viewport=PHONE, is_mobile=True, has_touch=True,
                            device_scale_factor=2)
    pg.wait_for_timeout(1500)
    assert pg.evaluate("scrollY") == 0, "the page should open at its top"
    header = pg.locator("#header").bounding_box()
    badge = pg.locator("#mode-badge").bounding_box()
    assert header["height"] < 120 and badge["height"] < 40, (header, badge)
    shot(pg, "phone-top.png")
    answer = ask(pg, "Quali club vogliono Ancelotti?", 1)
    assert "Ancelotti" in answer
    pg.wait_for_timeout(500)
    # the chat grows with its answer: nothing scrolls inside it
    inner = pg.evaluate("""() => [...document.querySelectorAll('#chatbot *')]
        .filter(e => e.scrollHeight > e.clientHeight + 2 && ['auto', 'scroll'].includes(getComputedStyle(e).overflowY))
        .length""")
    assert inner == 0
    cards = pg.locator("#sources-panel details.source-card")
    assert cards.count() >= 1
    assert cards.evaluate_all("cs => cs.every(c => !c.open)"), "cards arrive folded on a phone"
    height = pg.evaluate("document.documentElement.scrollHeight")
    assert height < 3500, f"the page is {height} px tall after one answer"
    shot(pg, "phone-answer.png")
    href = pg.locator("#chatbot a.cite").first.get_attribute("href")
    pg.locator("#chatbot a.cite").first.click()
    pg.wait_for_timeout(800)
    assert pg.locator(href).evaluate("c => c.open && c.classList.contains('chosen')")
    shot(pg, "phone-source.png")
    context.close()
