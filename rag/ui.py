"""The cronaca web page (Gradio), launched by ``python app.py`` and ``cronaca serve``.

A thin Gradio layer over ``rag.library.Library``: a Chat tab (cited answers, streamed, with
follow-ups and filters) and an Articles tab (upload, list, delete). HTML rendering lives in
``rag.page``; everything else (follow-ups, validation, what to summarise) in the library. A new
tab is one more function in ``TABS``. Environment: GRADIO_SERVER_NAME / GRADIO_SERVER_PORT (flags
win), CRONACA_AUTH=user:pw.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import pandas as pd

from rag import page
from rag.library import Library
from rag.uploads import Upload, safe_name
from rag.validation import RequestError

log = logging.getLogger("cronaca.app")

UPLOAD_TYPES = [".txt", ".md", ".json", ".jsonl", ".html", ".htm"]
ALL_SOURCES = "__tutte__"
TABLE_HEADERS = ["Titolo", "Data", "Fonte", "Frammenti", "ID"]


def say(msg: str) -> None:
    print(f"[cronaca] {msg}", flush=True)


def ensure_sample(lib: Library) -> str:
    """On first start with an empty store, ingest the sample articles; returns a page note."""
    if not lib.needs_sample():
        return ""
    sample = Path(lib.config.sample_dir)
    say(f"primo avvio: archivio vuoto, importo gli articoli di esempio da {sample} …")
    last: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done in (0, total) or now - last.get(stage, 0) > 2:
            last[stage] = now
            label = {"embed": "calcolo embedding", "index": "indice BM25"}.get(stage, stage)
            say(f"  {label}: {done}/{total}")

    t0 = time.monotonic()
    report = lib.ingest_sample(progress=progress)
    for e in report.errors:
        say(f"  errore: {e}")
    say(f"esempi importati in {time.monotonic() - t0:.0f} s: {report.summary()}")
    return (f"Primo avvio: importati {report.added} articoli di esempio da `{sample.name}` "
            f"({report.chunks} frammenti).")


class App:
    """Event handlers; one instance per server, per-session data travels in gr.State."""

    def __init__(self, lib: Library, startup_note: str = "") -> None:
        self.lib = lib
        self.config = lib.config
        self.startup_note = startup_note

    # ---- status -------------------------------------------------------------------------
    def status_md(self) -> str:
        s = self.lib.stats()
        period = f" · dal {s['first_date']} al {s['last_date']}" if s["first_date"] else ""
        text = f"**Archivio:** {s['articles']} articoli · {s['chunks']} frammenti{period}"
        if self.startup_note:
            text += f"  \n{self.startup_note}"
        return text

    def source_choices(self) -> list[tuple[str, str]]:
        return [("Tutte le fonti", ALL_SOURCES)] + [(s, s) for s in self.lib.stats()["sources"]]

    # ---- chat ---------------------------------------------------------------------------
    @staticmethod
    def new_session() -> dict:
        return {"messages": [], "pairs": [], "sources": []}

    @staticmethod
    def explain(exc: RequestError) -> str:
        labels = {"since": "Dal", "until": "Al", "as_of": "Alla data"}
        if exc.code == "date":
            return (f"Data «{exc.value}» non valida nel campo «{labels.get(exc.field, exc.field)}»: "
                    "usare il formato AAAA-MM-GG (per esempio 2024-11-05) oppure AAAA-MM.")
        return f"Richiesta non valida: {exc}"

    def chat(self, message: str, since: str, until: str, source: str, session: dict | None):
        session = session or self.new_session()
        message = (message or "").strip()
        shown = session["messages"]
        if not message:
            yield shown, page.sources_html(session["sources"]), "", session
            return
        user_msg = {"role": "user", "content": page.esc(message)}
        src = "" if not source or source == ALL_SOURCES else source
        try:
            stream = self.lib.stream(message, history=session["pairs"], since=since or "", until=until or "",
                                     source=src, fallback="extractive")
        except RequestError as exc:
            session["messages"] = shown + [user_msg, {"role": "assistant", "content": page.esc(self.explain(exc))}]
            yield session["messages"], page.sources_html(session["sources"]), "", session
            return

        pending = {"role": "assistant", "content": "_Cerco negli articoli…_"}
        yield shown + [user_msg, pending], page.sources_html(session["sources"]), "", session
        try:
            streamed: list[str] = []
            for delta in stream:  # the library is safe to read while an upload ingests
                streamed.append(delta)
                pending = {"role": "assistant", "content": page.esc("".join(streamed))}
                yield shown + [user_msg, pending], page.sources_html(session["sources"]), "", session
            answer = stream.result
        except Exception as exc:  # the page keeps working whatever failed
            log.exception("answering %r failed", message)
            text = f"Non è stato possibile rispondere: {exc}"
            session["messages"] = shown + [user_msg, {"role": "assistant", "content": page.esc(text)}]
            yield session["messages"], page.sources_html(session["sources"]), "", session
            return

        question = answer.standalone_question or answer.question
        turn = len(session["sources"]) + 1
        session["sources"].append({"turn": turn, "question": question, "citations": answer.citations})
        session["pairs"].append((message, answer.text))
        final = {"role": "assistant", "content": page.answer_html(answer, turn, asked=message)}
        session["messages"] = shown + [user_msg, final]
        yield session["messages"], page.sources_html(session["sources"]), "", session

    def clear(self):
        session = self.new_session()
        return [], page.sources_html([]), "", session

    # ---- articles -----------------------------------------------------------------------
    def table(self) -> pd.DataFrame:
        rows = [[a.title, a.date, a.source, a.chunks, a.id] for a in self.lib.articles()]
        return pd.DataFrame(rows, columns=TABLE_HEADERS)

    def upload(self, files):
        paths = [f if isinstance(f, str) else getattr(f, "name", str(f)) for f in (files or [])]
        if not paths:
            return self._after_change('<div class="upload-report">Nessun file selezionato.</div>')
        lines: list[str] = []
        errors: list[str] = []
        accepted: list[Upload] = []
        for src in paths:
            name = safe_name(Path(src).name, set())
            if Path(name).suffix.lower() not in UPLOAD_TYPES:
                errors.append(f"{name}: tipo di file non ammesso (ammessi: {', '.join(UPLOAD_TYPES)})")
                continue
            try:
                size = os.path.getsize(src)
            except OSError as exc:
                errors.append(f"{name}: file non leggibile ({exc.strerror})")
                continue
            if size > self.config.max_file_bytes:
                errors.append(f"{name}: file troppo grande ({size / 1048576:.1f} MB, "
                              f"limite {self.config.max_file_mb:g} MB)")
                continue
            accepted.append(Upload(name=Path(src).name, path=Path(src)))
        if accepted:
            try:
                report = self.lib.ingest_uploads(accepted)
            except Exception as exc:
                log.exception("upload ingest failed")
                errors.append(f"importazione non riuscita: {exc}")
            else:
                lines.append(f"Importazione: {report.summary()} ({report.chunks} frammenti scritti)")
                errors.extend(str(e) for e in report.errors)
                lines.extend(report.notes)
        out = ['<div class="upload-report">']
        out += [f"<p>{page.esc(line)}</p>" for line in lines]
        if errors:
            out.append("<p><b>Errori:</b></p><ul>" +
                       "".join(f"<li>{page.esc(e)}</li>" for e in errors) + "</ul>")
        out.append("</div>")
        return self._after_change("".join(out))

    def delete(self, article_id: str):
        article_id = (article_id or "").strip()
        if not article_id:
            msg = "Indicare l'ID dell'articolo da eliminare (clic su una riga della tabella)."
        else:
            ok = self.lib.delete(article_id)
            msg = f"Eliminato l'articolo {article_id}." if ok else f"Nessun articolo con ID {article_id}."
        return self._after_change(f'<div class="upload-report"><p>{page.esc(msg)}</p></div>')

    def _after_change(self, report_html: str):
        return (report_html, self.table(), gr.update(choices=self.source_choices()),
                self.status_md(), None)

    def article_choices(self) -> list[tuple[str, str]]:
        return [("—", "")] + [(f"{a.date} · {a.title[:80]}", a.id) for a in self.lib.articles()]

    def summarise(self, article_id: str, query: str, since: str, until: str, lang: str):
        """Stream a summary of one article, of a topic, or of a period (digest)."""
        from rag.summaries import SummaryError

        try:
            stream = self.lib.stream_summary(article_id=article_id or None, query=query or None, since=since or "",
                                             until=until or "", lang=lang or "it", digest=bool(since or until),
                                             fallback="extractive")
        except RequestError as exc:
            if exc.code == "required":
                yield ('<div class="summary">Scegliere un articolo, un argomento o un periodo.</div>', "")
            else:
                yield f'<div class="summary">{page.esc(self.explain(exc))}</div>', ""
            return
        streamed: list[str] = []
        try:
            for delta in stream:
                streamed.append(delta)
                yield f'<div class="summary">{page.esc("".join(streamed))}</div>', ""
            summary = stream.result
        except (SummaryError, Exception) as exc:  # the page keeps working whatever failed
            log.exception("summary failed")
            yield f'<div class="summary">Non è stato possibile riassumere: {page.esc(exc)}</div>', ""
            return
        yield page.summary_html(summary), page.summary_sources_html(summary)

    @staticmethod
    def pick_row(evt: gr.SelectData) -> str:
        row = getattr(evt, "row_value", None) or []
        return str(row[-1]) if row else ""


# ---- layout -------------------------------------------------------------------------------
def chat_tab(app: App, ui: dict) -> None:
    with gr.Tab("Chat", id="chat"):
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Conversazione", height=460, elem_id="chatbot",
                                     feedback_options=None, buttons=["copy"],
                                     placeholder="Fai una domanda sugli articoli in archivio.")
                with gr.Row():
                    msg = gr.Textbox(label="Domanda", placeholder="Es.: Quali club vogliono Ancelotti?",
                                     scale=5, elem_id="question", autofocus=True)
                    send = gr.Button("Invia", variant="primary", scale=1, elem_id="send")
                clear = gr.Button("Nuova conversazione", size="sm")
            with gr.Column(scale=1, min_width=220):
                gr.Markdown("**Filtri**")
                since = gr.Textbox(label="Dal (AAAA-MM-GG)", placeholder="2024-09-01", elem_id="since")
                until = gr.Textbox(label="Al (AAAA-MM-GG)", placeholder="2025-06-30", elem_id="until")
                source = gr.Dropdown(label="Fonte", choices=app.source_choices(), value=ALL_SOURCES,
                                     elem_id="source")
        gr.Markdown("### Fonti", elem_classes="sources-heading")
        sources = gr.HTML(page.sources_html([]), elem_id="sources-panel")
        session = gr.State(App.new_session())
        args = dict(fn=app.chat, inputs=[msg, since, until, source, session],
                    outputs=[chatbot, sources, msg, session])
        send.click(api_name="ask", **args)
        msg.submit(api_visibility="private", **args)
        clear.click(app.clear, None, [chatbot, sources, msg, session], api_visibility="private")
        ui["source"] = source


def articles_tab(app: App, ui: dict) -> None:
    with gr.Tab("Articoli", id="articles"):
        gr.Markdown(f"Caricare articoli ({', '.join(UPLOAD_TYPES)}; massimo "
                    f"{app.config.max_file_mb:g} MB per file). Markdown con intestazione "
                    "`title` / `date` / `source` / `url`.")
        files = gr.File(label="File da importare", file_count="multiple", file_types=UPLOAD_TYPES,
                        elem_id="upload")
        upload = gr.Button("Importa", variant="primary", elem_id="import")
        report = gr.HTML(elem_id="upload-report")
        table = gr.Dataframe(value=app.table(), headers=TABLE_HEADERS, interactive=False,
                             label="Articoli in archivio", elem_id="articles-table", wrap=True)
        with gr.Row():
            del_id = gr.Textbox(label="ID dell'articolo da eliminare", scale=4, elem_id="delete-id")
            delete = gr.Button("Elimina", variant="stop", scale=1)
        outputs = [report, table, ui["source"], ui["status"], files]
        upload.click(app.upload, files, outputs, api_name="upload")
        delete.click(app.delete, del_id, outputs, api_name="delete")
        table.select(App.pick_row, None, del_id, api_visibility="private")


def summaries_tab(app: App, ui: dict) -> None:
    with gr.Tab("Riassunti", id="summaries"):
        gr.Markdown("Riassunto di un articolo, di un argomento (raggruppato per storia) o di un "
                    "periodo. Le storie riportate da più testate compaiono una volta sola.")
        with gr.Row():
            article = gr.Dropdown(label="Articolo", choices=app.article_choices(), value="",
                                  elem_id="summary-article", scale=3)
            topic = gr.Textbox(label="Argomento", placeholder="Es.: Ancelotti", elem_id="summary-topic",
                               scale=2)
        with gr.Row():
            since = gr.Textbox(label="Dal (AAAA-MM-GG)", elem_id="summary-since")
            until = gr.Textbox(label="Al (AAAA-MM-GG)", elem_id="summary-until")
            lang = gr.Radio(label="Lingua", choices=[("Italiano", "it"), ("English", "en")], value="it")
            go = gr.Button("Riassumi", variant="primary", elem_id="summarise")
        output = gr.HTML(elem_id="summary-output")
        gr.Markdown("### Fonti", elem_classes="sources-heading")
        cards = gr.HTML(elem_id="summary-sources")
        go.click(app.summarise, [article, topic, since, until, lang], [output, cards], api_name="summarise")


# a new tab is one more function here
TABS: list[Callable[[App, dict], None]] = [chat_tab, articles_tab, summaries_tab]


def build(app: App) -> gr.Blocks:
    with gr.Blocks(title="cronaca", analytics_enabled=False) as demo:
        with gr.Row():
            gr.Markdown("## cronaca · domande sugli articoli, con le fonti")
            gr.HTML(page.badge_html(app.config))
        ui = {"status": gr.Markdown(app.status_md(), elem_id="status")}
        for tab in TABS:
            tab(app, ui)
    return demo


def build_ui(lib: Library, startup_note: str = "") -> gr.Blocks:
    """The whole page over one library: what app.py and ``cronaca serve`` mount."""
    return build(App(lib, startup_note=startup_note))


def theme() -> gr.themes.Base:
    # system fonts only: the default theme would fetch Google Fonts, and we stay offline
    return gr.themes.Default(font=["system-ui", "Segoe UI", "Helvetica", "Arial", "sans-serif"],
                             font_mono=["ui-monospace", "Menlo", "Consolas", "monospace"])
