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
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")


def clean(text: str) -> str:
    """Normalise what arrives from files: NFC, no zero-width characters, tidy blank lines."""
    text = unicodedata.normalize("NFC", text)
    text = _ZERO_WIDTH.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def fold(text: str) -> str:
    """Lower-case without accents: for matching, never for display."""
    nfkd = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in nfkd if not unicodedata.combining(c))


def sentence_spans(text: str, lang: str = "it") -> list[tuple[int, int]]:
    """Character spans of sentences, trailing whitespace trimmed, paragraph breaks dropped."""
    spans = []
    for b in sentencex.get_sentence_boundaries(lang if lang in SUPPORTED_LANGS else "it", text):
        start, end = b["start_index"], b["end_index"]
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
