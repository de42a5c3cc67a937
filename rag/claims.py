"""Do two texts state the same facts? The one owner of that question.

Two near-duplicate texts (a wire story retold by two outlets, two chunks, two sentences) are the
same claim only when the facts they state agree: the numbers, each with the noun it counts
("14 feriti"), amounts, scores ("2-1"), dates, times and names. When they share most of their
words but differ in any of these, they are *conflicting versions* and both must be kept: in
news, two outlets giving different death tolls or scores is the story, and picking one silently
misleads the reader.

Invariants:

* numbers are compared after normalising them: number words through text2num ("tre" = "3",
  "millecinquecento" = "1500"), Italian and English separators ("1.500" = "1,500" = "1500"),
  multipliers ("1,5 milioni" = "1500000");
* a fact missing from one text is an omission, not a contradiction: "3 morti e 14 feriti" and
  "3 morti" agree; a conflict needs both texts to state the same kind of fact (the same noun
  for numbers) with values neither of which includes the other;
* nothing here decides *whether* two texts are near-duplicates by meaning: callers bring their
  own word-overlap test (``overlap`` gives the shared one) and ask ``differences`` / ``agree``.

``sentence`` writes the disagreement for a reader ("Le fonti non concordano: secondo Il
Messaggero (20 luglio 2025) i morti sono 3 [1]; …"), oldest version first, saying when one is
later; both answerers and the page use the same ``Conflict`` records (``rag.models``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from text_to_num import alpha2digit

from rag.dates import date_to_int, day_number, spoken
from rag.models import Conflict, Version
from rag.question import names_in
from rag.text import STOPWORDS, detect_lang, fold, tokenize

__all__ = ["Difference", "Fact", "Said", "agree", "among", "conflict", "differences", "facts", "overlap", "rivals",
           "sentence", "words"]

CONFLICT_DAYS = 7  # versions of one event are days apart; months apart the story moved on

_MONTH_NAMES = ("gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre dicembre",
                "january february march april may june july august september october november december")
_MONTHS = {m: i for names in _MONTH_NAMES for i, m in enumerate(names.split(), 1)}
_MONTH_RE = "|".join(_MONTHS)
_DAY_NAMES = "lunedi martedi mercoledi giovedi venerdi sabato domenica monday tuesday wednesday thursday friday " \
    "saturday sunday"
_WEEKDAYS = _DAY_NAMES.split()
# on folded, number-normalised text
_DATE = re.compile(rf"\b(?:(\d{{1,2}})(?:°|º|st|nd|rd|th)?\s+(?:di\s+|of\s+)?({_MONTH_RE})(?:\s+(\d{{4}}))?|"
                   rf"({_MONTH_RE})\s+(\d{{1,2}})(?:st|nd|rd|th)?(?:,?\s+(\d{{4}}))?|"
                   rf"(\d{{1,2}})[/.](\d{{1,2}})[/.](\d{{2,4}}))\b")
_WEEKDAY = re.compile(rf"\b({'|'.join(_WEEKDAYS)})\b")
_YEAR = re.compile(r"(?<![\d.,])(1[89]\d\d|20\d\d)(?![\d.,%])")
_TIME = re.compile(r"\b(?:alle|ore|at|dalle|from|fino alle|until)\s+(?:ore\s+)?(\d{1,2})(?:[.:](\d{2}))?\b"
                   r"(?!\s*(?:%|per\s*cento|percent))|\b(\d{1,2}):(\d{2})\b")
_SCORE = re.compile(r"(?<![\d.,/-])(\d{1,3})\s*[-–]\s*(\d{1,3})(?![\d/-])")
_NUMBER = re.compile(r"(?<![\w.,])([$€£]\s?)?(\d+(?:[.,]\d+)*)(\s?%)?")
_MULTIPLIERS = {"mila": 1e3, "mille": 1e3, "thousand": 1e3, "milione": 1e6, "milioni": 1e6, "million": 1e6,
                "millions": 1e6, "mln": 1e6, "miliardo": 1e9, "miliardi": 1e9, "billion": 1e9, "billions": 1e9,
                "mld": 1e9}
_CURRENCY = {"$": "dollar", "€": "euro", "£": "sterlin"}
_OF = {"di", "of", "de"}
_PERCENT = re.compile(r"^\s*(?:per\s*cento|percent|per\s+cent)\b")
_OPENER_WORDS = ("dopo prima anche ora poi oggi ieri domani intanto inoltre tuttavia però quindi mentre durante "
                 "secondo già ancora sempre mai così ecco solo infatti oltre proprio adesso allora nonostante "
                 "invece after before also now then today yesterday meanwhile however while during according "
                 "still already")
_OPENERS = STOPWORDS | {fold(w) for w in _OPENER_WORDS.split()}


@dataclass(frozen=True)
class Fact:
    kind: str  # number | date | time | year | score | name
    key: str  # what a number counts (its noun's stem, "%" or a currency); "" for the other kinds
    value: str  # normalised: "3", "1500", "2-1", "7-20", "rossi"
    text: str  # as a reader says it: "3 morti", "2-1", "20 luglio", "Rossi"
    noun: str = ""  # the noun as written ("morti"), for sentences


@dataclass(frozen=True)
class Difference:
    """One fact the two texts both state, differently."""

    kind: str
    key: str
    a: tuple[Fact, ...]
    b: tuple[Fact, ...]

    @property
    def noun(self) -> str:
        return next((f.noun for f in self.a + self.b if f.noun), "")


def words(text: str) -> frozenset[str]:
    """Stemmed content words, Italian and English stems together (a mixed corpus)."""
    return frozenset(tokenize(text, "it")) | frozenset(tokenize(text, "en"))


def overlap(a: frozenset[str] | set[str], b: frozenset[str] | set[str]) -> float:
    """Jaccard overlap of two word sets: how much of their wording two texts share."""
    return len(a & b) / max(1, len(a | b))


def _number(raw: str, lang: str) -> float | None:
    """'1.500' → 1500, '1,5' → 1.5 (Italian); '1,500' → 1500, '1.5' → 1.5 (English)."""
    thousands, decimal = (",", ".") if lang == "en" else (".", ",")
    parts = raw.split(thousands)
    if len(parts) > 1 and all(len(p) == 3 for p in parts[1:]) and decimal not in parts[-1]:
        raw = "".join(parts)
    elif len(parts) > 1:  # the other convention after all ("2.5" in Italian text)
        thousands, decimal = decimal, thousands
        raw = raw.replace(thousands, "")
    raw = raw.replace(decimal, ".")
    try:
        return float(raw)
    except ValueError:
        return None


def _show(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def digits(text: str) -> str:
    """Number words as digits, in the text's own language ("diecimila volumi" -> "10000 volumi",
    "tre gol" -> "3 gol"), by text2num; "uno"/"una"/"one" stay words (as often articles as numbers)."""
    return _normalise(text, _lang(text))


def _normalise(text: str, lang: str) -> str:
    try:
        return alpha2digit(text, "en" if lang == "en" else "it", threshold=2)
    except Exception:  # noqa: BLE001 - a library hiccup on odd text must not lose the facts in digits
        return text


@lru_cache(maxsize=4096)
def _lang(text: str) -> str:
    return "en" if detect_lang(text) == "en" else "it"


@lru_cache(maxsize=4096)
def facts(text: str, lang: str | None = None) -> tuple[Fact, ...]:
    """Every fact the text states, normalised; the same text gives the same tuple. ``lang``:
    the text's language (number words, separators), detected when not given."""
    lang = lang or _lang(text)
    out: list[Fact] = []
    plain = _normalise(text, lang)
    low = fold(plain)
    taken: list[tuple[int, int]] = []

    def free(s: int, e: int) -> bool:
        return not any(s < te and ts < e for ts, te in taken)

    for m in _DATE.finditer(low):
        if m.group(2):
            day, month, year = int(m.group(1)), _MONTHS[m.group(2)], m.group(3)
        elif m.group(4):
            day, month, year = int(m.group(5)), _MONTHS[m.group(4)], m.group(6)
        else:
            day, month, year = int(m.group(7)), int(m.group(8)), m.group(9)
        if not (1 <= day <= 31 and 1 <= month <= 12):
            continue
        taken.append(m.span())
        out.append(Fact("date", "", f"{month}-{day}", plain[m.start():m.end()]))
        if year:
            out.append(Fact("year", "", year[-4:], year))
    for m in _WEEKDAY.finditer(low):
        taken.append(m.span())
        out.append(Fact("date", "", m.group(1), plain[m.start():m.end()]))
    for m in _YEAR.finditer(low):
        if free(*m.span()):
            taken.append(m.span())
            out.append(Fact("year", "", m.group(1), m.group(1)))
    for m in _TIME.finditer(low):
        hour, minute = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        if free(m.start(), m.end()) and int(hour) <= 24:
            s = m.start(1) if m.group(1) else m.start(3)
            taken.append((s, m.end()))
            out.append(Fact("time", "", f"{int(hour)}:{minute or '00'}", plain[s:m.end()]))
    for m in _SCORE.finditer(low):
        if free(*m.span()):
            taken.append(m.span())
            out.append(Fact("score", "", f"{int(m.group(1))}-{int(m.group(2))}", plain[m.start():m.end()]))
    for m in _NUMBER.finditer(low):
        if not free(*m.span()):
            continue
        value = _number(m.group(2).rstrip(".,"), lang)
        if value is None:
            continue
        rest = low[m.end():]
        after = re.findall(r"[\w%]+(?:/\w+)?", rest[:60])
        i = 0
        if after and after[0] in _MULTIPLIERS:
            value *= _MULTIPLIERS[after[0]]
            i = 1
        key, noun = "", ""
        if m.group(1):
            key = noun = _CURRENCY[m.group(1).strip()]
        elif m.group(3) or _PERCENT.match(rest):
            key = noun = "%"
        else:
            if i < len(after) and after[i] in _OF:
                i += 1
            if i < len(after) and after[i].replace("/", "").isalpha() and after[i] not in STOPWORDS:
                stems = tokenize(after[i], "en" if lang == "en" else "it")
                key = stems[0] if stems else after[i]
                found = re.search(re.escape(after[i]), fold(plain[m.end():m.end() + 60]))
                noun = plain[m.end() + found.start():m.end() + found.end()] if found else after[i]
        # as written ("1.500", "4,4", "2 milioni"), what a reader compares with the article
        written = m.group(2).rstrip(".,") + (f" {after[0]}" if i and after[0] in _MULTIPLIERS else "")
        out.append(Fact("number", key, _show(value), written, noun if key != "%" else ""))
    for found, start, _end, _article in names_in(text):
        head = fold(found.split()[0])
        if start == 0 and head in _OPENERS:
            found = " ".join(found.split()[1:])
        # names_in keeps "Latina è Mario Rossetti" together across a short word: two names
        for phrase in re.split(r"\s+(?:e|è|ed|and|&)\s+", found):
            if phrase and fold(phrase) not in _MONTHS and fold(phrase) not in _WEEKDAYS:
                out.append(Fact("name", "", fold(phrase), phrase))
    return tuple(out)


def _split(values: set[str], other: set[str]) -> bool:
    """Two sets of values of one fact disagree: both stated, neither containing the other."""
    return bool(values) and bool(other) and not (values <= other or other <= values)


def differences(a: str, b: str, lang: str | None = None, kinds: tuple[str, ...] | None = None) -> list[Difference]:
    """The facts both texts state, differently; empty when they agree (or only one states them).

    Numbers are compared per noun ("3 morti" with "9 morti"); numbers whose nouns the other text
    does not use are compared among themselves ("3 morti" / "9 vittime")."""
    fa, fb = facts(a, lang), facts(b, lang)
    out: list[Difference] = []
    for kind in ("number", "score", "date", "time", "year", "name"):
        if kinds is not None and kind not in kinds:
            continue
        xa = [f for f in fa if f.kind == kind]
        xb = [f for f in fb if f.kind == kind]
        if not xa or not xb:
            continue
        if kind == "name":
            if _split({f.value for f in xa}, {f.value for f in xb}):
                # only the names each side alone has: those are the competing versions
                only_a = tuple(f for f in xa if not any(_same_name(f.value, g.value) for g in xb))
                only_b = tuple(f for f in xb if not any(_same_name(f.value, g.value) for g in xa))
                if only_a and only_b:
                    out.append(Difference(kind, "", only_a, only_b))
            continue
        if kind != "number":
            if _split({f.value for f in xa}, {f.value for f in xb}):
                out.append(Difference(kind, "", tuple(xa), tuple(xb)))
            continue
        keys_a, keys_b = {f.key for f in xa if f.key}, {f.key for f in xb if f.key}
        for key in dict.fromkeys(f.key for f in xa if f.key in keys_b):  # in the order the text states them
            va = tuple(f for f in xa if f.key == key)
            vb = tuple(f for f in xb if f.key == key)
            if {f.value for f in va} != {f.value for f in vb}:
                out.append(Difference(kind, key, va, vb))
        rest_a = tuple(f for f in xa if f.key not in keys_b)
        rest_b = tuple(f for f in xb if f.key not in keys_a)
        if _split({f.value for f in rest_a}, {f.value for f in rest_b}):
            out.append(Difference(kind, "", rest_a, rest_b))
    return out


def _same_name(a: str, b: str) -> bool:
    """'rossi' and 'mario rossi' name one person; 'rossi' and 'bianchi' do not."""
    wa, wb = set(a.split()), set(b.split())
    return wa <= wb or wb <= wa


def agree(a: str, b: str, lang: str | None = None) -> bool:
    """No fact stated by both texts differs: safe to merge them as one claim."""
    return not differences(a, b, lang)


def relevant(diffs: list[Difference], question_words: frozenset[str] | set[str]) -> list[Difference]:
    """The differences about what was asked ("quanti morti" → the one about "morti"), else all."""
    keyed = [d for d in diffs if d.key and d.key in question_words]
    return keyed or diffs


# -- versions -----------------------------------------------------------------------------------

RIVAL_OVERLAP = 0.5  # word overlap at which two sentences of different articles tell one fact


@dataclass
class Said:
    """A sentence as one source states it, with the answer's citation numbers for that source."""

    text: str
    article_id: str
    source: str = ""
    date: str = ""
    citations: list[int] = field(default_factory=list)


def close_in_time(a: str, b: str, days: int = CONFLICT_DAYS) -> bool:
    """Two reports of one event: dated within ``days`` (undated: assumed so)."""
    da, db = day_number(date_to_int(a)), day_number(date_to_int(b))
    return not da or not db or abs(da - db) <= days


def rivals(anchor: Said, others: list[Said], min_overlap: float = RIVAL_OVERLAP) -> list[Said]:
    """The sentences of other articles, about the same time, that tell the anchor's fact with
    mostly its words but state some fact differently."""
    mine = words(anchor.text)
    return [o for o in others
            if o.article_id != anchor.article_id and close_in_time(anchor.date, o.date)
            and overlap(mine, words(o.text)) >= min_overlap and differences(anchor.text, o.text)]


def _values(diff: Difference, side: tuple[Fact, ...]) -> str:
    shown = list(dict.fromkeys(f.value if diff.kind in ("score", "year") else f.text for f in side))
    return ", ".join(shown)


def conflict(anchor: Said, versions: list[Said], question: str = "") -> Conflict | None:
    """The disagreement between the anchor and its rivals on the fact that matters most (the one
    the question asks about, else the first): one version per value, each citing every source
    stating it, oldest first."""
    if not versions:
        return None
    asked = words(question)
    first = relevant(differences(anchor.text, versions[0].text), asked)
    if not first:
        return None
    target = first[0]
    by_value: dict[str, Version] = {}

    def add(value: str, said: Said) -> None:
        v = by_value.setdefault(value, Version(value=value, source=said.source, date=said.date, quote=said.text))
        if said.source and said.source not in v.source.split(", "):
            v.source = f"{v.source}, {said.source}" if v.source else said.source
        v.date = min(filter(None, (v.date, said.date)), default="")
        v.citations = sorted(set(v.citations) | set(said.citations))

    add(_values(target, target.a), anchor)
    for said in versions:
        diffs = [d for d in differences(anchor.text, said.text) if (d.kind, d.key) == (target.kind, target.key)]
        if diffs:
            add(_values(diffs[0], diffs[0].b), said)
    if len(by_value) < 2:
        return None
    ordered = sorted(by_value.values(), key=lambda v: (v.date or "9999", v.citations[:1]))
    claim = target.noun or ("%" if target.key == "%" else target.kind)
    return Conflict(claim=claim, kind=target.kind, versions=ordered)


def among(said: list[Said], question: str = "") -> list[Conflict]:
    """The disagreements among cited sentences (an LLM answer's quotes): each sentence in turn
    against the later ones, every article in one conflict at most."""
    out: list[Conflict] = []
    used: set[str] = set()
    for i, anchor in enumerate(said):
        if anchor.article_id in used:
            continue
        found: dict[str, Said] = {}
        for other in rivals(anchor, [s for s in said[i + 1:] if s.article_id not in used]):
            found.setdefault(other.article_id, other)
        disputed = conflict(anchor, list(found.values()), question) if found else None
        if disputed is not None:
            out.append(disputed)
            used |= {anchor.article_id, *found}
    return out


# -- saying it ----------------------------------------------------------------------------------

_WORDS = {
    "it": {"intro": "Le fonti non concordano: ", "by": "secondo", "later": "più tardi", "score": "il risultato è",
           "date": "la data è", "time": "l'ora è", "year": "l'anno è", "name": "", "are": "sono",
           "is": "è", "number": "il numero è"},
    "en": {"intro": "Sources disagree: ", "by": "according to", "later": "later", "score": "the score was",
           "date": "the date is", "time": "the time is", "year": "the year is", "name": "",
           "are": "", "is": "", "number": "the figure is"},
}


def _article(noun: str) -> str:
    """The Italian plural article for a noun: 'i morti', 'gli euro', 'le vittime'."""
    n = fold(noun)
    if not n or not n[0].isalpha():
        return ""
    if n.endswith("e"):
        return "le"
    if n[0] in "aeiouxyz" or n.startswith(("gn", "ps", "pn")) or (n[0] == "s" and len(n) > 1 and n[1] not in "aeiou"):
        return "gli"
    return "i"


def _value_text(conflict: Conflict, value: str, first: bool, lang: str) -> str:
    w = _WORDS["en" if lang == "en" else "it"]
    kind, noun = conflict.kind, conflict.claim if conflict.claim != conflict.kind else ""
    if kind == "number" and noun and noun != "%":
        if lang == "en" or fold(noun) in _CURRENCY.values() or fold(noun) in ("euro", "dollari", "sterline"):
            of = " di" if lang != "en" and value.split()[-1].isalpha() else ""  # "2 milioni di euro"
            return f"{value}{of} {noun}"
        art = _article(noun)
        return f"{art} {noun} {w['are']} {value}" if first and art else f"{w['are']} {value}"
    if kind == "number" and noun == "%":
        return f"{value}%"
    label = w.get(kind, "")
    if lang == "en":
        return f"{label} {value}" if first and label else value
    return f"{label} {value}" if first and label else (f"{w['is']} {value}" if kind in ("score", "date") else value)


def sentence(conflict: Conflict, lang: str = "it") -> str:
    """'Le fonti non concordano: secondo Il Messaggero (20 luglio 2025) i morti sono 3 [1]; secondo
    Latina Oggi (20 luglio 2025) sono 9 [2].' Versions in date order, a later one said to be so."""
    w = _WORDS["en" if lang == "en" else "it"]
    parts = []
    first_date = conflict.versions[0].date if conflict.versions else ""
    for i, v in enumerate(conflict.versions):
        outlet = v.source or "?"
        when = spoken(v.date, lang) if v.date else ""
        if i and v.date and first_date and v.date > first_date:
            when = f"{when}, {w['later']}"
        marks = "".join(f"[{n}]" for n in v.citations)
        sep = ", " if lang == "en" else " "
        head = f"{w['by']} {outlet}" + (f" ({when})" if when else "")
        parts.append(f"{head}{sep}{_value_text(conflict, v.value, i == 0, lang)} {marks}".strip())
    return w["intro"] + "; ".join(parts) + "."
