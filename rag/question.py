"""What a question asks: its kind (who, where, when, how many, a result...), its names, whether it
asks about the present state of things.

The extractive answerer and the follow-up rewriter both need this, and both must agree on it.
Only surface cues are used (interrogatives, capitals, articles, tense adverbs) in Italian and
English, because there is no language model to ask; each cue is general, none is tuned to a
particular question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from rag.text import STOPWORDS, detect_lang, fold, tokenize

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((kind, re.compile(p, re.I)) for kind, p in (
    ("result", r"\b(com['’]?\s*[eè]\s+finit[ao]|come\s+[eè]\s+finit[ao]|quanto\s+[eè]\s+finit[ao]|"
               r"com['’]?\s*[eè]\s+andat[ao]\s+(?:la|il|l['’])\s*(?:partita|finale|sfida|derby|andata|ritorno)|"
               r"risultat[oi]|punteggio|what\s+was\s+the\s+score|final\s+score|how\s+did\s+.+\s+do\s+against|"
               r"how\s+did\s+.+\s+end)\b"),
    ("how_many", r"\b(quant[oaie]|how\s+(?:many|much|long|old)|che\s+cifra|what\s+fee|what\s+salary)\b"),
    ("when", r"\b(quando|da\s+quanto|in\s+che\s+anno|in\s+quale\s+anno|che\s+giorno|when|what\s+year|"
             r"since\s+when|what\s+date)\b"),
    ("where", r"\b(dove|in\s+che\s+(?:citt[aà]|stadio|paese)|in\s+quale\s+(?:citt[aà]|stadio|paese)|where)\b"),
    ("why", r"\b(perch[eé]|per\s+quale\s+motivo|come\s+mai|why|how\s+come)\b"),
    ("who", r"\b(chi|who|whom|whose|quale\s+(?:squadra|club|allenatore|tecnico|giocatore|nazionale)|"
            r"quali\s+(?:squadre|club|allenatori|tecnici|giocatori|nazionali)|"
            r"which\s+(?:team|club|coach|player|manager|side)s?|what\s+(?:team|club)s?)\b"),
    ("what", r"\b(cosa|che\s+cosa|cos['’]|quale|quali|qual|what|which)\b"),
))
_YESNO_START = re.compile(
    r"^\s*(?:e\s+)?(?:[eè]|sono|ha|hanno|c['’][eè]|is|are|was|were|did|does|do|has|have|can|will|could)\b", re.I)
_PLURAL = re.compile(r"\b(quali|chi\s+sono|chi\s+erano|which\s+\w+s|what\s+\w+s|who\s+are|who\s+were|"
                     r"quante\s+e\s+quali)\b", re.I)
# the present state of things: a tense adverb, or a role asked for in the present tense
_NOW = re.compile(r"\b(ora|adesso|attualmente|ancora|oggi|ultim[oaie]|now|currently|still|today|latest|"
                  r"at\s+the\s+moment|these\s+days|will|going\s+to|alla\s+fine|infine|eventually|in\s+the\s+end|finally)\b",
                  re.I)
# the Italian future ("allenerà", "andranno") asks for the latest state as much as "adesso" does
_FUTURE = re.compile(r"\b\w{3,}(?:er|ir|ar|d)(?:à|anno)\b", re.I)
_PRESENT_ROLE = re.compile(
    r"\b(allena|guida|gioca|dirige|presiede|[eè]\s+(?:il|lo|la|l['’])\s*(?:ct|allenatore|tecnico|commissario|"
    r"presidente|capitano|campione|allenatrice)|[eè]\s+campione|sono\s+campioni|chi\s+c['’][eè]|"
    r"coaches|manages|leads|plays|holds|is\s+(?:the\s+)?\w*\s*(?:coach|manager|champion|captain|president)|"
    r"'s\s+(?:coach|manager|captain|president))\b", re.I)
_TOKEN = re.compile(r"[\w'’.-]+", re.UNICODE)
_THIS_PERIOD = re.compile(r"\b(quest['’]\s*anno|quest['’]\s*ann[oi]|questa\s+stagione|stagione\s+in\s+corso|"
                          r"this\s+(?:year|season))\b", re.I)
# words that ask nothing by themselves: tense and time adverbs, "fare", "happen"
_VAGUE_WORDS = ("ora adesso ancora oggi attualmente ultimo ultima fine now currently still today latest anno stagione "
                "year season fa fatto successo happened happen do did done make quest")
_VAGUE = set(tokenize(_VAGUE_WORDS, "it")) | set(tokenize(_VAGUE_WORDS, "en"))
_ELISION = re.compile(r"^(?:l|d|dell|all|dall|nell|sull|un|quest|quell)['’]", re.I)
_CONNECTORS = {"de", "di", "del", "della", "da", "van", "von", "der", "la", "le", "du", "des", "dos", "do",
               "of", "y", "e", "d'oro"}
_INTERROGATIVE_FIRST = {"chi", "cosa", "come", "com", "quale", "quali", "qual", "quando", "dove", "perche",
                        "quanto", "quanti", "quante", "quanta", "who", "what", "which", "when", "where", "why",
                        "how", "whose", "whom", "and", "e", "ed", "invece", "did", "does", "do", "is", "are",
                        "was", "were", "has", "have", "can", "will", "da", "in", "a", "per", "con", "tra", "fra"}


# English names of places and competitions that Italian articles spell their own way; names that
# are the same in both languages (clubs, people) need nothing. Only for matching, never shown.
EN_IT = {
    "brazil": "brasile", "italy": "italia", "spain": "spagna", "germany": "germania", "france": "francia",
    "england": "inghilterra", "norway": "norvegia", "netherlands": "olanda", "holland": "olanda",
    "switzerland": "svizzera", "belgium": "belgio", "croatia": "croazia", "portugal": "portogallo",
    "argentina": "argentina", "mexico": "messico", "saudi arabia": "arabia saudita", "scotland": "scozia",
    "wales": "galles", "ireland": "irlanda", "greece": "grecia", "turkey": "turchia", "japan": "giappone",
    "united states": "stati uniti", "usa": "stati uniti", "moldova": "moldavia", "poland": "polonia",
    "denmark": "danimarca", "sweden": "svezia", "austria": "austria", "hungary": "ungheria",
    "munich": "monaco", "rome": "roma", "milan": "milano", "naples": "napoli", "turin": "torino",
    "florence": "firenze", "genoa": "genova", "venice": "venezia", "lisbon": "lisbona", "london": "londra",
    "paris": "parigi", "riyadh": "riad", "jeddah": "gedda", "seville": "siviglia", "athens": "atene",
    "world cup": "mondiale", "club world cup": "mondiale per club", "italian cup": "coppa italia",
    "copa del rey": "coppa del re", "super cup": "supercoppa", "supercup": "supercoppa",
    "ballon d'or": "pallone d'oro", "league": "campionato", "european championship": "europeo",
}


@dataclass
class Question:
    text: str
    lang: str
    kind: str
    plural: bool = False
    current: bool = False
    names: list[str] = field(default_factory=list)  # as written: "Real Madrid", "Ancelotti"
    content: set[str] = field(default_factory=set)  # stems, Italian and English
    name_tokens: set[str] = field(default_factory=set)  # stems of the names
    predicate: set[str] = field(default_factory=set)  # what is asked about the names ("allen", "segn")
    years: set[str] = field(default_factory=set)  # explicit years: "il Pallone d'Oro 2025"
    spellings: dict[str, list[str]] = field(default_factory=dict)  # name → how Italian articles write it
    this_period: bool = False  # "quest'anno", "this season": the period of the newest articles


def _strip_elision(word: str) -> str:
    return _ELISION.sub("", word)


def names_in(text: str) -> list[tuple[str, int, int, bool]]:
    """Capitalised sequences ("Gian Piero Gasperini", "Tour de France"; "Norvegia-Italia" is two),
    each with its span and whether an article stands before it (Italian clubs, competitions and
    places take one, people do not). The first word counts only when it is not a question or
    function word."""
    out: list[tuple[str, int, int, bool]] = []
    tokens = [(m.group(0), m.start(), m.end()) for m in _TOKEN.finditer(text)]
    i = 0
    while i < len(tokens):
        raw, start, end = tokens[i]
        elision = _ELISION.match(raw)
        core = start + (elision.end() if elision else 0)
        word = text[core:end].strip(".'’-")
        head = fold(re.split(r"['’]", word)[0]) if word else ""
        if not (word[:1].isupper() and any(c.isalpha() for c in word)) or (
                i == 0 and head in _INTERROGATIVE_FIRST | STOPWORDS):
            i += 1
            continue
        j, last = i + 1, end
        while j < len(tokens):  # extend over capitalised words and short connectors
            nxt = tokens[j][0]
            if nxt[:1].isupper() and any(c.isalpha() for c in nxt):
                last = tokens[j][2]
                j += 1
            elif fold(nxt) in _CONNECTORS and j + 1 < len(tokens) and tokens[j + 1][0][:1].isupper():
                j += 1
            else:
                break
        phrase = re.sub(r"['’]s$", "", text[core:last].rstrip(".,;:?!-")).rstrip("'’")
        before = text[max(0, start - 6):start].lower()
        article = (elision is not None and elision.group(0).lower()[:2] != "d'") or bool(
            re.search(r"\b(il|lo|la|i|gli|le|the|(?:a|da|di|de|in|ne|su)(?:l|lla|llo|i|gli|lle))\s+$", before))
        for part in re.split(r"(?<=\w)-(?=[A-ZÀ-Ý])", phrase):
            if part:
                ps = core + phrase.find(part)
                out.append((part, ps, ps + len(part), article))
        i = j
    return out


def analyse(text: str, lang: str | None = None) -> Question:
    text = " ".join(text.split())
    lang = lang or detect_lang(text)
    kind = next((k for k, p in _PATTERNS if p.search(text)), "")
    if not kind:
        # no question word: "Sinner ha vinto il Roland Garros?" asks yes or no; a bare topic does not
        kind = "yesno" if text.rstrip().endswith("?") else "what"
    if kind in ("what", "who") and _YESNO_START.search(text) and not re.search(
            r"\b(chi|cosa|quale|quali|who|what|which)\b", text, re.I):
        kind = "yesno"
    found = names_in(text)
    q = Question(text=text, lang=lang, kind=kind)
    q.names = [n for n, *_ in found]
    q.plural = bool(_PLURAL.search(text))
    q.current = bool(_NOW.search(text) or _PRESENT_ROLE.search(text) or _FUTURE.search(text)
                     or re.search(r"\b(va|vanno|goes|is\s+going)\b", text, re.I))
    q.content = set(tokenize(text, lang)) | set(tokenize(text, "it"))
    q.spellings = {n: [n] + ([EN_IT[fold(n)]] if fold(n) in EN_IT else []) for n in q.names}
    for english, italian in EN_IT.items():  # "World Cup", "Ballon d'Or": lower-case words of a name too
        if " " in english and english in fold(text) and not any(fold(n) == english for n in q.names):
            q.spellings.setdefault(english, [english, italian])
    q.name_tokens = {t for n in q.names for t in tokenize(n, "it") + tokenize(n, "en")}
    # the words that say what is asked, without the question's own phrase ("com'è finita")
    asked = text
    for _kind, pattern in _PATTERNS:
        asked = pattern.sub(" ", asked)
    q.predicate = {t for t in (set(tokenize(asked, lang)) | set(tokenize(asked, "it"))) - q.name_tokens - _VAGUE
                   if not t.isdigit()}
    q.years = set(re.findall(r"\b(?:19|20)\d\d\b", text))
    for start, end in re.findall(r"\b((?:19|20)\d\d)\s*[-/–]\s*(\d\d)\b", text):  # a season: "2024-25"
        q.years.add(start[:2] + end)
    q.this_period = bool(_THIS_PERIOD.search(text))
    return q


@lru_cache(maxsize=4096)
def _fold_words(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"\w+", fold(text)))


def mentions(text: str, name: str) -> bool:
    """Every word of the name occurs in the text (accents and case folded), as it is, by its stem
    ("Clasico" / "Clasici"), or as the start of a longer word ("Kvara" / "Kvaratskhelia")."""
    words = _fold_words(text)
    stems = _stems(text)
    for w in re.findall(r"\w+", fold(name)):
        if w in words or any(t in stems for t in tokenize(w, "it")):
            continue
        if len(w) >= 4 and any(x.startswith(w) and len(x) - len(w) >= 3 for x in words):
            continue  # a shortened name ("Kvara"), not an inflection ("Italia" / "italiano")
        return False
    return True


@lru_cache(maxsize=4096)
def _stems(text: str) -> frozenset[str]:
    return frozenset(tokenize(text, "it"))
