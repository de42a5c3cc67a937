"""HTML for the web page: answers with linked [n] markers, source cards, the mode badge.

Pure functions, no Gradio: article text is untrusted, so everything that comes from an
article (titles, quotes, chunks, sources, URLs) is escaped here, in one place.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urlparse

from rag.citations import MARKER
from rag.config import Config
from rag.models import Answer, Citation

QUOTE_SEP = " … "

NO_LLM = ("Risposte estrattive offline (nessun modello linguistico configurato: impostare "
          "OPENAI_BASE_URL / OPENAI_API_KEY / CRONACA_LLM_MODEL)")


def esc(text: object) -> str:
    return html.escape(str(text or ""), quote=True)


def anchor(turn: int | str, n: int) -> str:
    return f"src-{turn}-{n}"


def badge_html(config: Config) -> str:
    if config.llm_configured:
        from rag.llm import endpoint_host

        label = f"Modello linguistico: {config.llm_model} @ {endpoint_host(config)}"
        cls = "llm"
    else:
        label, cls = NO_LLM, "offline"
    return f'<div class="cronaca-badge {cls}" id="mode-badge">{esc(label)}</div>'


def link_markers(text: str, numbers: set[int], turn: int | str) -> str:
    """Escape ``text`` and turn each [n] whose source exists into a link to its card."""

    def repl(m: re.Match) -> str:
        parts = re.split(r"\s*[,;]\s*", m.group(1))
        out = []
        for p in parts:
            n = int(p)
            if n in numbers:
                out.append(f'<a class="cite" href="#{anchor(turn, n)}">[{n}]</a>')
            else:
                out.append(f"[{n}]")
        return "".join(out)

    escaped = esc(text)
    return MARKER.sub(repl, escaped)


def answer_html(answer: Answer, turn: int, asked: str = "") -> str:
    """The assistant message: validated text with linked markers, then notices.

    ``asked`` is what the user typed; when the question answered differs (a rewritten
    follow-up), it is shown so the reader knows what was searched."""
    numbers = {c.n for c in answer.citations}
    body = link_markers(answer.text.strip(), numbers, turn)
    extra = []
    if asked and answer.question.strip() != asked.strip():
        extra.append(f"Domanda interpretata: «{esc(answer.question)}»")
    if answer.notice:
        extra.append(esc(answer.notice))
    if answer.citations:
        extra.append(f"Fonti: {len(answer.citations)} (vedi sotto)")
    if extra:
        body += '\n\n<span class="answer-notice">' + "<br>".join(extra) + "</span>"
    return body


def highlight(chunk: str, quote: str) -> str:
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
        label = "Dallo stesso articolo" if spans else "Passaggio citato"
        out.append(f'<div class="quote-extra">{label}: ' + " … ".join(
            f"«<mark>{esc(p)}</mark>»" for p in missing) + "</div>")
    return "".join(out)


def _safe_url(url: str) -> str:
    try:
        scheme = urlparse(url).scheme.lower()
    except ValueError:
        return ""
    return url if scheme in ("http", "https") else ""


def card_html(c: Citation, turn: int | str) -> str:
    meta = " · ".join(esc(x) for x in (c.date or "data sconosciuta", c.source) if x)
    url = _safe_url(c.url)
    link = (f' · <a href="{esc(url)}" target="_blank" rel="noopener noreferrer">articolo originale</a>'
            if url else "")
    return (
        f'<div class="source-card" id="{anchor(turn, c.n)}">'
        f'<div class="source-head"><span class="source-n">[{c.n}]</span> '
        f'<span class="source-title">{esc(c.title)}</span></div>'
        f'<div class="source-meta">{meta}{link}</div>'
        f'<div class="source-text">{highlight(c.chunk_text, c.quote)}</div>'
        f"</div>"
    )


def sources_html(turns: list[dict]) -> str:
    """All turns' sources, newest first; older turns folded so their links still resolve.

    Each turn: {"turn": int, "question": str, "citations": list[Citation]}.
    """
    if not turns:
        return ('<div class="sources-empty">Le fonti citate nelle risposte compariranno qui, '
                "con il passaggio usato evidenziato.</div>")
    blocks = []
    for i, t in enumerate(reversed(turns)):
        cards = "".join(card_html(c, t["turn"]) for c in t["citations"]) or (
            '<div class="sources-empty">Nessuna fonte citata per questa risposta.</div>')
        blocks.append(
            f'<details class="sources-turn"{" open" if i == 0 else ""}>'
            f'<summary>Fonti della domanda {t["turn"]}: «{esc(t["question"])}»</summary>'
            f"{cards}</details>"
        )
    return "".join(blocks)


def summary_html(summary) -> str:
    """A summary: stories as paragraphs, markers linked to the cards of the summary panel."""
    numbers = {c.n for c in summary.citations}
    paragraphs = []
    for block in link_markers(summary.text.strip(), numbers, "s").split("\n\n"):
        head, _, rest = block.partition("\n")
        # a story's first line is its heading when sentences follow it
        paragraphs.append(f"<p><b>{head}</b><br>{rest.replace(chr(10), '<br>')}</p>" if rest else f"<p>{block}</p>")
    body = "".join(paragraphs)
    if summary.notice:
        body += f'<p class="answer-notice">{esc(summary.notice)}</p>'
    return f'<div class="summary">{body}</div>'


def summary_sources_html(summary) -> str:
    if not summary.citations:
        return '<div class="sources-empty">Nessuna fonte citata.</div>'
    return "".join(card_html(c, "s") for c in summary.citations)


CSS = """
.cronaca-badge {display:inline-block; padding:4px 10px; border-radius:12px; font-size:0.85em;}
.cronaca-badge.offline {background:#fff4d6; color:#5c4400; border:1px solid #e0c36c;}
.cronaca-badge.llm {background:#e3f4e6; color:#194d24; border:1px solid #8cc79a;}
#sources-panel {margin-top:12px;}
.sources-heading {margin:12px 0 0 0;}
.sources-heading h3 {margin:0;}
.sources-turn {border:1px solid #d0d7de; border-radius:8px; padding:6px 10px; margin-bottom:8px;
  background:#f8f9fb;}
.sources-turn summary {cursor:pointer; font-weight:600;}
.source-card {border-left:4px solid #3b6fb6; background:#ffffff; padding:8px 12px; margin:8px 0;
  border-radius:4px; color:#1f2328;}
.source-card.flash {outline:3px solid #f0b400;}
.source-n {font-weight:700; color:#3b6fb6;}
.source-title {font-weight:600;}
.source-meta {font-size:0.85em; color:#57606a; margin:2px 0 6px 0;}
.source-text {font-size:0.92em; line-height:1.45; white-space:pre-wrap;}
.source-text mark {background:#ffe58a; color:inherit; padding:0 1px;}
.answer-notice {font-size:0.85em; color:#57606a;}
a.cite, #chatbot a.cite {color:#1f5fbf !important; text-decoration:none; font-weight:600;}
a.cite:hover {text-decoration:underline;}
.quote-extra {margin-top:8px; font-style:italic;}
.sources-empty {color:#57606a; font-style:italic;}
"""

# in-page jump from an [n] marker to its card (opening a folded turn first)
HEAD = """
<script>
document.addEventListener('click', function (ev) {
  var a = ev.target.closest && ev.target.closest('a[href^="#src-"]');
  if (!a) return;
  var card = document.getElementById(a.getAttribute('href').slice(1));
  if (!card) return;
  ev.preventDefault();
  var d = card.closest('details'); if (d) d.open = true;
  card.scrollIntoView({behavior: 'smooth', block: 'center'});
  card.classList.add('flash'); setTimeout(function () { card.classList.remove('flash'); }, 1500);
}, true);
</script>
"""
