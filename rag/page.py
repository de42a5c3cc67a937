"""Words and HTML for the web page, in the reader's language (Italian or English).

Pure functions, no Gradio. Article text is untrusted, so everything that comes from an article
(titles, quotes, chunks, sources, URLs) and every message that echoes a value is escaped here,
in one place. The interface speaks one language per reader: static labels go to Gradio's
``I18n`` (``i18n_tables``), everything the server renders takes a ``lang``; messages the library
words in English (ingest and fetch reasons, ``RequestError``) are reworded here by pattern.
Answers and summaries keep the language they were written in.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Iterable, Sequence
from pathlib import PurePath
from typing import Any
from urllib.parse import urlparse

from rag.citations import MARKER
from rag.dates import spoken, spoken_range
from rag.models import Answer, Chunk, Citation, StoredArticle

QUOTE_SEP = " … "
UPLOAD_TYPES = (".txt", ".md", ".json", ".jsonl", ".html", ".htm")

# ---- words -------------------------------------------------------------------------------------
# key -> (Italian, English). Keys used as Gradio I18n keys are the static labels; the rest are
# rendered by the server with str.format fields.
WORDS: dict[str, tuple[str, str]] = {
    # header and tabs
    "title": ("**cronaca** · domande sugli articoli, con le fonti",
              "**cronaca** · questions about the articles, with sources"),
    "tab_chat": ("Chat", "Chat"),
    "tab_articles": ("Articoli", "Articles"),
    "tab_summaries": ("Riassunti", "Summaries"),
    "lang_switch": ("Lingua dell'interfaccia", "Interface language"),
    # chat
    "chat_label": ("Conversazione", "Conversation"),
    "chat_placeholder": ("Fai una domanda sugli articoli in archivio.", "Ask a question about the stored articles."),
    "question": ("Domanda", "Question"),
    "question_ph": ("es. Quali club vogliono Ancelotti?", "e.g. Which clubs want Ancelotti?"),
    "send": ("Invia", "Send"),
    "new_chat": ("Nuova conversazione", "New conversation"),
    "filters": ("Filtri", "Filters"),
    "since": ("Dal", "From"),
    "until": ("Al", "To"),
    "as_of": ("Alla data", "As of"),
    "as_of_info": ("Risposta come si sarebbe data quel giorno", "Answer as it would have been given that day"),
    "date_ph": ("es. 2024-11-05", "e.g. 2024-11-05"),
    "source": ("Fonte", "Source"),
    "all_sources": ("Tutte le fonti", "All sources"),
    "sources_heading": ("Fonti", "Sources"),
    "searching": ("Cerco negli articoli…", "Searching the articles…"),
    "interpreted": ("Domanda interpretata: «{q}»", "Question as understood: “{q}”"),
    "n_sources": ("Fonti: {n} (vedi sotto)", "Sources: {n} (see below)"),
    "disagree": ("Versioni diverse ({claim}): {sources}", "Conflicting versions ({claim}): {sources}"),
    "no_answer": ("Non è stato possibile rispondere: {e}", "Could not answer: {e}"),
    "sources_empty": ("Le fonti citate nelle risposte compariranno qui, con il passaggio usato evidenziato.",
                      "The sources cited in the answers will appear here, with the passage used highlighted."),
    "sources_turn": ("Fonti della domanda {n}: «{q}»", "Sources of question {n}: “{q}”"),
    "no_cited": ("Nessuna fonte citata per questa risposta.", "No source cited for this answer."),
    "no_cited_summary": ("Nessuna fonte citata.", "No source cited."),
    "unknown_date": ("data sconosciuta", "date unknown"),
    "original": ("articolo originale", "original article"),
    "same_article": ("Dallo stesso articolo", "From the same article"),
    "quoted_passage": ("Passaggio citato", "Quoted passage"),
    # badge
    "badge_offline_short": ("Frasi degli articoli · nessun modello", "Sentences from the articles · no model"),
    "badge_offline": ("Risposte composte da frasi degli articoli (nessun modello linguistico)",
                      "Answers made of sentences from the articles (no language model)"),
    "badge_how": ("Come collegare un modello", "How to connect a model"),
    "help_title": ("Collegare un modello linguistico", "Connecting a language model"),
    "help_model": ("Senza un modello linguistico, cronaca risponde con frasi copiate dagli articoli, ciascuna con "
                   "la sua fonte e la sua data. Con un modello, le risposte sono scritte per intero e citano "
                   "comunque le fonti.\n\n"
                   "Per collegarne uno, chi gestisce il server avvia cronaca indicando un servizio compatibile con "
                   "OpenAI (anche locale, come Ollama o llama.cpp):\n\n"
                   "- `OPENAI_BASE_URL`: l'indirizzo del servizio, per esempio `http://localhost:11434/v1`\n"
                   "- `OPENAI_API_KEY`: la chiave, se il servizio la chiede\n"
                   "- `CRONACA_LLM_MODEL`: il nome del modello\n\n"
                   "Poi si riavvia il server: l'etichetta in alto mostra il modello in uso.",
                   "Without a language model, cronaca answers with sentences copied from the articles, each "
                   "with its source and date. With a model, answers are written in full and still cite their "
                   "sources.\n\n"
                   "To connect one, whoever runs the server starts cronaca with an OpenAI-compatible service "
                   "(a local one too, such as Ollama or llama.cpp):\n\n"
                   "- `OPENAI_BASE_URL`: the service's address, for example `http://localhost:11434/v1`\n"
                   "- `OPENAI_API_KEY`: the key, if the service needs one\n"
                   "- `CRONACA_LLM_MODEL`: the model's name\n\n"
                   "Then restart the server: the label at the top shows the model in use."),
    "badge_llm_short": ("Modello: {model}", "Model: {model}"),
    "badge_llm": ("Modello linguistico: {model} @ {host}", "Language model: {model} @ {host}"),
    # archive line
    "archive": ("Archivio", "Archive"),
    "articles_n": ("{n} articoli", "{n} articles"),
    "articles_1": ("1 articolo", "1 article"),
    "chunks_n": ("{n} passaggi", "{n} passages"),
    "chunks_1": ("1 passaggio", "1 passage"),
    "empty_archive": ("L'archivio è vuoto: caricare articoli nella scheda Articoli.",
                      "The archive is empty: add articles in the Articles tab."),
    "first_start": ("Primo avvio: importo gli articoli di esempio ({done} di {total} file). Le domande trovano "
                    "già quelli importati.",
                    "First start: importing the sample articles ({done} of {total} files). Questions already "
                    "find the ones imported."),
    # articles tab
    "upload_intro": ("Caricare articoli ({types}; massimo {mb} MB per file). Markdown con intestazione "
                     "`title` / `date` / `source` / `url`.",
                     "Add articles ({types}; at most {mb} MB per file). Markdown with a `title` / `date` / "
                     "`source` / `url` header."),
    "files": ("File da importare", "Files to import"),
    "import": ("Importa", "Import"),
    "no_files": ("Nessun file selezionato.", "No file selected."),
    "import_done": ("Importazione: aggiunti {added}, aggiornati {updated}, invariati {unchanged}, saltati {skipped}, "
                    "non riusciti {failed} ({chunks} passaggi scritti).",
                    "Import: added {added}, updated {updated}, unchanged {unchanged}, skipped {skipped}, "
                    "failed {failed} ({chunks} passages written)."),
    "import_failed": ("Importazione non riuscita: {e}", "Import failed: {e}"),
    "errors": ("Errori", "Errors"),
    "notes": ("Note", "Notes"),
    "table_label": ("Articoli in archivio", "Stored articles"),
    "search": ("Cerca negli articoli in archivio", "Search the stored articles"),
    "search_ph": ("es. Ancelotti, Il Post", "e.g. Ancelotti, Il Post"),
    "col_title": ("Titolo", "Title"),
    "col_date": ("Data", "Date"),
    "col_source": ("Fonte", "Source"),
    "col_chunks": ("Passaggi", "Passages"),
    "detail_hint": ("Scegliere un articolo nell'elenco per vederne testo e passaggi.",
                    "Choose an article in the list to see its text and passages."),
    "detail_gone": ("L'articolo {id} non è più in archivio.", "Article {id} is no longer stored."),
    "meta_date": ("Data", "Date"),
    "meta_source": ("Fonte", "Source"),
    "meta_lang": ("Lingua", "Language"),
    "meta_id": ("ID", "ID"),
    "meta_url": ("Indirizzo", "Address"),
    "meta_file": ("File", "File"),
    "text": ("Testo", "Text"),
    "chunks_heading": ("Passaggi ({n})", "Passages ({n})"),
    "chunk_meta": ("#{i} · {tokens} token · caratteri {start}–{end}",
                   "#{i} · {tokens} tokens · characters {start}–{end}"),
    "delete": ("Elimina questo articolo", "Delete this article"),
    "delete_confirm": ("Eliminare questo articolo dall'archivio?", "Delete this article from the archive?"),
    "deleted": ("Eliminato l'articolo {id}.", "Deleted article {id}."),
    "not_found": ("Nessun articolo con ID {id}.", "No article with ID {id}."),
    "choose_article": ("Scegliere prima un articolo nella tabella.", "Choose an article in the table first."),
    # feeds
    "feeds_heading": ("Feed RSS/Atom", "RSS/Atom feeds"),
    "feeds_intro": ("Gli articoli dei feed seguiti entrano in archivio a ogni aggiornamento.",
                    "The articles of the followed feeds join the archive at each refresh."),
    "feed_url": ("Indirizzo del feed", "Feed address"),
    "feed_url_ph": ("es. https://www.ilpost.it/feed/", "e.g. https://www.ilpost.it/feed/"),
    "feed_name": ("Nome (facoltativo)", "Name (optional)"),
    "feed_name_ph": ("es. ilpost", "e.g. ilpost"),
    "feed_source": ("Fonte (facoltativa)", "Source (optional)"),
    "feed_source_ph": ("es. Il Post", "e.g. Il Post"),
    "feed_add": ("Aggiungi il feed", "Add the feed"),
    "feed_refresh": ("Aggiorna il feed scelto", "Refresh the chosen feed"),
    "feed_remove": ("Rimuovi il feed scelto", "Remove the chosen feed"),
    "feeds_table": ("Feed seguiti (clic su una riga per sceglierlo)", "Followed feeds (click a row to choose it)"),
    "feed_col_name": ("Nome", "Name"),
    "feed_col_url": ("Indirizzo", "Address"),
    "feed_col_run": ("Ultimo aggiornamento", "Last refresh"),
    "feed_col_status": ("Esito", "Status"),
    "feed_col_items": ("Articoli", "Items"),
    "feed_col_error": ("Ultimo errore", "Last error"),
    "feed_never": ("mai", "never"),
    "feed_status_ok": ("riuscito", "ok"),
    "feed_status_not modified": ("nessuna novità", "not modified"),
    "feed_status_failed": ("non riuscito", "failed"),
    "feed_items": ("{stored} di {items}", "{stored} of {items}"),
    "feed_added": ("Aggiunto il feed «{name}» ({url}).", "Added feed “{name}” ({url})."),
    "feed_removed": ("Rimosso il feed «{name}»: i suoi articoli restano in archivio.",
                     "Removed feed “{name}”: its articles stay in the archive."),
    "feed_choose": ("Scegliere prima un feed nella tabella.", "Choose a feed in the table first."),
    "feed_need_url": ("Indicare l'indirizzo del feed.", "Give the feed's address."),
    "feed_error": ("Feed: {e}", "Feed: {e}"),
    "refresh_done": ("{n} feed: aggiunti {added}, aggiornati {updated}, invariati {unchanged}, saltati {skipped}, "
                     "non riusciti {failed}.",
                     "{n} feed(s): added {added}, updated {updated}, unchanged {unchanged}, skipped {skipped}, "
                     "failed {failed}."),
    "refresh_feed_failed": ("{name}: non riuscito: {e}", "{name}: failed: {e}"),
    "refresh_failed": ("Aggiornamento non riuscito: {e}", "Refresh failed: {e}"),
    # summaries tab
    "summaries_intro": ("Riassunto di un articolo, di un argomento (raggruppato per storia) o di un periodo. Le "
                        "storie riportate da più testate compaiono una volta sola.",
                        "Summary of one article, of a topic (grouped by story) or of a period. Stories reported "
                        "by several papers appear once."),
    "summary_article": ("Articolo", "Article"),
    "topic": ("Argomento", "Topic"),
    "topic_ph": ("es. Ancelotti", "e.g. Ancelotti"),
    "summary_lang": ("Lingua del riassunto", "Summary language"),
    "summarise": ("Riassumi", "Summarise"),
    "summary_choose": ("Scegliere un articolo, un argomento o un periodo.", "Choose an article, a topic or a period."),
    "summary_failed": ("Non è stato possibile riassumere: {e}", "Could not summarise: {e}"),
    "summary_no_article": ("Nessun articolo con ID {id}.", "No article with ID {id}."),
    # request errors (rag.validation.RequestError, by field and code)
    "field_since": ("Dal", "From"),
    "field_until": ("Al", "To"),
    "field_as_of": ("Alla data", "As of"),
    "field_question": ("Domanda", "Question"),
    "err_date": ("Data «{v}» non valida nel campo «{f}»: usare il formato AAAA-MM-GG (per esempio 2024-11-05) "
                 "oppure AAAA-MM.",
                 "“{v}” in the field “{f}” is not a date: use YYYY-MM-DD (for example 2024-11-05) or YYYY-MM."),
    "err_range": ("Il periodo non è valido: la data del campo «{f}» viene prima di quella del campo «Dal».",
                  "The period is not valid: the date in “{f}” comes before the one in “From”."),
    "err_empty": ("Scrivere una domanda.", "Write a question."),
    "err_too_long": ("La domanda è troppo lunga (al massimo {n} caratteri).",
                     "The question is too long (at most {n} characters)."),
    "err_other": ("Richiesta non valida ({f}): {m}", "Invalid request ({f}): {m}"),
}

# Gradio's own strings: it ships no Italian, so an Italian page would say "Drop File Here".
# Keys are Gradio's (frontend/lang/en.json); English needs nothing, Gradio has it.
GRADIO_IT: dict[str, str] = {
    "upload_text.drop_file": "Trascina qui i file",
    "upload_text.click_to_upload": "Clic per caricare",
    "upload_text.paste_clipboard": "Incolla dagli appunti",
    "common.or": "oppure",
    "common.clear": "Svuota",
    "common.remove": "Rimuovi",
    "common.download": "Scarica",
    "common.download_all": "Scarica tutto",
    "common.edit": "Modifica",
    "common.empty": "Vuoto",
    "common.error": "Errore",
    "common.loading": "Caricamento",
    "common.submit": "Invia",
    "common.undo": "Annulla",
    "common.settings": "Impostazioni",
    "common.language": "Lingua",
    "common.share": "Condividi",
    "common.progress": "Avanzamento",
    "chatbot.copy_message": "Copia il messaggio",
    "chatbot.copied_message": "Messaggio copiato",
    "chatbot.clear": "Svuota",
    "chatbot.retry": "Riprova",
    "chatbot.undo": "Annulla",
    "chatbot.edit": "Modifica",
    "chatbot.submit": "Invia",
    "chatbot.cancel": "Annulla",
    "chat_interface.chatbot": "Conversazione",
    "chat_interface.conversation": "Conversazione",
    "dataframe.sort_column": "Ordina la colonna",
    "dataframe.sort_ascending": "Ordine crescente",
    "dataframe.sort_descending": "Ordine decrescente",
    "dataframe.clear_sort": "Togli l'ordinamento",
    "dataframe.filter": "Filtra",
    "dataframe.clear_filter": "Togli i filtri",
    "dropdown.dropdown": "Menu",
    "radio.radio": "Scelta",
    "file.uploading": "Caricamento…",
    "errors.use_via_api": "Usa tramite API",
    "errors.use_via_api_or_mcp": "Usa tramite API o MCP",
    "login.login": "Accedi",
    "login.username": "nome utente",
    "login.password": "password",
    "login.incorrect_credentials": "Credenziali errate",
    "status.queue_position": "In coda: {position} di {size}",
    "blocks.lost_connection": "Connessione persa uscendo dalla pagina. Rientro in coda…",
    "blocks.waiting_for_inputs": "Attendere la fine del caricamento dei file, poi riprovare.",
}

def norm_lang(value: object) -> str:
    """The interface language for whatever the browser said: Italian or English, English for the rest."""
    text = str(value or "").strip().lower()
    return "it" if text.startswith("it") else "en"


def t(lang: str, key: str, **fields: Any) -> str:
    """The words for ``key`` in ``lang``; ``fields`` fill its ``{placeholders}`` (not escaped)."""
    words = WORDS[key][0 if lang == "it" else 1]
    return words.format(**fields) if fields else words


def i18n_tables(**fields: Any) -> dict[str, dict[str, str]]:
    """Gradio I18n dictionaries: every key in both languages (``fields`` fill config values
    such as the upload limit), plus Italian for Gradio's own strings."""
    tables: dict[str, dict[str, str]] = {"it": dict(GRADIO_IT), "en": {}}
    for key, (it, en) in WORDS.items():
        tables["it"][key] = _fill(it, fields)
        tables["en"][key] = _fill(en, fields)
    return tables


def _fill(text: str, fields: dict[str, Any]) -> str:
    try:
        return text.format(**fields) if fields and "{" in text else text
    except (KeyError, IndexError):  # a runtime template: the server fills it later
        return text


def format_date(iso: str, lang: str) -> str:
    """``2024-11-05`` → ``5 novembre 2024`` / ``5 November 2024``; a month or a year stays as precise."""
    return spoken(iso or "", "it" if lang == "it" else "en")


def format_moment(stamp: str, lang: str) -> str:
    """An ISO timestamp (UTC) as a local-looking day and minute, for 'last refresh' columns."""
    if not stamp:
        return t(lang, "feed_never")
    try:
        moment = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    return f"{format_date(moment.date().isoformat(), lang)} {moment:%H:%M} UTC"


# ---- library messages, reworded -------------------------------------------------------------------
# The library words reasons in English (one line per failed file, page or feed); an Italian page
# rewords the ones it knows and keeps the rest as they are.
_REASONS_IT: list[tuple[re.Pattern[str], str]] = [(re.compile(p), w) for p, w in [
    (r"^unsupported file type '(.+)' \(use (.+)\)$", "tipo di file non ammesso ({0}; ammessi: {1})"),
    (r"^empty file$", "file vuoto"),
    (r"^file too large \(([\d.]+) MB, limit ([\d.]+) MB\)$", "file troppo grande ({0} MB, limite {1} MB)"),
    (r"^cannot read: (.+)$", "file non leggibile ({0})"),
    (r"^no articles in file$", "nessun articolo nel file"),
    (r"^binary file, not text.*$", "file binario, non di testo"),
    (r"^cannot decode.*$", "codifica del testo non riconosciuta"),
    (r"^malformed JSON \((.+)\)$", "JSON non valido ({0})"),
    (r"^JSON nested too deeply$", "JSON annidato troppo in profondità"),
    (r"^expected an object, a list of objects.*$", "atteso un oggetto, una lista di oggetti o {{\"articles\": [...]}}"),
    (r"^malformed front matter(.*)$", "intestazione (front matter) non valida{0}"),
    (r"^front matter too large.*$", "intestazione (front matter) troppo grande"),
    (r"^front matter nested too deeply.*$", "intestazione (front matter) annidata troppo in profondità"),
    (r"^nested too deeply to read$", "struttura troppo annidata per essere letta"),
    (r"^no text to index after cleaning$", "nessun testo da indicizzare dopo la pulizia"),
    (r"^another ingest is still running.*$", "un'altra importazione è ancora in corso"),
    (r"^not a regular file$", "non è un file normale"),
    (r"^no such file or folder$", "file o cartella inesistente"),
    (r"^skipped, same text as (.+)$", "saltato, stesso testo di {0}"),
    (r"^skipped, same id as an earlier item \((.+)\)$", "saltato, stesso ID di un elemento precedente ({0})"),
    (r"^skipped, same text already stored as (.+)$", "saltato, stesso testo già in archivio come {0}"),
    (r"^HTTP (\d+)(.*)$", "risposta HTTP {0}{1}"),
    (r"^timed out after ([\d.]+) s(.*)$", "tempo scaduto dopo {0} s"),
    (r"^network error: (.+)$", "errore di rete: {0}"),
    (r"^disallowed by robots\.txt(.*)$", "vietato da robots.txt{0}"),
    (r"^(\S+) is in a private or reserved network.*$",
     "{0} è in una rete privata o riservata: non scaricato (CRONACA_FETCH_ALLOW_PRIVATE=1 per le fonti interne)"),
    (r"^not HTML \((.+)\)$", "non è una pagina HTML ({0})"),
    (r"^too large \((.+)\)$", "troppo grande ({0})"),
    (r"^too many redirects.*$", "troppi reindirizzamenti"),
    (r"^redirect loop.*$", "reindirizzamenti circolari"),
    (r"^not an RSS or Atom feed \((.+)\)$", "non è un feed RSS o Atom ({0})"),
    (r"^malformed feed XML \((.+)\)$", "XML del feed non valido ({0})"),
    (r"^not an http\(s\) URL: '(.*)'$", "non è un indirizzo http(s): «{0}»"),
    (r"^feed (\S+) is already added, as '(.+)'$", "il feed {0} è già seguito, come «{1}»"),
    (r"^a feed named '(.+)' already exists \((.+)\); choose another name$",
     "esiste già un feed chiamato «{0}» ({1}): scegliere un altro nome"),
    (r"^feed (\S+) or name '(.+)' is already added$", "il feed {0} o il nome «{1}» è già presente"),
    (r"^invalid feed name '(.*)'.*$", "nome del feed non valido «{0}»: usare lettere, cifre e trattini"),
    (r"^no feed named or at '(.+)'.*$", "nessun feed con nome o indirizzo «{0}»"),
    (r"^could not store articles: (.+)$", "articoli non salvati: {0}"),
    (r"^not stored$", "non salvato"),
    (r"^no article with id (.+)$", "nessun articolo con ID {0}"),
]]


def reason(text: str, lang: str) -> str:
    """One library reason in the page's language (unknown ones stay as the library wrote them)."""
    text = str(text or "").strip()
    if lang != "it":
        return text
    item = re.match(r"^item (\d+): (.+)$", text, re.S)  # a reason nested in another
    if item:
        return f"elemento {item[1]}: {reason(item[2], lang)}"
    for pattern, words in _REASONS_IT:
        m = pattern.match(text)
        if m:
            return words.format(*m.groups())
    return text


def located(line: str, lang: str) -> str:
    """``<file or url>: <reason>`` with the reason reworded (URLs contain colons, so split after them)."""
    m = re.match(r"^(?P<where>(?:https?://)?\S+?(?::\d+)?): (?P<reason>.+)$", str(line), re.S)
    if not m:
        return reason(line, lang)
    return f"{m['where']}: {reason(m['reason'], lang)}"


def ingest_error(error: Any, lang: str) -> str:
    """An ``IngestError`` (path, reason, line) as one line in the page's language."""
    path = str(getattr(error, "path", "") or "")
    line = getattr(error, "line", None)
    where = PurePath(path).name if path and "://" not in path else path
    if line:
        where = f"{where}:{line}"
    words = reason(getattr(error, "reason", str(error)), lang)
    return f"{where}: {words}" if where else words


def request_error(exc: Any, lang: str) -> str:
    """A ``RequestError`` worded for the reader, from its field, code and value."""
    field_name = str(getattr(exc, "field", "") or "")
    code = str(getattr(exc, "code", "") or "")
    value = getattr(exc, "value", None)
    label = t(lang, f"field_{field_name}") if f"field_{field_name}" in WORDS else field_name
    if code == "date":
        return t(lang, "err_date", v=str(value or "")[:40], f=label)
    if code == "range" and field_name in ("until", "as_of"):
        return t(lang, "err_range", f=label)
    if code == "empty" and field_name == "question":
        return t(lang, "err_empty")
    if code == "too_long" and field_name == "question":
        from rag.validation import MAX_QUESTION_CHARS

        return t(lang, "err_too_long", n=MAX_QUESTION_CHARS)
    return t(lang, "err_other", f=label, m=getattr(exc, "message", str(exc)))


# ---- small HTML helpers ------------------------------------------------------------------------------
def esc(text: object) -> str:
    return html.escape(str(text or ""), quote=True)


def anchor(turn: int | str, n: int) -> str:
    return f"src-{turn}-{n}"


def _safe_url(url: str) -> str:
    try:
        scheme = urlparse(url).scheme.lower()
    except ValueError:
        return ""
    return url if scheme in ("http", "https") else ""


def notice_html(lines: Iterable[str], errors: Iterable[str] = (), lang: str = "it") -> str:
    """A report box: lines, then a list of errors; everything escaped."""
    errors = list(errors)
    out = ['<div class="upload-report">']
    out += [f"<p>{esc(line)}</p>" for line in lines]
    if errors:
        out.append(f"<p><b>{esc(t(lang, 'errors'))}:</b></p><ul>" + "".join(f"<li>{esc(e)}</li>" for e in errors)
                   + "</ul>")
    out.append("</div>")
    return "".join(out)


def badge_html(config: Any, lang: str) -> str:
    """Whether answers come from a language model (which, where) or from the offline answerer."""
    if config.llm_configured:
        from rag.llm import endpoint_host

        short = t(lang, "badge_llm_short", model=config.llm_model)
        full = t(lang, "badge_llm", model=config.llm_model, host=endpoint_host(config))
        cls = "llm"
    else:
        short, full, cls = t(lang, "badge_offline_short"), t(lang, "badge_offline"), "offline"
    if cls == "llm":
        return (f'<div class="cronaca-badge {cls}" id="mode-badge" title="{esc(full)}">'
                f'<span class="badge-long">{esc(full)}</span><span class="badge-short">{esc(short)}</span></div>')
    # no model: a link to the help on connecting one (on a phone the short words are the link)
    return (f'<div class="cronaca-badge {cls}" id="mode-badge" title="{esc(full)}">'
            f'<span class="badge-long">{esc(full)} <a class="badge-help" href="#help-model">'
            f'{esc(t(lang, "badge_how"))}</a></span>'
            f'<a class="badge-short badge-help" href="#help-model">{esc(short)}</a></div>')


def status_html(stats: dict[str, Any], lang: str, progress: tuple[int, int] | None = None, note: str = "") -> str:
    """The archive line (counts and period), and the first-start progress while it lasts."""
    n, chunks = int(stats.get("articles") or 0), int(stats.get("chunks") or 0)
    parts = [t(lang, "articles_1") if n == 1 else t(lang, "articles_n", n=n),
             t(lang, "chunks_1") if chunks == 1 else t(lang, "chunks_n", n=chunks)]
    if stats.get("first_date"):
        parts.append(spoken_range(stats["first_date"], stats.get("last_date") or stats["first_date"],
                                  "it" if lang == "it" else "en"))
    body = f"<b>{esc(t(lang, 'archive'))}:</b> " + esc(" · ".join(parts))
    extra = []
    if progress:
        extra.append(f'<span class="first-start">{esc(t(lang, "first_start", done=progress[0], total=progress[1]))}'
                     "</span>")
    elif n == 0:
        extra.append(f'<span class="archive-empty">{esc(t(lang, "empty_archive"))}</span>')
    if note:
        extra.append(f'<span class="archive-note">{esc(note)}</span>')
    return f'<div class="archive-line">{body}' + "".join(f"<br>{e}" for e in extra) + "</div>"


# ---- answers and sources --------------------------------------------------------------------------------
def link_markers(text: str, numbers: set[int] | dict[int, str], turn: int | str,
                 disputed: set[int] | frozenset[int] = frozenset()) -> str:
    """Escape ``text`` and turn each [n] whose source exists into a link to its card; given a
    dict, each link's tooltip names its source (outlet, title, date); the sources of conflicting
    versions (``disputed``) are marked so the reader sees them."""
    labels = numbers if isinstance(numbers, dict) else {}

    def repl(m: re.Match) -> str:
        parts = re.split(r"\s*[,;]\s*", m.group(1))
        out = []
        for p in parts:
            n = int(p)
            if n in numbers:
                tip = f' title="{esc(labels[n])}"' if labels.get(n) else ""
                kind = "cite disputed" if n in disputed else "cite"
                out.append(f'<a class="{kind}" href="#{anchor(turn, n)}"{tip}>[{n}]</a>')
            else:
                out.append(f"[{n}]")
        return "".join(out)

    escaped = esc(text)
    return MARKER.sub(repl, escaped)


def streaming_html(text: str) -> str:
    """The answer while it arrives: plain escaped text (markers become links once validated)."""
    return esc(text)


def answer_html(answer: Answer, turn: int, asked: str = "", lang: str = "it") -> str:
    """The assistant message: validated text with linked markers, then notices.

    ``asked`` is what the user typed; when the question searched differs (a rewritten follow-up),
    it is shown so the reader knows what was searched."""
    labels = cite_labels(answer.citations, lang)
    disputed = {n for c in answer.conflicts for n in c.citations} & set(labels)
    body = link_markers(answer.text.strip(), labels, turn, disputed)
    searched = (answer.standalone_question or answer.question or "").strip()
    extra = []
    if asked and searched and searched != asked.strip():
        extra.append(esc(t(lang, "interpreted", q=searched)))
    if answer.notice:
        extra.append(esc(answer.notice))  # the library's, in the answer's language
    for c in answer.conflicts:  # what the sources disagree about, and which of them do
        extra.append(esc(t(lang, "disagree", claim=c.claim, sources=" ".join(f"[{n}]" for n in c.citations))))
    if answer.citations:
        extra.append(esc(t(lang, "n_sources", n=len(answer.citations))))
    if extra:
        body += '\n\n<span class="answer-notice">' + "<br>".join(extra) + "</span>"
    return body


def highlight(chunk: str, quote: str, lang: str = "it") -> str:
    """Escaped chunk text with each part of the quote wrapped in <mark>."""
    chunk = chunk or ""
    parts = [p.strip() for p in (quote or "").split(QUOTE_SEP) if p.strip()]
    spans: list[tuple[int, int]] = []
    missing: list[str] = []
    for part in parts:
        i = chunk.find(part)
        if i < 0:  # whitespace may differ between quote and chunk
            pattern = r"\s+".join(re.escape(w) for w in part.split())
            m = re.search(pattern, chunk) if pattern and chunk else None
            if m:
                spans.append((m.start(), m.end()))
            else:  # a part quoted from another passage of the same article
                missing.append(part)
            continue
        spans.append((i, i + len(part)))
    spans.sort()
    out, pos = [], 0
    for s, e in spans:
        s = max(s, pos)  # overlapping parts: merge
        if e <= s:
            continue
        out.append(esc(chunk[pos:s]))
        out.append(f"<mark>{esc(chunk[s:e])}</mark>")
        pos = e
    out.append(esc(chunk[pos:]))
    if missing:
        label = t(lang, "same_article" if spans else "quoted_passage")
        out.append(f'<div class="quote-extra">{esc(label)}: ' + " … ".join(
            f"«<mark>{esc(p)}</mark>»" for p in missing) + "</div>")
    return "".join(out)


def cite_labels(citations: Sequence[Citation], lang: str) -> dict[int, str]:
    """Each citation's number → "outlet · title · date", the tooltip of its [n] markers."""
    return {c.n: " · ".join(v for v in (c.source, c.title, format_date(c.date, lang)) if v) for c in citations}


def outlet_html(source: str, url: str, lang: str) -> str:
    """The outlet's name and a link to the original, each only when known: no empty element,
    no separator left dangling."""
    url = _safe_url(url)
    parts = [f'<span class="source-outlet">{esc(source)}</span>'] if source else []
    if url:
        parts.append(f'<a class="source-link" href="{esc(url)}" target="_blank" rel="noopener noreferrer">'
                     f'{esc(t(lang, "original"))} ↗</a>')
    return " · ".join(parts)


def card_html(c: Citation, turn: int | str, lang: str = "it") -> str:
    """One source, collapsible: number, title, outlet and date in its head (so a folded card on a
    phone still says where it comes from); the link and the chunk with the quoted passage
    highlighted inside."""
    date = format_date(c.date, lang) if c.date else t(lang, "unknown_date")
    outlet = f' <span class="source-outlet">{esc(c.source)}</span> ·' if c.source else ""
    meta = outlet_html(c.source, c.url, lang)
    return (
        f'<details class="source-card" id="{anchor(turn, c.n)}" open>'
        f'<summary class="source-head"><span class="source-n">[{c.n}]</span> '
        f'<span class="source-title">{esc(c.title)}</span> '
        f'{outlet}<span class="source-date">{esc(date)}</span></summary>'
        + (f'<div class="source-meta">{meta}</div>' if _safe_url(c.url) else "") +
        f'<div class="source-text">{highlight(c.chunk_text, c.quote, lang)}</div>'
        f"</details>"
    )


def _cards(citations: Sequence[Citation], turn: int | str, lang: str) -> str:
    return "".join(card_html(c, turn, lang) for c in sorted(citations, key=lambda c: c.n))


def sources_html(turns: list[dict], lang: str = "it") -> str:
    """All turns' sources, newest first, cards in citation order; older turns folded so their
    links still resolve. Each turn: {"turn": int, "question": str, "citations": list[Citation]}."""
    if not turns:
        return f'<div class="sources-empty">{esc(t(lang, "sources_empty"))}</div>'
    blocks = []
    for i, turn in enumerate(reversed(turns)):
        cards = _cards(turn["citations"], turn["turn"], lang) or (
            f'<div class="sources-empty">{esc(t(lang, "no_cited"))}</div>')
        blocks.append(
            f'<details class="sources-turn"{" open" if i == 0 else ""}>'
            f'<summary>{esc(t(lang, "sources_turn", n=turn["turn"], q=turn["question"]))}</summary>'
            f"{cards}</details>"
        )
    return "".join(blocks)


def summary_html(summary: Any) -> str:
    """A summary: stories as paragraphs, markers linked to the cards of the summary panel."""
    paragraphs = []
    labels = cite_labels(summary.citations, getattr(summary, "lang", "it"))
    for block in link_markers(summary.text.strip(), labels, "s").split("\n\n"):
        head, _, rest = block.partition("\n")
        # a story's first line is its heading when sentences follow it
        paragraphs.append(f"<p><b>{head}</b><br>{rest.replace(chr(10), '<br>')}</p>" if rest else f"<p>{block}</p>")
    body = "".join(paragraphs)
    if summary.notice:
        body += f'<p class="answer-notice">{esc(summary.notice)}</p>'
    return f'<div class="summary">{body}</div>'


def summary_text_html(text: str) -> str:
    """A summary or a message while it streams: escaped plain text."""
    return f'<div class="summary">{esc(text)}</div>'


def summary_sources_html(summary: Any, lang: str = "it") -> str:
    if not summary.citations:
        return f'<div class="sources-empty">{esc(t(lang, "no_cited_summary"))}</div>'
    return _cards(summary.citations, "s", lang)


# ---- the archive ------------------------------------------------------------------------------------------
_CELL_ID = re.compile(r'data-id="([^"]*)"')


def title_cell(article: StoredArticle, lang: str = "it") -> str:
    """The table's title cell: truncated by CSS, the whole title on hover, the id for the detail
    view; on a phone the other columns are hidden and the cell becomes a card (whole title,
    then date, outlet and passages on a line of their own)."""
    meta = [format_date(article.date, lang) if article.date else t(lang, "unknown_date")]
    if article.source:
        meta.append(article.source)
    meta.append(t(lang, "chunks_1") if article.chunks == 1 else t(lang, "chunks_n", n=article.chunks))
    return (f'<span class="t" title="{esc(article.title)}" data-id="{esc(article.id)}">{esc(article.title)}</span>'
            f'<span class="card-meta">{esc(" · ".join(meta))}</span>')


def date_cell(date: str, lang: str) -> str:
    """A date in words; the ISO date leads the markup, so sorting the column sorts by time."""
    if not date:
        return ""
    return f'<time datetime="{esc(date)}">{esc(format_date(date, lang))}</time>'


def id_from_cell(cell: object) -> str:
    """The article id carried by a title cell (the table may be sorted or filtered in the browser)."""
    m = _CELL_ID.search(str(cell or ""))
    return html.unescape(m.group(1)) if m else ""


def table_headers(lang: str) -> list[str]:
    return [t(lang, "col_title"), t(lang, "col_date"), t(lang, "col_source"), t(lang, "col_chunks")]


def article_rows(articles: Iterable[StoredArticle], query: str = "", lang: str = "it") -> list[list[Any]]:
    """Rows of the articles table, those matching every word of ``query`` in title, source or
    date (as written or as said: "giugno" finds June)."""
    from rag.text import fold

    words = fold(query or "").split()
    rows = []
    for a in articles:
        hay = fold(f"{a.title} {a.source} {a.date} {format_date(a.date, lang)}")
        if all(w in hay for w in words):
            rows.append([title_cell(a, lang), date_cell(a.date, lang), a.source, a.chunks])
    return rows


def article_html(article: StoredArticle | None, chunks: Sequence[Chunk], lang: str, article_id: str = "") -> str:
    """One article: metadata, its text, and the chunks the index holds for it."""
    if article is None:
        key = "detail_gone" if article_id else "detail_hint"
        return f'<div class="article-detail empty">{esc(t(lang, key, id=article_id))}</div>'
    url = _safe_url(article.url)
    rows = [
        (t(lang, "meta_date"), esc(format_date(article.date, lang) if article.date else t(lang, "unknown_date"))),
        (t(lang, "meta_source"), esc(article.source or "—")),
        (t(lang, "meta_lang"), esc(article.lang or "—")),
        (t(lang, "meta_id"), f"<code>{esc(article.id)}</code>"),
    ]
    if url:
        rows.append((t(lang, "meta_url"),
                     f'<a href="{esc(url)}" target="_blank" rel="noopener noreferrer">{esc(url)}</a>'))
    if article.path and "://" not in article.path:
        rows.append((t(lang, "meta_file"), esc(PurePath(article.path).name)))
    meta = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in rows)
    items = "".join(
        '<li><div class="chunk-meta">'
        f'{esc(t(lang, "chunk_meta", i=c.index + 1, tokens=c.tokens, start=c.start, end=c.end))}</div>'
        f'<div class="chunk-text">{esc(c.text)}</div></li>' for c in chunks)
    return (
        f'<div class="article-detail" data-id="{esc(article.id)}">'
        f'<h3 class="article-title">{esc(article.title)}</h3>'
        f'<dl class="article-meta">{meta}</dl>'
        f'<details class="article-text-box" open><summary>{esc(t(lang, "text"))}</summary>'
        f'<div class="article-text">{esc(article.text)}</div></details>'
        f'<details class="article-chunks-box"><summary>{esc(t(lang, "chunks_heading", n=len(chunks)))}</summary>'
        f'<ol class="article-chunks">{items}</ol></details>'
        "</div>"
    )


# ---- feeds ---------------------------------------------------------------------------------------------------
def feed_headers(lang: str) -> list[str]:
    return [t(lang, k) for k in ("feed_col_name", "feed_col_url", "feed_col_run", "feed_col_status",
                                 "feed_col_items", "feed_col_error")]


_CELL_NAME = re.compile(r'data-name="([^"]*)"')


def feed_rows(feeds: Iterable[Any], lang: str) -> list[list[str]]:
    """Rows of the feeds table. The name cell carries the name for choosing the row and, for a
    phone (where the other columns are hidden), the address and the last refresh as a card."""
    rows = []
    for f in feeds:
        status = t(lang, f"feed_status_{f.last_status}") if f"feed_status_{f.last_status}" in WORDS else "—"
        status = status if f.last_run else "—"
        run = format_moment(f.last_run, lang)
        error = located(f.last_error, lang) if f.last_error else ""
        card = " · ".join(v for v in (f"{t(lang, 'feed_col_run')}: {run}", status if f.last_run else "",
                                      error) if v)
        name = (f'<span class="fname" data-name="{esc(f.name)}">{esc(f.name)}</span>'
                f'<span class="card-meta">{esc(f.url)}</span><span class="card-meta">{esc(card)}</span>')
        rows.append([name, f.url, run, status, t(lang, "feed_items", stored=f.stored_items, items=f.items), error])
    return rows


def name_from_cell(cell: object) -> str:
    """The feed name carried by a name cell (a plain name is taken as it is)."""
    m = _CELL_NAME.search(str(cell or ""))
    return html.unescape(m.group(1)) if m else str(cell or "")


def refresh_report_html(report: Any, lang: str) -> str:
    """A ``RefreshReport``: its counts, then one line per failed feed or item, reworded."""
    head = t(lang, "refresh_done", n=len(report.feeds), added=report.added, updated=report.updated,
             unchanged=report.unchanged, skipped=report.skipped, failed=report.failed)
    errors = [t(lang, "refresh_feed_failed", name=f.name, e=reason(f.error, lang))
              for f in report.feeds if f.status == "failed"]
    errors += [located(e, lang) for f in report.feeds for e in f.errors]
    return notice_html([head], errors, lang)


# ---- style and behaviour -----------------------------------------------------------------------------------------
CSS = """
#header {align-items:center; gap:8px;}
#app-title p {margin:0; font-size:1.35rem; font-weight:500; line-height:1.25;}
#app-title strong {font-weight:800;}
#topline {align-items:center; gap:6px 14px; flex-wrap:wrap;}
#badge, #status {flex-basis:auto;}
.cronaca-badge {display:inline-block; padding:4px 10px; border-radius:12px; font-size:0.85em; white-space:nowrap;}
.cronaca-badge.offline {background:#fff4d6; color:#5c4400; border:1px solid #e0c36c;}
.cronaca-badge.llm {background:#e3f4e6; color:#194d24; border:1px solid #8cc79a;}
.cronaca-badge .badge-short {display:none;}
.cronaca-badge a.badge-help {color:inherit; text-decoration:underline; margin-left:4px;}
.cronaca-badge a.badge-short {margin-left:0;}
#status .progress-text, #status .meta-text, #status .meta-text-center, #status .eta-bar, #status .progress-level,
#badge .progress-text, #badge .meta-text, #badge .meta-text-center, #badge .eta-bar {display:none !important;}
#lang-switch label.selected {background:#1f5fbf !important; color:#fff !important; font-weight:700;}
#articles-table .card-meta, #feeds-table .card-meta {display:none;}
.source-outlet {font-weight:600; color:#3a4450; font-size:0.85em; margin-left:4px;}
#lang-switch {flex-grow:0 !important; overflow:visible !important;}
#lang-switch .wrap {flex-wrap:nowrap; gap:4px;}
#lang-switch label {padding:2px 10px !important; font-size:0.85em;}
.filters-heading p, .sources-heading p {margin:0; font-weight:700; font-size:1.05em;}
#chatbot .placeholder-content {padding-top:30px;}
.archive-line {font-size:0.95em;}
.archive-line .first-start {color:#7a4b00;}
.archive-line .archive-empty, .archive-line .archive-note {color:#57606a;}
#sources-panel {margin-top:12px;}
.sources-heading {margin:12px 0 0 0;}
.sources-turn {border:1px solid #d0d7de; border-radius:8px; padding:6px 10px; margin-bottom:8px;
  background:#f8f9fb;}
.sources-turn > summary {cursor:pointer; font-weight:600;}
.source-card {border-left:4px solid #3b6fb6; background:#ffffff; padding:8px 12px; margin:8px 0;
  border-radius:4px; color:#1f2328; transition:background-color .3s, outline-color .3s;}
.source-card > summary {cursor:pointer;}
.source-card.chosen {outline:3px solid #f0b400; background:#fff8dc; border-left-color:#f0b400;}
.source-n {font-weight:700; color:#3b6fb6;}
.source-title {font-weight:600;}
.source-date {font-size:0.85em; color:#57606a; white-space:nowrap; margin-left:4px;}
.source-meta {font-size:0.85em; color:#57606a; margin:2px 0 6px 0;}
.source-text {font-size:0.92em; line-height:1.45; white-space:pre-wrap;}
.source-text mark {background:#ffe58a; color:inherit; padding:0 1px;}
.answer-notice {font-size:0.85em; color:#57606a;}
a.cite, #chatbot a.cite {color:#1f5fbf !important; text-decoration:none; font-weight:600;}
a.cite:hover {text-decoration:underline;}
a.cite.disputed, #chatbot a.cite.disputed {color:#a33a00 !important; border-bottom:2px dotted #a33a00;}
.quote-extra {margin-top:8px; font-style:italic;}
.sources-empty {color:#57606a; font-style:italic;}
input::placeholder, textarea::placeholder {color:#a0a6ad !important; font-style:italic; opacity:1;}
#articles-table span.t {display:block; overflow:hidden; text-overflow:ellipsis; white-space:nowrap;}
#articles-table th, #feeds-table th {white-space:nowrap;}
.article-detail {border:1px solid #d0d7de; border-radius:8px; padding:10px 14px;}
.article-detail.empty {color:#57606a; font-style:italic;}
.article-title {margin:0 0 6px 0;}
.article-meta {display:grid; grid-template-columns:max-content 1fr; gap:2px 12px; margin:0 0 8px 0;
  font-size:0.9em;}
.article-meta dt {color:#57606a;}
.article-meta dd {margin:0; overflow-wrap:anywhere;}
.article-text, .chunk-text {white-space:pre-wrap; line-height:1.45; font-size:0.92em;}
.article-chunks li {margin:6px 0;}
.chunk-meta {font-size:0.8em; color:#57606a;}
.upload-report p {margin:4px 0;}
@media (max-width: 640px) {
  #app-title p {font-size:1rem;}
  #lang-switch {min-width:120px !important;}
  #lang-switch input {display:none !important;}
  #lang-switch label {padding:2px 6px !important; font-size:0.78em;}
  #lang-switch label.selected {font-weight:700;}
  .archive-line {font-size:0.85em;}
  .cronaca-badge {font-size:0.75em; padding:2px 8px;}
  .cronaca-badge .badge-long {display:none;}
  .cronaca-badge .badge-short {display:inline;}
  .source-card {padding:6px 8px;}
  #question-row {flex-wrap:wrap !important;}
  #question-row > * {flex:1 1 100% !important; min-width:100% !important;}
  #lang-switch label {border:1px solid #8b96a3 !important; border-radius:6px;}
  /* the tables become card lists: whole titles, then date, outlet and passages on their own line */
  #articles-table th:not(.first-column), #articles-table [role=gridcell]:not(.first-column),
  #feeds-table th:not(.first-column), #feeds-table [role=gridcell]:not(.first-column),
  #articles-table td:not(:first-of-type), #feeds-table td:not(:first-of-type) {display:none !important;}
  #articles-table th.first-column, #articles-table [role=gridcell].first-column,
  #feeds-table th.first-column, #feeds-table [role=gridcell].first-column, #articles-table td:first-of-type,
  #feeds-table td:first-of-type {width:100% !important; min-width:0 !important; max-width:none !important;
    flex:1 1 100% !important;}
  #articles-table span.t {white-space:normal; overflow:visible; font-weight:600;}
  #articles-table .card-meta, #feeds-table .card-meta {display:block; font-size:0.85em; color:#57606a;
    white-space:normal; overflow-wrap:anywhere;}
  #feeds-table .fname {font-weight:600;}
}
"""

# Behaviour the page needs beyond Gradio's, as one script in <head>:
# - the reader's language: a choice kept in localStorage, else the browser's first Italian or
#   English preference (English for other languages); Gradio's own locale is switched to it (Gradio
#   ships no Italian, so without this an Italian browser would get the English labels);
# - a [n] marker jumps to its card, opens it and marks it as the chosen one until another is;
# - on a narrow screen the source cards arrive folded (number, title, date), so one answer does not
#   make the page several screens long.
HEAD = """
<script>
(function () {
  var KEY = 'cronaca-lang';
  function wanted() {
    try { var s = localStorage.getItem(KEY); if (s === 'it' || s === 'en') return s; } catch (e) {}
    var langs = (navigator.languages && navigator.languages.length) ? navigator.languages : [navigator.language || ''];
    for (var i = 0; i < langs.length; i++) {
      var l = String(langs[i] || '').toLowerCase().slice(0, 2);
      if (l === 'it' || l === 'en') return l;
    }
    return 'en';
  }
  function coreUrl() {
    var names = performance.getEntriesByType('resource').map(function (e) { return e.name; });
    for (var i = 0; i < names.length; i++) if (/\\/assets\\/core-[\\w-]+\\.js(\\?|$)/.test(names[i])) return names[i];
    return null;
  }
  function apply(lang) {
    var url = coreUrl();
    if (!url) return Promise.resolve(false);
    return import(url).then(function (m) {
      if (!m || typeof m.changeLocale !== 'function') return false;
      // through the other language: a store set to the value it holds tells no one, and labels
      // worded while Gradio was starting would keep their first words
      m.changeLocale(lang === 'en' ? 'it' : 'en');
      m.changeLocale(lang);
      return true;
    }).catch(function () { return false; });
  }
  function ready() { document.documentElement.setAttribute('data-cronaca-ready', '1'); }
  window.cronacaLang = wanted;
  // the page's load event: Gradio has finished starting, so its locale is final once set here
  window.cronacaStart = function () {
    var lang = wanted();
    apply(lang).then(function () { setTimeout(ready, 50); });
    return lang;
  };
  window.cronacaSetLang = function (lang) {
    lang = lang === 'it' ? 'it' : 'en';
    try { localStorage.setItem(KEY, lang); } catch (e) {}
    apply(lang);
    return lang;
  };
  // Gradio sets its locale more than once while it starts (again when the page's translations
  // arrive), each time from the browser's languages; whenever it lands elsewhere, put it back.
  function enforce() {
    var current = (document.documentElement.getAttribute('lang') || '').slice(0, 2);
    if (!current || !coreUrl()) return false;
    if (current === wanted()) { ready(); return true; }
    apply(wanted());
    return true;
  }
  new MutationObserver(enforce).observe(document.documentElement, {attributes: true, attributeFilter: ['lang']});
  var started = Date.now();
  (function settle() {
    if (enforce() || Date.now() - started > 4000) return;
    setTimeout(settle, 40);
  })();
  setTimeout(ready, 4000);  // never stay hidden, whatever happened

  document.addEventListener('click', function (ev) {
    var help = ev.target.closest && ev.target.closest('a[href="#help-model"]');
    if (help) {  // the badge's link opens the help on connecting a model (an accordion) and shows it
      var box = document.getElementById('help-model');
      if (!box) return;
      ev.preventDefault();
      var text = document.getElementById('help-model-text');
      if (!text || !text.offsetParent) { var toggle = box.querySelector('button'); if (toggle) toggle.click(); }
      setTimeout(function () { box.scrollIntoView({behavior: 'smooth', block: 'start'}); }, 60);
      return;
    }
    var a = ev.target.closest && ev.target.closest('a[href^="#src-"]');
    if (!a) return;
    var card = document.getElementById(a.getAttribute('href').slice(1));
    if (!card) return;
    ev.preventDefault();
    for (var d = card; d; d = d.parentElement && d.parentElement.closest('details')) d.open = true;
    document.querySelectorAll('.source-card.chosen').forEach(function (c) { c.classList.remove('chosen'); });
    card.classList.add('chosen');
    card.scrollIntoView({behavior: 'smooth', block: 'center'});
  }, true);

  var narrow = window.matchMedia('(max-width: 640px)');
  function fold(root) {
    if (!narrow.matches) return;
    root.querySelectorAll('details.source-card:not([data-folded])').forEach(function (c) {
      c.setAttribute('data-folded', '1');
      if (!c.classList.contains('chosen')) c.open = false;
    });
  }
  new MutationObserver(function () { fold(document); })
    .observe(document.documentElement, {childList: true, subtree: true});
})();
</script>
<style>
html:not([data-cronaca-ready]) gradio-app, html:not([data-cronaca-ready]) .gradio-container {visibility:hidden;}
</style>
"""
