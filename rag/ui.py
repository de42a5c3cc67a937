"""The cronaca web page (Gradio): ``build_ui(lib)``, mounted at ``/`` by ``rag.server``.

A thin layer over ``rag.library.Library``: Chat (cited answers, streamed, follow-ups, filters,
an "as of" date), Articoli (upload, the table of stored articles with a detail view, delete,
feeds) and Riassunti (article, topic or period). Words and HTML live in ``rag.page``.

What the page promises, and how:

* **Nothing about the store is in the page's config.** Lists, counts and tables are built empty
  and filled by a load event, which with ``CRONACA_AUTH`` set only runs after login.
* **Every view is current.** They are read on load (after ``lib.sync()``), after each change made
  in the page, and when a timer sees the store's generation move (another process wrote: a CLI
  ingest, a feed refresh).
* **One interface language per reader**, Italian or English, chosen from the browser and
  switchable: static labels through Gradio's I18n, what the server renders through the session's
  ``lang``. Answers and summaries keep their own language.
* **The first start does not block.** With an empty store the bundled sample goes in one file at a
  time in a background thread: the page serves at once, shows the progress, and every file already
  written is searchable (one write per file, because a write holds the index until it ends).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import pandas as pd

from rag import page
from rag.index import PENDING
from rag.library import Library
from rag.page import norm_lang, t
from rag.uploads import Upload
from rag.validation import RequestError

log = logging.getLogger("cronaca.app")

ALL_SOURCES = "__tutte__"
UPDATE_EVERY = 15.0  # seconds between two looks at the store's generation
PROGRESS_EVERY = 1.5  # the same while the first-start sample goes in
STREAM_GAP = 0.12  # seconds: how often a streamed answer may visibly change
TABLE_TYPES = ["html", "html", "str", "number"]
FEED_TYPES = ["html", "str", "str", "str", "str", "str"]
# a sentence is over when the next one has begun (so its [n] markers, which follow the stop, stay with it)
_SENTENCE_END = re.compile(r"[.!?…][\"»”’)]*(?:\s*\[\d+(?:\s*[,;]\s*\d+)*\])*\s+(?=[^\s\[])")


def paced(deltas: Iterable[str], gap: float = STREAM_GAP, clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep) -> Iterator[str]:
    """The text so far, each time the reader should see it grow.

    A language model's tokens trickle in: each is passed on, at most one update per ``gap`` (the
    rest joins the next one). The extractive answer arrives in one burst: it is released one
    sentence at a time, ``gap`` apart, so it is still seen being written."""
    text, shown, last = "", 0, -math.inf
    for delta in deltas:
        text += delta
        now = clock()
        if now - last >= gap:
            yield text
            shown, last = len(text), now
            continue
        for m in _SENTENCE_END.finditer(text, shown):
            wait = last + gap - clock()
            if wait > 0:
                sleep(wait)
            yield text[: m.end()]
            shown, last = m.end(), clock()
    if len(text) > shown or not text:
        yield text


class SampleIngest:
    """First start: ``Library.ingest_sample`` in a daemon thread, its progress for the status line."""

    def __init__(self, lib: Library) -> None:
        self.lib = lib
        self.total = 0
        self.done = 0
        self.added = 0
        self.errors: list[str] = []
        self.running = False
        self.stats: dict[str, Any] = {}
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.running = True
        log.info("first start: the store is empty, ingesting the sample from %s in the background",
                 self.lib.config.sample_dir)
        self._thread = threading.Thread(target=self._run, name="cronaca-sample", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        if self._thread:
            self._thread.join(timeout)
        return not self.running

    def _progress(self, stage: str, done: int, total: int) -> None:
        if stage != "file":
            return
        self.done, self.total = done, total
        try:
            self.stats = self.lib.stats()
        except Exception as exc:  # the status line keeps its last counts
            log.warning("sample: cannot read the store's counts: %s", exc)

    def _run(self) -> None:
        t0 = time.monotonic()
        try:
            report = self.lib.ingest_sample(progress=self._progress)
            self.added = report.added
            self.errors = [str(e) for e in report.errors]
        except Exception as exc:  # the page keeps working without the sample
            log.warning("sample: %s", exc)
            self.errors.append(str(exc))
        finally:
            self.running = False
            log.info("sample ingested in %.0f s: %d articles added, %d errors", time.monotonic() - t0,
                     self.added, len(self.errors))


TRANSPORT_FACTOR = 8  # how much larger than CRONACA_MAX_FILE_MB a file may travel before the server refuses it


def transport_limit(config: Any) -> str:
    """Gradio's ``max_file_size``: a transport cap, not the article limit. Gradio checks its limit in
    the browser for the whole selection and drops every file, with an English message, when one
    is over; so the page lets files up to a few times the limit travel, and the server refuses
    each file over ``CRONACA_MAX_FILE_MB`` on its own, in the reader's language (``rag.uploads``),
    while the others go in. Only a file beyond the cap (80 MB by default) still meets Gradio's check."""
    return f"{max(config.max_file_mb * TRANSPORT_FACTOR, 1):g}mb"


def _error_record(exc: RequestError) -> SimpleNamespace:
    """What the page needs of a RequestError to word it later in any language (a State must copy)."""
    return SimpleNamespace(field=exc.field, code=exc.code, value=exc.value, message=exc.message)


class App:
    """Event handlers; one instance per server, per-session data travels in gr.State."""

    def __init__(self, lib: Library, startup_note: str = "") -> None:
        self.lib = lib
        self.config = lib.config
        self.startup_note = startup_note  # a caller's own note under the archive line
        self.sample: SampleIngest | None = None

    def start_sample(self) -> None:
        self.sample = SampleIngest(self.lib)
        self.sample.start()

    @property
    def sampling(self) -> bool:
        return self.sample is not None and self.sample.running

    # ---- the store's state ----------------------------------------------------------------------
    def token(self) -> str:
        """Changes with every write by any process (the index generation), and when the first-start
        sample ends, so a session's timer knows its views are stale."""
        generation = self.lib.generation()
        return f"{generation}|{'sampling' if self.sampling else ''}"

    def status(self, lang: str, stats: dict[str, Any]) -> str:
        progress = (self.sample.done, self.sample.total) if self.sample and self.sampling else None
        return page.status_html(stats, lang, progress, self.startup_note)

    def table(self, lang: str, query: str = "", articles: list | None = None) -> pd.DataFrame:
        rows = page.article_rows(self.lib.articles() if articles is None else articles, query, lang)
        return pd.DataFrame(rows, columns=page.table_headers(lang))

    def feeds_table(self, lang: str) -> pd.DataFrame:
        return pd.DataFrame(page.feed_rows(self.lib.feeds.list(), lang), columns=page.feed_headers(lang))

    def views(self, lang: str, query: str = "", source: str = ALL_SOURCES, article: str = "") -> tuple:
        """Everything that shows the store: archive line, source filter, table, article list,
        feeds; then the token they reflect and the timer's pace."""
        lang = norm_lang(lang)
        token = self.token()  # read first: a write meanwhile only makes the next tick refresh again
        articles = self.lib.articles()
        stats = self.lib.stats(articles)
        sources = stats["sources"]
        ids = {a.id for a in articles}
        return (
            self.status(lang, stats),
            gr.update(choices=[(t(lang, "all_sources"), ALL_SOURCES)] + [(s, s) for s in sources],
                      value=source if source in sources else ALL_SOURCES),
            self.table(lang, query, articles),
            gr.update(choices=[("—", "")] + [(f"{page.format_date(a.date, lang) or '—'} · {a.title[:80]}", a.id)
                                                    for a in articles],
                      value=article if article in ids else ""),
            self.feeds_table(lang),
            token,
            gr.Timer(value=PROGRESS_EVERY if self.sampling else UPDATE_EVERY),
        )

    @staticmethod
    def unchanged_views() -> tuple:
        return tuple(gr.skip() for _ in range(7))

    @staticmethod
    def tab_labels(lang: str) -> tuple:
        """Gradio words tab labels once, when the tabs are built; the page's language may come later."""
        return tuple(gr.update(label=t(lang, key)) for key in ("tab_chat", "tab_articles", "tab_summaries"))

    def on_load(self, lang: str) -> tuple:
        """The page opened (after login): pick up other processes' writes, fill every view."""
        lang = norm_lang(lang)
        self.lib.sync()
        return (lang, lang, page.badge_html(self.config, lang), page.sources_html([], lang), lang,
                page.article_html(None, [], lang)) + self.views(lang) + self.tab_labels(lang)

    def tick(self, seen: str, lang: str, query: str, source: str, article: str) -> tuple:
        """The timer: refresh the views only when the store moved (or show the sample's progress)."""
        lang = norm_lang(lang)
        if self.sampling:
            assert self.sample is not None
            stats = self.sample.stats or {"articles": 0, "chunks": 0}
            return (self.status(lang, stats),) + self.unchanged_views()[1:]
        try:
            token = self.token()
            if token == seen or token.startswith(PENDING):  # nothing new, or a write still under way
                return self.unchanged_views()
            return self.views(lang, query, source, article)
        except Exception as exc:  # a store that does not answer now may answer at the next tick
            log.warning("page: cannot read the store: %s", exc)
            return self.unchanged_views()

    def switch_lang(self, lang: str, session: dict | None, selected: str, query: str, source: str,
                    article: str) -> tuple:
        lang = norm_lang(lang)
        session = session or self.new_session()
        return (lang, page.badge_html(self.config, lang), self.messages(session, lang),
                self.sources(session, lang), self.detail(selected, lang), "", "", gr.update(visible=False),
                ) + self.views(lang, query, source, article) + self.tab_labels(lang)

    # ---- chat -----------------------------------------------------------------------------------
    @staticmethod
    def new_session() -> dict:
        return {"turns": [], "pairs": []}

    @staticmethod
    def messages(session: dict, lang: str) -> list[dict]:
        """The conversation, rendered in ``lang`` from what each turn asked and got."""
        out: list[dict] = []
        for turn in session["turns"]:
            out.append({"role": "user", "content": page.esc(turn["asked"])})
            if "answer" in turn:
                content = page.answer_html(turn["answer"], turn["n"], asked=turn["asked"], lang=lang)
            elif "request_error" in turn:
                content = page.esc(page.request_error(turn["request_error"], lang))
            else:
                content = page.esc(t(lang, "no_answer", e=turn.get("error", "")))
            out.append({"role": "assistant", "content": content})
        return out

    @staticmethod
    def sources(session: dict, lang: str) -> str:
        answered = [{"turn": turn["n"], "question": turn["answer"].standalone_question or turn["asked"],
                     "citations": turn["answer"].citations} for turn in session["turns"] if "answer" in turn]
        return page.sources_html(answered, lang)

    def chat(self, message: str, since: str, until: str, as_of: str, source: str, session: dict | None,
             lang: str):
        """Stream one answer: the question at once, then the text as it grows, then the cited answer."""
        lang = norm_lang(lang)
        session = session or self.new_session()
        message = (message or "").strip()
        if not message:
            yield self.messages(session, lang), gr.skip(), gr.skip(), session
            return
        src = "" if not source or source == ALL_SOURCES else source
        try:
            stream = self.lib.stream(message, history=session["pairs"], since=since or "", until=until or "",
                                     as_of=as_of or "", source=src, fallback="extractive")
        except RequestError as exc:
            session["turns"].append({"asked": message, "request_error": _error_record(exc)})
            yield self.messages(session, lang), gr.skip(), "", session
            return
        shown = self.messages(session, lang) + [{"role": "user", "content": page.esc(message)}]
        pending = {"role": "assistant", "content": f"<em>{page.esc(t(lang, 'searching'))}</em>"}
        yield shown + [pending], gr.skip(), "", session
        try:
            for text in paced(stream):  # reads are safe while an upload or the sample is written
                yield shown + [{"role": "assistant", "content": page.streaming_html(text)}], gr.skip(), gr.skip(), \
                    gr.skip()
            answer = stream.result
        except RequestError as exc:
            session["turns"].append({"asked": message, "request_error": _error_record(exc)})
            yield self.messages(session, lang), gr.skip(), gr.skip(), session
            return
        except Exception as exc:  # the page keeps working whatever failed
            log.exception("answering %r failed", message)
            session["turns"].append({"asked": message, "error": str(exc)})
            yield self.messages(session, lang), gr.skip(), gr.skip(), session
            return
        n = sum(1 for turn in session["turns"] if "answer" in turn) + 1
        session["turns"].append({"asked": message, "answer": answer, "n": n})
        session["pairs"].append((message, answer.text))
        yield self.messages(session, lang), self.sources(session, lang), gr.skip(), session

    def clear(self, lang: str) -> tuple:
        return [], page.sources_html([], norm_lang(lang)), "", self.new_session()

    # ---- articles -------------------------------------------------------------------------------
    def upload(self, files: list | None, lang: str, query: str, source: str, article: str) -> tuple:
        lang = norm_lang(lang)
        paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in (files or [])]
        if not paths:
            report = page.notice_html([t(lang, "no_files")])
        else:
            try:
                done = self.lib.ingest_uploads([Upload(name=Path(p).name, path=Path(p)) for p in paths])
            except Exception as exc:  # the store is busy or broken: say so, keep the page
                log.exception("upload ingest failed")
                report = page.notice_html([], [t(lang, "import_failed", e=page.reason(str(exc), lang))], lang)
            else:
                lines = [t(lang, "import_done", added=done.added, updated=done.updated, unchanged=done.unchanged,
                           skipped=done.skipped, failed=done.failed, chunks=done.chunks)]
                lines += [page.located(note, lang) for note in done.notes]
                report = page.notice_html(lines, [page.ingest_error(e, lang) for e in done.errors], lang)
        return (report, None) + self.views(lang, query, source, article)

    def filter_table(self, query: str, lang: str) -> pd.DataFrame:
        return self.table(norm_lang(lang), query)

    def detail(self, article_id: str, lang: str) -> str:
        return self._detail(article_id, lang)[0]

    def _detail(self, article_id: str, lang: str) -> tuple[str, bool]:
        """The article's view, and whether it is stored (read once, text included)."""
        article = self.lib.article(article_id) if article_id else None
        chunks = self.lib.chunks_of(article_id) if article else []
        return (page.article_html(article, chunks, lang, article_id) if article_id
                else page.article_html(None, [], lang)), article is not None

    def show_article(self, lang: str, evt: gr.SelectData) -> tuple:
        row = getattr(evt, "row_value", None) or []
        article_id = page.id_from_cell(row[0]) if row else ""
        html, found = self._detail(article_id, norm_lang(lang))
        return html, article_id, gr.update(visible=found)

    def delete(self, confirmed: str, article_id: str, lang: str, query: str, source: str, article: str) -> tuple:
        """``confirmed``: what the browser's confirm() answered (``_confirm_js``), "yes" or ""."""
        lang = norm_lang(lang)
        article_id = (article_id or "").strip()
        if not article_id or confirmed != CONFIRMED:  # nothing chosen, or the reader said no
            return (gr.skip(),) * 4 + self.unchanged_views()
        ok = self.lib.delete(article_id)
        msg = t(lang, "deleted" if ok else "not_found", id=article_id)
        return (page.notice_html([msg]), page.article_html(None, [], lang), "",
                gr.update(visible=False)) + self.views(lang, query, source, article)

    # ---- feeds ----------------------------------------------------------------------------------
    def add_feed(self, url: str, name: str, source: str, lang: str) -> tuple:
        from rag.feeds import FeedError

        lang = norm_lang(lang)
        if not (url or "").strip():
            return page.notice_html([], [t(lang, "feed_need_url")], lang), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        try:
            feed = self.lib.feeds.add(url, name or None, source or None)
        except FeedError as exc:
            return (page.notice_html([], [page.reason(str(exc), lang)], lang), gr.skip(), gr.skip(), gr.skip(),
                    gr.skip())
        return (page.notice_html([t(lang, "feed_added", name=feed.name, url=feed.url)]), self.feeds_table(lang),
                "", "", "")

    @staticmethod
    def pick_feed(evt: gr.SelectData) -> str:
        row = getattr(evt, "row_value", None) or []
        return page.name_from_cell(row[0]) if row else ""

    def refresh_feed(self, name: str, lang: str, query: str, source: str, article: str) -> tuple:
        from rag.feeds import FeedError

        lang = norm_lang(lang)
        if not name:
            return (page.notice_html([], [t(lang, "feed_choose")], lang),) + self.unchanged_views()
        try:
            report = self.lib.refresh_feeds([name])
        except FeedError as exc:
            html = page.notice_html([], [page.reason(str(exc), lang)], lang)
        except Exception as exc:  # the page keeps working whatever failed
            log.exception("refreshing feed %r failed", name)
            html = page.notice_html([], [t(lang, "refresh_failed", e=page.reason(str(exc), lang))], lang)
        else:
            html = page.refresh_report_html(report, lang)
        return (html,) + self.views(lang, query, source, article)

    def remove_feed(self, name: str, lang: str) -> tuple:
        from rag.feeds import FeedError

        lang = norm_lang(lang)
        if not name:
            return page.notice_html([], [t(lang, "feed_choose")], lang), gr.skip(), gr.skip()
        try:
            feed = self.lib.feeds.remove(name)
        except FeedError as exc:
            return page.notice_html([], [page.reason(str(exc), lang)], lang), self.feeds_table(lang), ""
        return page.notice_html([t(lang, "feed_removed", name=feed.name)]), self.feeds_table(lang), ""

    # ---- summaries ------------------------------------------------------------------------------
    def summarise(self, article_id: str, query: str, since: str, until: str, summary_lang: str, lang: str):
        """Stream a summary of one article, of a topic, or of a period (digest)."""
        lang = norm_lang(lang)
        try:
            stream = self.lib.stream_summary(article_id=article_id or None, query=query or None, since=since or "",
                                             until=until or "", lang=summary_lang or lang,
                                             digest=bool(since or until), fallback="extractive")
        except RequestError as exc:
            words = t(lang, "summary_choose") if exc.code == "required" else page.request_error(exc, lang)
            yield page.summary_text_html(words), ""
            return
        try:
            for text in paced(stream):
                yield page.summary_text_html(text), gr.skip()
            summary = stream.result
        except Exception as exc:  # the page keeps working whatever failed
            log.exception("summary failed")
            yield page.summary_text_html(t(lang, "summary_failed", e=page.reason(str(exc), lang))), ""
            return
        yield page.summary_html(summary), page.summary_sources_html(summary, lang)


# ---- layout -------------------------------------------------------------------------------------------
CONFIRMED = "yes"


def _confirm_js(key: str, extra_inputs: int) -> str:
    """A browser confirm() in the page's language, its answer sent in the first input (a hidden
    Textbox): "yes", or "" when the reader said no. A gr.State never reaches the browser, so the
    answer cannot ride on one; the handler does nothing unless it reads "yes"."""
    it, en = page.WORDS[key]
    rest = ", ".join(f"r{i}" for i in range(extra_inputs))
    return (f"(answer, {rest}) => {{ const it = (document.documentElement.lang || '').startsWith('it'); "
            f"const ok = window.confirm(it ? {json.dumps(it)} : {json.dumps(en)}); "
            f"return [ok ? {json.dumps(CONFIRMED)} : '', {rest}]; }}")


def chat_tab(i18n: gr.I18n, c: dict) -> None:
    with gr.Tab(i18n("tab_chat"), id="chat") as c["tab_chat"]:
        with gr.Row():
            with gr.Column(scale=3, min_width=300):
                c["chatbot"] = gr.Chatbot(label=i18n("chat_label"), elem_id="chatbot", height="auto",
                                          min_height=160, autoscroll=False, feedback_options=None,
                                          buttons=["copy"], placeholder=i18n("chat_placeholder"))
                with gr.Row(equal_height=True, elem_id="question-row"):
                    c["msg"] = gr.Textbox(label=i18n("question"), placeholder=i18n("question_ph"), scale=5,
                                          elem_id="question", autofocus=False, min_width=200)
                    c["send"] = gr.Button(i18n("send"), variant="primary", scale=1, elem_id="send", min_width=80)
                c["clear"] = gr.Button(i18n("new_chat"), size="sm", elem_id="new-chat")
            with gr.Column(scale=1, min_width=220, elem_id="filters"):
                gr.Markdown(i18n("filters"), elem_classes="filters-heading")
                c["since"] = gr.Textbox(label=i18n("since"), placeholder=i18n("date_ph"), elem_id="since")
                c["until"] = gr.Textbox(label=i18n("until"), placeholder=i18n("date_ph"), elem_id="until")
                c["as_of"] = gr.Textbox(label=i18n("as_of"), placeholder=i18n("date_ph"), info=i18n("as_of_info"),
                                        elem_id="as-of")
                c["source"] = gr.Dropdown(label=i18n("source"), choices=[("—", ALL_SOURCES)], value=ALL_SOURCES,
                                          elem_id="source")
        gr.Markdown(i18n("sources_heading"), elem_classes="sources-heading", elem_id="sources-heading")
        c["sources"] = gr.HTML(elem_id="sources-panel")
        with gr.Accordion(i18n("help_title"), open=False, elem_id="help-model"):
            gr.Markdown(i18n("help_model"), elem_id="help-model-text")
        c["session"] = gr.State(App.new_session())


def articles_tab(i18n: gr.I18n, c: dict) -> None:
    with gr.Tab(i18n("tab_articles"), id="articles") as c["tab_articles"]:
        gr.Markdown(i18n("upload_intro"))
        c["files"] = gr.File(label=i18n("files"), file_count="multiple", file_types=list(page.UPLOAD_TYPES),
                             elem_id="upload", height=140)
        c["import"] = gr.Button(i18n("import"), variant="primary", elem_id="import")
        c["report"] = gr.HTML(elem_id="upload-report")
        c["search"] = gr.Textbox(label=i18n("search"), placeholder=i18n("search_ph"), elem_id="table-search")
        c["table"] = gr.Dataframe(value=pd.DataFrame([], columns=page.table_headers("it")), datatype=TABLE_TYPES,
                                  interactive=False, label=i18n("table_label"), elem_id="articles-table",
                                  wrap=False, column_widths=["58%", "13%", "20%", "9%"], max_height=460,
                                  show_search="none")
        c["detail"] = gr.HTML(elem_id="article-detail")
        c["delete"] = gr.Button(i18n("delete"), variant="stop", visible=False, elem_id="delete")
        c["selected"] = gr.State("")
        c["confirmed"] = gr.Textbox("", visible=False, elem_id="delete-confirmed")  # confirm()'s answer
        gr.Markdown(i18n("feeds_heading"), elem_classes="sources-heading")
        gr.Markdown(i18n("feeds_intro"))
        with gr.Row():
            c["feed_url"] = gr.Textbox(label=i18n("feed_url"), placeholder=i18n("feed_url_ph"), scale=3,
                                       elem_id="feed-url", min_width=220)
            c["feed_name"] = gr.Textbox(label=i18n("feed_name"), placeholder=i18n("feed_name_ph"), scale=1,
                                        elem_id="feed-name", min_width=140)
            c["feed_source"] = gr.Textbox(label=i18n("feed_source"), placeholder=i18n("feed_source_ph"), scale=1,
                                          elem_id="feed-source", min_width=140)
        c["feed_add"] = gr.Button(i18n("feed_add"), elem_id="feed-add")
        c["feeds"] = gr.Dataframe(value=pd.DataFrame([], columns=page.feed_headers("it")), interactive=False,
                                  label=i18n("feeds_table"), elem_id="feeds-table", wrap=True, datatype=FEED_TYPES,
                                  column_widths=["14%", "28%", "16%", "10%", "10%", "22%"], show_search="none")
        with gr.Row():
            c["feed_refresh"] = gr.Button(i18n("feed_refresh"), elem_id="feed-refresh")
            c["feed_remove"] = gr.Button(i18n("feed_remove"), variant="stop", elem_id="feed-remove")
        c["feed_report"] = gr.HTML(elem_id="feed-report")
        c["feed_chosen"] = gr.State("")


def summaries_tab(i18n: gr.I18n, c: dict) -> None:
    with gr.Tab(i18n("tab_summaries"), id="summaries") as c["tab_summaries"]:
        gr.Markdown(i18n("summaries_intro"))
        with gr.Row():
            c["summary_article"] = gr.Dropdown(label=i18n("summary_article"), choices=[("—", "")], value="",
                                               elem_id="summary-article", scale=3, filterable=True)
            c["topic"] = gr.Textbox(label=i18n("topic"), placeholder=i18n("topic_ph"), elem_id="summary-topic",
                                    scale=2)
        with gr.Row():
            c["summary_since"] = gr.Textbox(label=i18n("since"), placeholder=i18n("date_ph"), elem_id="summary-since")
            c["summary_until"] = gr.Textbox(label=i18n("until"), placeholder=i18n("date_ph"), elem_id="summary-until")
            c["summary_lang"] = gr.Radio(label=i18n("summary_lang"), choices=[("Italiano", "it"), ("English", "en")],
                                         value="it", elem_id="summary-lang")
            c["summarise"] = gr.Button(i18n("summarise"), variant="primary", elem_id="summarise")
        c["summary"] = gr.HTML(elem_id="summary-output")
        gr.Markdown(i18n("sources_heading"), elem_classes="sources-heading")
        c["summary_sources"] = gr.HTML(elem_id="summary-sources")


def wire(app: App, c: dict, demo: gr.Blocks) -> None:
    """Every event, once every component exists (a change in one tab updates the others)."""
    views = [c["status"], c["source"], c["table"], c["summary_article"], c["feeds"], c["seen"], c["timer"]]
    tabs = [c["tab_chat"], c["tab_articles"], c["tab_summaries"]]
    view_inputs = [c["search"], c["source"], c["summary_article"]]
    quiet: dict[str, Any] = {"show_progress": "hidden", "api_visibility": "private"}

    demo.load(app.on_load, [c["lang_switch"]],
              [c["lang_switch"], c["lang"], c["badge"], c["sources"], c["summary_lang"], c["detail"], *views, *tabs],
              js="() => [window.cronacaStart ? window.cronacaStart() : (navigator.language || 'en')]", **quiet)
    c["timer"].tick(app.tick, [c["seen"], c["lang"], *view_inputs], views, **quiet)
    c["lang_switch"].input(
        app.switch_lang, [c["lang_switch"], c["session"], c["selected"], *view_inputs],
        [c["lang"], c["badge"], c["chatbot"], c["sources"], c["detail"], c["report"], c["feed_report"], c["files"],
         *views, *tabs],
        js="(l, ...rest) => { if (window.cronacaSetLang) window.cronacaSetLang(l); return [l, ...rest]; }",
        **quiet,
    ).then(lambda: gr.update(visible=True), None, [c["files"]], **quiet)  # Gradio words it only when it mounts

    ask = dict(fn=app.chat, inputs=[c["msg"], c["since"], c["until"], c["as_of"], c["source"], c["session"],
                                    c["lang"]],
               outputs=[c["chatbot"], c["sources"], c["msg"], c["session"]], show_progress="hidden")
    c["send"].click(api_name="ask", **ask)
    c["msg"].submit(api_visibility="private", **ask)
    for event in (c["clear"].click, c["chatbot"].clear):  # the button, or the chat's own bin
        event(app.clear, [c["lang"]], [c["chatbot"], c["sources"], c["msg"], c["session"]], api_visibility="private")

    c["import"].click(app.upload, [c["files"], c["lang"], *view_inputs], [c["report"], c["files"], *views],
                      api_name="upload", show_progress_on=[c["report"]])  # not in the status line
    c["search"].change(app.filter_table, [c["search"], c["lang"]], [c["table"]], trigger_mode="always_last",
                       **quiet)
    c["table"].select(app.show_article, [c["lang"]], [c["detail"], c["selected"], c["delete"]],
                      api_visibility="private")
    c["delete"].click(app.delete, [c["confirmed"], c["selected"], c["lang"], *view_inputs],
                      [c["report"], c["detail"], c["selected"], c["delete"], *views],
                      js=_confirm_js("delete_confirm", 5), api_visibility="private")

    c["feed_add"].click(app.add_feed, [c["feed_url"], c["feed_name"], c["feed_source"], c["lang"]],
                        [c["feed_report"], c["feeds"], c["feed_url"], c["feed_name"], c["feed_source"]],
                        api_visibility="private")
    c["feeds"].select(App.pick_feed, None, [c["feed_chosen"]], api_visibility="private")
    c["feed_refresh"].click(app.refresh_feed, [c["feed_chosen"], c["lang"], *view_inputs],
                            [c["feed_report"], *views], api_visibility="private",
                            show_progress_on=[c["feed_report"]])
    c["feed_remove"].click(app.remove_feed, [c["feed_chosen"], c["lang"]],
                           [c["feed_report"], c["feeds"], c["feed_chosen"]], api_visibility="private")

    c["summarise"].click(app.summarise, [c["summary_article"], c["topic"], c["summary_since"], c["summary_until"],
                                         c["summary_lang"], c["lang"]],
                         [c["summary"], c["summary_sources"]], api_name="summarise", show_progress="hidden")


# a new tab is one more function here (it adds its components to the shared dict; wire() connects them)
TABS: list[Callable[[gr.I18n, dict], None]] = [chat_tab, articles_tab, summaries_tab]


def build(app: App) -> gr.Blocks:
    config = app.config
    i18n = gr.I18n(**page.i18n_tables(types=", ".join(page.UPLOAD_TYPES), mb=f"{config.max_file_mb:g}"))
    c: dict[str, Any] = {}
    with gr.Blocks(title="cronaca", analytics_enabled=False) as demo:
        with gr.Row(elem_id="header", equal_height=True):
            gr.Markdown(i18n("title"), elem_id="app-title", scale=1, min_width=200)
            c["lang_switch"] = gr.Radio(choices=[("Italiano", "it"), ("English", "en")], value=None,
                                        label=i18n("lang_switch"), show_label=False, container=False, scale=0,
                                        min_width=190, elem_id="lang-switch")
        with gr.Row(elem_id="topline"):
            c["badge"] = gr.HTML(elem_id="badge", padding=False, scale=0, min_width=0)
            c["status"] = gr.HTML(elem_id="status", padding=False, scale=1, min_width=240)
        for tab in TABS:
            tab(i18n, c)
        c["lang"] = gr.State("it")
        c["seen"] = gr.State("")
        c["timer"] = gr.Timer(UPDATE_EVERY)
        wire(app, c, demo)
    demo.i18n_instance = i18n  # what launch(i18n=) / mount_gradio_app(i18n=) would set
    demo.cronaca_app = app  # type: ignore[attr-defined]  (tests and the server reach the handlers)
    return demo


def build_ui(lib: Library, startup_note: str = "") -> gr.Blocks:
    """The whole page over one library: what ``rag.server`` mounts at ``/``.

    Starts the first-start sample ingest in the background when the store is empty."""
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # its DEBUG lines are not the reader's business
    app = App(lib, startup_note=startup_note)
    if lib.needs_sample():
        app.start_sample()
    return build(app)


def theme() -> gr.themes.Base:
    # system fonts only: the default theme would fetch Google Fonts, and we stay offline
    return gr.themes.Default(font=["system-ui", "Segoe UI", "Helvetica", "Arial", "sans-serif"],
                             font_mono=["ui-monospace", "Menlo", "Consolas", "monospace"])
