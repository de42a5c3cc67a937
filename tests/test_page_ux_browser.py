"""The page as a journalist meets it, in headless Chromium, at 1280×900 and 390×844, in Italian
and in English: plain words and the help they link to, outlets on the cards, dates in words,
answers seen as they are chosen, uploads refused one by one, phone card lists, no progress
flash in the status line. One page load per viewport and language; screenshots in test-artifacts/."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rag import page as words
from rag import ui
from tests import test_app_browser as shared
from tests.test_app_browser import DESKTOP, PHONE, RECORD_JS, ask, interface_text, open_page, shot
from tests.test_ui_browser import served

pytestmark = [pytest.mark.browser]
browser = shared.browser  # one Chromium per module

# every text the status line shows, as the browser renders it (the answer's states: RECORD_JS)
STATUS_JS = """() => {
  window.__status = [];
  const status = document.querySelector('#status');
  new MutationObserver(() => {
    const seen = [...status.querySelectorAll('*')].filter(e => e.checkVisibility()).map(e => e.innerText).join(' ');
    window.__status.push(seen);
  }).observe(status, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The sample over the test embedder, a 1 MB article limit (so a 1.6 MB file is too large)."""
    from rag.library import Library
    from tests.conftest import SAMPLE, HashEmbedder, make_config

    home = tmp_path_factory.mktemp("ux") / "home"
    lib = Library(make_config(home, sample_dir=home / "no-sample", max_file_mb=1.0, fetch_delay=0.05),
                  embedder=HashEmbedder())
    assert lib.ingest([SAMPLE]).failed == 0
    lib.feeds.add("https://www.ilpost.it/feed/", "ilpost", "Il Post")
    with served(lib, max_file_size=ui.transport_limit(lib.config)) as s:  # as rag.server mounts it
        yield s


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uploads")
    small = folder / "torneo.md"
    small.write_text("---\ntitle: Il torneo di Borgo Inventato\ndate: 2025-07-02\nsource: Eco Inventata\n---\n"
                     "Il Circolo di Borgo Inventato ha vinto il torneo estivo.\n", encoding="utf-8")
    big = folder / "enorme.txt"
    big.write_text("Una riga di cronaca locale.\n" * 60_000, encoding="utf-8")  # 1.6 MB, over the limit
    return SimpleNamespace(small=str(small), big=str(big))


QUESTION = "Chi allena il Milan?"  # three claims over the test embedder, one from a later search


def _streamed_before_done(pg, answer: str) -> None:
    """The first sentence was on screen while the last was not yet."""
    states = pg.evaluate("window.__states")
    body = answer.split("\n\n")[0]
    first, last = body.split(" [1]")[0][:40], body.rstrip(". ")[-25:]
    assert first and last, answer
    assert any(first in s and last not in s for s in states), states


def _no_progress_flash(pg) -> None:
    seen = " ".join(pg.evaluate("window.__status"))
    assert "processing" not in seen.lower() and "elaborazione" not in seen.lower(), seen


def _upload(pg, files, done_word: str) -> str:
    pg.locator("#upload input[type=file]").set_input_files([files.small, files.big])
    pg.wait_for_timeout(1500)
    pg.locator("#import").click()
    pg.wait_for_function("(w) => (document.querySelector('#upload-report')?.innerText || '').includes(w)",
                         arg=done_word, timeout=60_000)
    return pg.locator("#upload-report").inner_text()


def _dates_in_words(pg, month: str) -> None:
    dates = [d for d in pg.locator("#articles-table time").all_inner_texts() if d.strip()]
    assert dates and all(month in d or any(m in d for m in _MONTHS) for d in dates), dates
    assert not any(d[:4].isdigit() and "-" in d for d in dates), dates


_MONTHS = ("gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto", "settembre",
           "ottobre", "novembre", "dicembre", "January", "February", "March", "April", "May", "June", "July",
           "August", "September", "October", "November", "December")


@pytest.mark.parametrize("lang, locale", [("it", "it-IT"), ("en", "en-US")])
def test_desktop_plain_words_help_outlets_streaming_uploads_and_dates(browser, site, files, lang, locale):
    context, pg = open_page(browser, site.url, locale=locale, viewport=DESKTOP)
    badge = pg.locator("#mode-badge").inner_text()
    assert words.t(lang, "badge_offline") in badge and "OPENAI" not in badge, badge
    # the badge's link opens the help on connecting a model
    pg.locator("#mode-badge .badge-long a.badge-help").click()
    pg.locator("#help-model-text").wait_for(state="visible", timeout=10_000)
    assert "OPENAI_BASE_URL" in pg.locator("#help-model-text").inner_text()
    # an offline answer, seen sentence by sentence; cards name the outlet
    pg.evaluate(RECORD_JS)
    pg.evaluate(STATUS_JS)
    answer = ask(pg, QUESTION, 1)
    _streamed_before_done(pg, answer)
    outlets = pg.locator("#sources-panel .source-card .source-outlet").all_inner_texts()
    assert outlets and all(o.strip() for o in outlets), outlets
    assert "passaggi" in interface_text(pg) if lang == "it" else "passages" in interface_text(pg)
    shot(pg, f"ux-desktop-{lang}-answer.png")
    # uploads: the small file in, the big one refused by name, in the page's language
    pg.get_by_role("tab", name=words.t(lang, "tab_articles")).click()
    report = _upload(pg, files, "Importazione" if lang == "it" else "Import")
    too_large = "file troppo grande" if lang == "it" else "file too large"
    assert f"enorme.txt: {too_large}" in report, report
    assert ("aggiunti 1" in report or "invariati 1" in report) if lang == "it" else \
        ("added 1" in report or "unchanged 1" in report), report
    assert "exceed" not in pg.locator("body").inner_text()  # no Gradio toast
    _no_progress_flash(pg)
    _dates_in_words(pg, "giugno" if lang == "it" else "June")
    shot(pg, f"ux-desktop-{lang}-articles.png")
    context.close()


@pytest.mark.parametrize("lang, locale", [("it", "it-IT"), ("en", "en-US")])
def test_phone_card_lists_placeholder_language_switch_and_streaming(browser, site, lang, locale):
    context, pg = open_page(browser, site.url, locale=locale, viewport=PHONE, is_mobile=True, has_touch=True,
                            device_scale_factor=2)
    # the selected language stands out from the other
    chosen = pg.locator("#lang-switch label.selected")
    assert chosen.inner_text().strip() == ("Italiano" if lang == "it" else "English")
    background = chosen.evaluate("e => getComputedStyle(e).backgroundColor")
    assert background not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)"), background
    # the whole placeholder fits in the question box
    fits = pg.evaluate("""() => {
        const box = document.querySelector('#question textarea');
        const style = getComputedStyle(box);
        const ctx = document.createElement('canvas').getContext('2d');
        ctx.font = `italic ${style.fontSize} ${style.fontFamily}`;
        const room = box.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
        return [ctx.measureText(box.placeholder).width, room];
    }""")
    assert fits[0] <= fits[1], fits
    # the short badge is the link to the help
    assert pg.locator("#mode-badge a.badge-short").is_visible()
    pg.evaluate(RECORD_JS)
    pg.evaluate(STATUS_JS)
    answer = ask(pg, QUESTION, 1)
    _streamed_before_done(pg, answer)
    shot(pg, f"ux-phone-{lang}-answer.png")
    # the articles as cards: whole titles, dates in words, no other column
    pg.get_by_role("tab", name=words.t(lang, "tab_articles")).click()
    table = pg.locator("#articles-table")
    pg.wait_for_function("() => [...document.querySelectorAll('#articles-table span.t')]"
                         ".some(e => e.checkVisibility())", timeout=30_000)
    cut = pg.evaluate("""() => [...document.querySelectorAll('#articles-table span.t')]
        .filter(e => e.checkVisibility()).slice(0, 8)
        .filter(e => e.scrollWidth > e.clientWidth + 1 || e.getBoundingClientRect().right > innerWidth).length""")
    assert cut == 0, "titles are whole on a phone"
    metas = [m for m in table.locator(".card-meta").all_inner_texts() if m.strip()][:8]
    assert metas and all(any(m in line for m in _MONTHS) for line in metas), metas
    visible_heads = pg.evaluate("""() => [...document.querySelectorAll('#articles-table th, #feeds-table th')]
        .filter(th => th.checkVisibility()).map(th => th.getBoundingClientRect().height)""")
    assert len(visible_heads) == 2 and max(visible_heads) < 80, visible_heads  # one per list, not one letter per line
    feeds = [f for f in pg.locator("#feeds-table .fname").all_inner_texts() if f.strip()]
    assert feeds == ["ilpost"] and "ilpost.it/feed" in pg.locator("#feeds-table").inner_text(), feeds
    assert pg.evaluate("document.documentElement.scrollWidth") <= PHONE["width"] + 1
    table.scroll_into_view_if_needed()
    shot(pg, f"ux-phone-{lang}-articles.png")
    context.close()
