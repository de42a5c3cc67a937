"""Prompt templates are text files in prompts/, so wording changes need no code change.

Templates use ``$name`` placeholders (string.Template): braces in article text stay harmless.
The few sentences an answer says about itself (cut off, uncited) live here too, by language.
"""

from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path
from string import Template

from rag.chunking import count_tokens
from rag.dates import spoken
from rag.llm import DEADLINE
from rag.models import Hit


@lru_cache(maxsize=64)
def _read(directory: str, name: str) -> str:
    path = Path(directory) / f"{name}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"prompt template missing: {path}")
    return path.read_text(encoding="utf-8").strip()


def template_lang(lang: str) -> str:
    return "it" if lang == "it" else "en"


def render(directory: Path, name: str, lang: str | None = None, **values: object) -> str:
    full = f"{name}_{template_lang(lang)}" if lang else name
    return Template(_read(str(directory), full)).safe_substitute(
        {k: str(v) for k, v in values.items()}
    )


# What an answer says about itself, in the answer's language. Short fixed sentences, not prompt
# templates: the model never sees them.
_NOTICES = {
    "length": {"it": "La risposta è stata interrotta dal modello (limite di lunghezza).",
               "en": "The answer was cut off by the model (length limit)."},
    "unfinished": {"it": "La risposta è stata interrotta: il modello ha chiuso il flusso senza concluderla.",
                   "en": "The answer was cut off: the model's stream ended before the answer was finished."},
    "deadline": {"it": "La risposta è stata interrotta: il modello non l'ha finita entro il tempo massimo "
                       "($seconds s).",
                 "en": "The answer was cut off: the model did not finish it within the time limit ($seconds s)."},
    "other": {"it": "La risposta è stata interrotta dal modello ($reason).",
              "en": "The answer was cut off by the model ($reason)."},
    "uncited": {"it": "Nessuna affermazione di questa risposta è collegata a una fonte.",
                "en": "No statement in this answer is linked to a source."},
}


def notice(kind: str, lang: str, **values: object) -> str:
    return Template(_NOTICES[kind][template_lang(lang)]).safe_substitute({k: str(v) for k, v in values.items()})


def truncation_notice(finish_reason: str, lang: str, deadline_seconds: float) -> str:
    """Why the answer is incomplete, from how its stream ended (see ``rag.llm.Usage``)."""
    if finish_reason == "length":
        return notice("length", lang)
    if finish_reason == DEADLINE:
        return notice("deadline", lang, seconds=f"{deadline_seconds:g}")
    if not finish_reason:
        return notice("unfinished", lang)
    return notice("other", lang, reason=finish_reason)


def fence(text: str) -> str:
    """Article text cannot close its own fence or open a fake one: angle brackets escaped."""
    return text.replace("<", "&lt;").replace(">", "&gt;")


def pack(hits: list[Hit], budget_tokens: int) -> list[Hit]:
    """Keep hits in rank order while they fit the token budget (the first always goes in)."""
    packed, used = [], 0
    for hit in hits:
        cost = count_tokens(hit.text) + 30
        if packed and used + cost > budget_tokens:
            continue
        packed.append(hit)
        used += cost
    return packed


def source_block(directory: Path, n: int, title: str, date: str, source: str, text: str, lang: str) -> str:
    """One article's text as untrusted data: inside its ``<fonte>``/``<source>`` fence, with the
    attributes escaped and the text fenced. The LLM prompt and the MCP server both use it, so an
    instruction inside an article reads as content wherever the article goes."""
    return render(directory, "source", lang, n=n, title=html.escape(title, quote=True),
                  date=spoken(date, lang) if date else "?", source=html.escape(source or "?", quote=True),
                  text=fence(text))


def build_messages(directory: Path, question: str, hits: list[Hit], lang: str) -> list[dict]:
    refusal = render(directory, "refusal", lang)
    sources = "\n\n".join(source_block(directory, i, h.title, h.date, h.source, h.text, lang)
                            for i, h in enumerate(hits, 1))
    return [
        {"role": "system", "content": render(directory, "answer_system", lang, refusal=refusal)},
        {"role": "user", "content": render(directory, "answer_user", lang, sources=sources,
                                           question=question)},
    ]
