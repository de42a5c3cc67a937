"""Every request's values checked in one place, with errors that name the field.

The CLI, the page and the HTTP API all take the same knobs (dates, source, answerer, what to
summarise); each front-end only translates a ``RequestError`` into its own words and status
code, so a rule changes once and every door enforces it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rag.dates import DateError, date_to_int, end_of, parse_date
from rag.models import Filters

ANSWERERS = ("auto", "llm", "extractive")
FALLBACKS = ("none", "extractive")
LANGS = ("it", "en")
MAX_QUESTION_CHARS = 2000
MAX_K = 50
MAX_HISTORY_TURNS = 20


class RequestError(ValueError):
    """A value a caller sent that cannot be used. ``field`` names it; ``code`` lets a front-end
    word the message in its own language."""

    def __init__(self, field: str, message: str, code: str = "invalid", value: Any = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.code, self.value = field, message, code, value


_REQUEST_DATE = re.compile(r"\d{4}(?:-\d{1,2}(?:-\d{1,2})?)?")


def text(field: str, value: str | None) -> str:
    """A string as Unicode can store it: a lone surrogate (``"\\ud800"``, which JSON can carry)
    cannot be encoded, embedded or written, and would fail deep inside as a server error."""
    value = value or ""
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise RequestError(field, "contains an unpaired surrogate (not valid Unicode text)", code="encoding")
    return value


def date_value(field: str, value: str | None) -> str:
    """A date a caller typed: ``YYYY-MM-DD``, ``YYYY-MM`` or ``YYYY`` only. Files may write
    ``12/05/2025`` (the parser reads it day first, as Italian papers do), but in a request it is
    ambiguous (12 May or December 5?) and a wrong guess silently filters the wrong period."""
    value = text(field, value).strip()
    if not value:
        return ""
    try:
        if not _REQUEST_DATE.fullmatch(value):
            raise DateError(value)
        return parse_date(value)
    except DateError:
        raise RequestError(field, f"'{value[:40]}' is not a date (use YYYY-MM-DD or YYYY-MM)",
                           code="date", value=value) from None


def filters(since: str | None = "", until: str | None = "", source: str | None = "",
            as_of: str | None = "") -> Filters:
    """``as_of`` answers as of a date: nothing published after it may be used."""
    start, end, moment = date_value("since", since), date_value("until", until), date_value("as_of", as_of)
    since_int, until_int = date_to_int(start), end_of(end)
    if moment:
        until_int = min(until_int, end_of(moment)) if until_int else end_of(moment)
    if since_int and until_int and since_int > until_int:
        raise RequestError("until", f"'{end or moment}' is before since '{start}'", code="range")
    return Filters(since=since_int, until=until_int, source=text("source", source).strip())


def choice(field: str, value: str | None, allowed: tuple[str, ...], default: str) -> str:
    value = (value or default).strip().lower()
    if value not in allowed:
        raise RequestError(field, f"'{value}' is not one of {', '.join(allowed)}", code="choice", value=value)
    return value


def answerer(value: str | None, llm_configured: bool | None = None) -> str:
    """``llm_configured``: when False, asking for "llm" is refused (code ``llm_not_configured``)
    rather than sent to a default endpoint nobody chose."""
    chosen = choice("answerer", value, ANSWERERS, "auto")
    if chosen == "llm" and llm_configured is False:
        raise RequestError("answerer", "no language model is configured (set OPENAI_BASE_URL or OPENAI_API_KEY), "
                           "use auto or extractive", code="llm_not_configured", value=chosen)
    return chosen


def fallback(value: str | None) -> str | None:
    """``None`` means: when the LLM fails, report it instead of answering another way."""
    chosen = choice("fallback", value, FALLBACKS, "none")
    return None if chosen == "none" else chosen


def lang(value: str | None) -> str:
    value = (value or "it").strip().lower()
    return "en" if value.startswith("en") else choice("lang", value[:2], LANGS, "it")


def question(value: str | None) -> str:
    words = " ".join(text("question", value).split())
    if not words:
        raise RequestError("question", "is empty", code="empty")
    if len(words) > MAX_QUESTION_CHARS:
        raise RequestError("question", f"is longer than {MAX_QUESTION_CHARS} characters", code="too_long")
    return words


def k(value: int | str | None, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise RequestError("k", f"'{value}' is not a whole number", code="integer", value=value) from None
    if not 1 <= n <= MAX_K:
        raise RequestError("k", f"must be between 1 and {MAX_K}", code="range", value=n)
    return n


def history(turns: Any) -> list[tuple[str, str]]:
    """Earlier (user, assistant) turns, oldest first; accepts pairs or OpenAI-style messages."""
    if not turns:
        return []
    if not isinstance(turns, (list, tuple)):
        raise RequestError("history", "must be a list of turns", code="type")
    pairs: list[tuple[str, str]] = []
    for turn in turns:
        if isinstance(turn, dict):
            role, content = turn.get("role"), turn.get("content")
            if not isinstance(content, str) or role not in ("user", "assistant", "system"):
                raise RequestError("history", "each message needs a role and a text content", code="type")
            text("history", content)
            if role == "user":
                pairs.append((content, ""))
            elif role == "assistant" and pairs and not pairs[-1][1]:
                pairs[-1] = (pairs[-1][0], content)
        elif isinstance(turn, (list, tuple)) and len(turn) == 2 and all(isinstance(t, str) for t in turn):
            pairs.append((text("history", turn[0]), text("history", turn[1])))
        elif isinstance(turn, str):
            pairs.append((text("history", turn), ""))
        else:
            raise RequestError("history", "each turn must be a [question, answer] pair or a message",
                               code="type")
    return pairs[-MAX_HISTORY_TURNS:]


@dataclass(frozen=True)
class SummaryRequest:
    """What to summarise, decided once: one article, a topic, or a period (a digest)."""

    kind: str  # "article" | "query" | "period"
    article_id: str = ""
    query: str = ""
    since: str = ""
    until: str = ""
    source: str = ""
    lang: str = "it"
    k: int = 30

    @property
    def filters(self) -> Filters:
        return filters(self.since, self.until, self.source)

    @property
    def period(self) -> str:
        if self.since and self.until:
            return f"{self.since} – {self.until}"
        return self.since or self.until


def summary_request(article_id: str | None = None, query: str | None = None, since: str | None = "",
                    until: str | None = "", source: str | None = "", lang_: str | None = "it",
                    digest: bool = False, k_: int | str | None = None) -> SummaryRequest:
    """An article id wins, then a query; a digest or a bare period summarises the period."""
    start, end = date_value("since", since), date_value("until", until)
    filters(start, end, source)  # range check
    text("article_id", article_id)
    text("query", query)
    common = dict(since=start, until=end, source=text("source", source).strip(), lang=lang(lang_),
                  k=k(k_, 30) or 30)
    if (article_id or "").strip():
        return SummaryRequest(kind="article", article_id=article_id.strip(), **common)
    if (query or "").strip():
        return SummaryRequest(kind="query", query=" ".join(query.split()), **common)
    if digest and not start:
        raise RequestError("since", "a digest needs the first day of its period", code="required")
    if digest or start or end or common["source"]:
        return SummaryRequest(kind="period", **common)
    raise RequestError("selection", "say what to summarise: an article id, a query, or a period",
                       code="required")


def upload(name: str, size: int, max_bytes: int) -> None:
    """An uploaded file is checked by the parser's own rules, before it is copied anywhere."""
    from rag.parsing import ItemError, check_file

    try:
        check_file(name, size, max_bytes)
    except ItemError as exc:
        raise RequestError("file", f"{name}: {exc}", code="file", value=name) from None
