"""Language-aware text helpers shared by parsing, chunking, BM25, answers and summaries.

``tokenize`` lives here, not in the BM25 module, because everything that compares words
(citations, the extractive answerer, stories, summaries) must fold, stem and drop stopwords the
same way BM25 does, or a word found by search would be "missing" from the sentence quoting it.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import sentencex
import Stemmer
from bm25s.stopwords import STOPWORDS_EN, STOPWORDS_ITALIAN

SUPPORTED_LANGS = ("it", "en")
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff]")
# a run of spaces, tabs, form feeds or no-break spaces, except a lone space (the common case is left
# alone, so a 10 MB line is not rebuilt one word at a time); each run becomes one space
_SPACES = re.compile(r"[\t\f\v\u00a0][ \t\f\v\u00a0]*| [ \t\f\v\u00a0]+")
# C0 and C1 control characters other than tab, newlines and the spaces above: JSON can spell a NUL
# as \\u0000 in a perfectly valid file, and nothing a reader should see is made of them
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # lone halves (from JSON escapes) cannot be stored as UTF-8


def clean(text: str) -> str:
    """Normalise what arrives from files: NFC, no zero-width or control characters, no lone
    surrogates (each becomes U+FFFD), tidy blank lines."""
    text = unicodedata.normalize("NFC", _SURROGATE.sub("\ufffd", text))
    text = _CONTROL.sub("", _ZERO_WIDTH.sub("", text)).replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def fold(text: str) -> str:
    """Lower-case without accents: for matching, never for display."""
    nfkd = unicodedata.normalize("NFKD", text.lower())
    if nfkd.isascii():
        return nfkd
    # the same as dropping combining characters one by one, but each distinct character is looked
    # at once and the removal runs in the regex engine (a 10 MB article: 1.8 s instead of 3)
    marks = "".join(re.escape(c) for c in set(nfkd) if unicodedata.combining(c))
    return re.sub(f"[{marks}]", "", nfkd) if marks else nfkd


SEGMENT_CHARS = 4000  # longest stretch handed to sentencex in one call
_PARAGRAPH = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"[.!?…][\"'»”’)\]]*\s+")
_LINE_END = re.compile(r"\n")
_SPACE = re.compile(r"\s+")


def segments(text: str, limit: int = SEGMENT_CHARS) -> list[tuple[int, int]]:
    """Cover ``text`` with consecutive spans of at most ``limit`` characters, cut where a sentence
    most likely ends: at a blank line, else after the last stop, else at a line end, else at a
    space, and only when there is none of those, anywhere.

    sentencex takes time quadratic in the length of a paragraph (8 s for a one-line 400 KB text,
    minutes for 10 MB), while its work on short paragraphs is linear in their number. Its own
    paragraph breaks are blank lines, so cutting there changes nothing; a cut inside a paragraph
    over ``limit`` characters falls where sentencex would nearly always cut too.
    """
    out: list[tuple[int, int]] = []
    start, n = 0, len(text)
    while start < n:
        if n - start <= limit:
            out.append((start, n))
            break
        window = text[start : start + limit]
        cut = 0
        for pattern in (_PARAGRAPH, _SENTENCE_END, _LINE_END, _SPACE):
            cut = _last_end(pattern, window, limit // 4)  # not so early that pieces get tiny
            if cut:
                break
        cut = cut or limit
        out.append((start, start + cut))
        start += cut
    return out


def _last_end(pattern: re.Pattern, text: str, pos: int) -> int:
    end = 0
    for match in pattern.finditer(text, pos):
        end = match.end()
    return end


def sentence_spans(text: str, lang: str = "it") -> list[tuple[int, int]]:
    """Character spans of sentences, trailing whitespace trimmed, paragraph breaks dropped.

    Time is linear in the length of the text: sentencex sees it in bounded ``segments``."""
    code = lang if lang in SUPPORTED_LANGS else "it"
    spans = []
    for offset, stop in segments(text):
        piece = text[offset:stop]
        for b in sentencex.get_sentence_boundaries(code, piece):
            start, end = offset + b["start_index"], offset + b["end_index"]
            while end > start and text[end - 1].isspace():
                end -= 1
            while start < end and text[start].isspace():
                start += 1
            if end > start:
                spans.append((start, end))
    return spans


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE)
    ident.set_languages(["it", "en", "es", "fr", "de", "pt"])
    return ident


_IT_HINTS = re.compile(
    r"\b(che|chi|quali?|quando|dove|perch[eé]|come|quanti?|il|lo|la|gli|le|della|del|e|è|sono|"
    r"vogliono|cosa|ha|hanno)\b",
    re.I,
)
_EN_HINTS = re.compile(
    r"\b(the|which|who|what|when|where|why|how|is|are|does|did|was|were|want|wants|of|and)\b", re.I
)


def detect_lang(text: str) -> str:
    """ISO 639-1 code. Short questions fool n-gram models, so count function words first."""
    sample = text[:2000]
    it, en = len(_IT_HINTS.findall(sample)), len(_EN_HINTS.findall(sample))
    if len(sample) < 200 and it != en:
        return "it" if it > en else "en"
    lang, _ = _identifier().classify(sample)
    return lang


_WORD = re.compile(r"\w+", re.UNICODE)
_QUESTION_WORDS = (
    "quale", "quali", "chi", "cosa", "come", "quando", "dove", "perche", "quanto", "quanti", "quante",
    "quanta", "which", "who", "whom", "what", "when", "where", "why", "how", "many", "much",
)
STOPWORDS = frozenset(fold(w) for w in (*STOPWORDS_ITALIAN, *STOPWORDS_EN, *_QUESTION_WORDS))
_STEMMER_NAMES = {"it": "italian", "en": "english", "es": "spanish", "fr": "french",
                  "de": "german", "pt": "portuguese"}


@lru_cache(maxsize=8)
def _stemmer(lang: str) -> Stemmer.Stemmer:
    return Stemmer.Stemmer(_STEMMER_NAMES.get(lang, "italian"))


def tokenize(text: str, lang: str = "it") -> list[str]:
    """Fold accents and case, drop stopwords and one-letter elisions (l', d'), stem by language."""
    words = [w for w in _WORD.findall(fold(text)) if len(w) > 1 and w not in STOPWORDS]
    return _stemmer(lang).stemWords(words)
