"""Prompt templates are text files in prompts/, so wording changes need no code change.

Templates use ``$name`` placeholders (string.Template): braces in article text stay harmless.
"""

from __future__ import annotations

import html
from functools import lru_cache
from pathlib import Path
from string import Template

from rag.chunking import count_tokens
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


def build_messages(directory: Path, question: str, hits: list[Hit], lang: str) -> list[dict]:
    refusal = render(directory, "refusal", lang)
    sources = "\n\n".join(
        render(
            directory, "source", lang, n=i, title=html.escape(h.title, quote=True),
            date=h.date or "?", source=html.escape(h.source or "?", quote=True), text=fence(h.text),
        )
        for i, h in enumerate(hits, 1)
    )
    return [
        {"role": "system", "content": render(directory, "answer_system", lang, refusal=refusal)},
        {"role": "user", "content": render(directory, "answer_user", lang, sources=sources,
                                           question=question)},
    ]
