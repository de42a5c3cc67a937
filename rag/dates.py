"""Dates at the precision a source gives them ("2024", "2024-11", "2024-11-05").

One parser for files, filters and requests, so "2024-11" means the same thing everywhere: a
day-precise integer for range filters in Chroma and BM25 (``YYYYMMDD``), the first day of the
period when it starts a range and the last day when it ends one.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any


class DateError(ValueError):
    """A value that is not a date we understand; the message says which formats work."""


_PATTERNS = (
    (re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ].*)?$"), (1, 2, 3)),
    (re.compile(r"^(\d{4})-(\d{1,2})$"), (1, 2, None)),
    (re.compile(r"^(\d{4})$"), (1, None, None)),
    (re.compile(r"^(\d{1,2})[/.](\d{1,2})[/.](\d{4})$"), (3, 2, 1)),
    (re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$"), (1, 2, 3)),
)


def parse_date(value: Any) -> str:
    """ISO date at the precision given: '2024', '2024-11' or '2024-11-05'."""
    if isinstance(value, (dt.date, dt.datetime)):
        return value.strftime("%Y-%m-%d")
    text = str(value).strip()
    for pattern, (yi, mi, di) in _PATTERNS:
        m = pattern.match(text)
        if not m:
            continue
        year = int(m.group(yi))
        month = int(m.group(mi)) if mi else 1
        day = int(m.group(di)) if di else 1
        try:
            dt.date(year, month, day)
        except ValueError:
            break
        if not 1800 <= year <= 2200:
            break
        if di:
            return f"{year:04d}-{month:02d}-{day:02d}"
        return f"{year:04d}-{month:02d}" if mi else f"{year:04d}"
    raise DateError(f"unparseable date '{text[:40]}' (use YYYY-MM-DD or YYYY-MM)")


def day_number(date_int: int) -> int:
    """YYYYMMDD as a day count (0 for undated or impossible dates): recency is linear in days."""
    if not date_int:
        return 0
    try:
        return dt.date(date_int // 10000, max(1, date_int // 100 % 100), max(1, date_int % 100)).toordinal()
    except ValueError:
        return 0


def date_to_int(date: str) -> int:
    """YYYYMMDD with a missing month or day taken as 01: the start of the period."""
    if not date:
        return 0
    parts = (date.split("-") + ["01", "01"])[:3]
    return int(parts[0]) * 10000 + int(parts[1]) * 100 + int(parts[2])


def end_of(date: str) -> int:
    """YYYYMMDD of the last day of the period: 'until 2024-11' includes the whole of November."""
    if not date:
        return 0
    parts = date.split("-")
    if len(parts) >= 3:
        return date_to_int(date)
    year = int(parts[0])
    if len(parts) == 1:
        return year * 10000 + 1231
    month = int(parts[1])
    nxt = dt.date(year + month // 12, month % 12 + 1, 1)
    return int((nxt - dt.timedelta(days=1)).strftime("%Y%m%d"))


_MONTHS = {
    "it": ("gennaio", "febbraio", "marzo", "aprile", "maggio", "giugno", "luglio", "agosto",
           "settembre", "ottobre", "novembre", "dicembre"),
    "en": ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December"),
}


def spoken(date: str, lang: str = "it") -> str:
    """'2025-05-12' → '12 maggio 2025' / '12 May 2025'; '2024-11' → 'novembre 2024'."""
    if not date:
        return ""
    parts = date.split("-")
    months = _MONTHS["en" if lang == "en" else "it"]
    try:
        if len(parts) >= 3:
            return f"{int(parts[2])} {months[int(parts[1]) - 1]} {parts[0]}"
        if len(parts) == 2:
            return f"{months[int(parts[1]) - 1]} {parts[0]}"
    except (ValueError, IndexError):
        return date
    return parts[0]


def _elides(date: str) -> bool:
    """Whether the Italian article drops its vowel before this date: a day read with a vowel
    first ("l'8 marzo", "l'11 giugno"); months and years are read with a consonant first."""
    parts = date.split("-")
    return len(parts) >= 3 and parts[2].lstrip("0") in ("8", "11")


def preposed(preposition: str, date: str, lang: str = "it") -> str:
    """A date after a preposition, as it is said: Italian "da"/"a" take the article a day
    needs, with elision ("dal 5 giugno", "all'11 giugno", "dall'8 marzo"), none before a
    month ("a giugno 2025"); English ones are left as given ("from 11 June 2025")."""
    said = spoken(date, lang)
    if lang == "en" or not said:
        return f"{preposition} {said}".strip()
    if len(date.split("-")) == 2:  # "da novembre 2024 a giugno 2025"
        return f"{preposition} {said}"
    base = {"da": "dal", "a": "al", "di": "del", "su": "sul", "in": "nel"}.get(preposition, preposition)
    if _elides(date):
        return f"{base}l'{said}" if base.endswith("l") else f"{base} {said}"
    return f"{base} {said}"


def spoken_range(first: str, last: str, lang: str = "it") -> str:
    """A period in words, with what the two ends share said once: "dal 2 all'11 giugno 2025",
    "2–11 June 2025"; one date when both ends are the same (or one is missing)."""
    if not first or not last or first == last:
        return spoken(first or last, lang)
    a, b = first.split("-"), last.split("-")
    head = spoken(first, lang)
    if len(a) == len(b) == 3 and a[0] == b[0]:  # the same year: said once, at the end
        head = " ".join(head.split()[:-1] if a[1] != b[1] else head.split()[:1])
    if lang == "en":
        return f"{head}–{spoken(last, lang)}" if a[:2] == b[:2] else f"{head} – {spoken(last, lang)}"
    if head.split()[0].isdigit():
        day = f"dall'{head}" if _elides(first) else f"dal {head}"
    else:
        day = f"da {head}"
    return f"{day} {preposed('a', last, lang)}"
