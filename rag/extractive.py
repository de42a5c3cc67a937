"""The offline answerer: the sentences of the retrieved articles that answer the question, in order.

No language model, so no paraphrase: the answer is one to four sentences quoted from the
articles (or their titles), each cited and dated by the caller. How a sentence is chosen:

* it must hold the kind of thing asked (a name for who, a place for where, a date for when, a
  number for how many, a score for a result), and be about the question's subject: every name
  the question uses must be in the sentence or its article's title;
* among those, meaning (e5 similarity of question and sentence, which also works from English
  to Italian), rare words shared with the question, the article's rank in retrieval and the
  sentence's place in its article (news puts the facts first) decide;
* a sentence that is itself a question is never an answer.

The first sentence is the one that answers; more are added only when they bring a new answer
(another name for a list) or strong evidence. One sentence told by two near-duplicate articles
appears once, citing both. For a question about the present state of things ("chi allena la
Roma?"), the newest source that answers leads and older answers follow as superseded; for other
questions, a newer article that changed the story is added as "since then". When no sentence
is about the subject, or none holds what is asked, the answerer declines: it never pads an
answer with sentences that merely share words with the question.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag import claims
from rag.embeddings import Embedder
from rag.models import Hit
from rag.question import Question, mentions, names_in
from rag.reader import Passage, Reader
from rag.text import STOPWORDS, fold, sentence_spans, tokenize
from rag.vector_cache import VectorCache

# -- what a sentence holds ---------------------------------------------------------------------

_MONTHS = (r"gennaio|febbraio|marzo|aprile|maggio|giugno|luglio|agosto|settembre|ottobre|novembre|dicembre|"
           r"january|february|march|april|may|june|july|august|september|october|november|december")
_WEEKDAYS = (r"luned[iì]|marted[iì]|mercoled[iì]|gioved[iì]|venerd[iì]|sabato|domenica|"
             r"monday|tuesday|wednesday|thursday|friday|saturday|sunday")
_DATE = re.compile(rf"\b(1[89]\d\d|20\d\d|{_MONTHS}|{_WEEKDAYS}|\d{{1,2}}/\d{{1,2}}(?:/\d{{2,4}})?|ieri|oggi|domani|"
                   r"stagione|settimana|giornata|estate|inverno|primavera|autunno|fine\s+(?:mese|anno)|"
                   r"yesterday|today|tomorrow|season|week|summer|winter)\b", re.I)
# a quantity once number words are digits (``claims.digits``), not a year; or a word that counts
_NUMBER = re.compile(r"\b(?!(?:1[89]|20)\d\d\b)\d[\d.,]*|\b(?:doppiett[ae]|triplett[ae]|decin[ae]|centinai[ao]|"
                     r"migliai[ao]|one|dozens?|hundreds|thousands|millions)\b", re.I)
_SCORE = re.compile(r"(?<![\d-])\d{1,2}\s*[-–]\s*\d{1,2}(?![\d-])")
_PLACE = re.compile(r"(?:\b(?:a|ad|in|presso|da|di|at|to|from|(?:a|da|de|ne|su)(?:l|llo|lla|ll['’]|i|gli|lle))\s*"
                    r"(?:[A-ZÀ-Ý][\w'’-]+)|\bstadi[oa]\b|\bstadium\b|\barena\b)")
_CAUSE = re.compile(r"\b(dopo|perch[eé]|a causa|per via|in seguito|visti?|dati|risultati|sconfitt\w+|"
                    r"because|after|due to|following)\b", re.I)
_CAPITAL = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-ZÀ-Ý][\w'’-]+)")
_BRACKETED = re.compile(r"\[(\d{1,3})\]")
# words that open sentences without being names (function words are in STOPWORDS already)
_OPENER_WORDS = ("dopo prima anche ora poi oggi ieri domani intanto inoltre tuttavia però quindi mentre durante "
                 "secondo già ancora sempre mai così ecco solo soltanto infatti insomma oltre proprio adesso allora "
                 "nonostante invece after before also now then today yesterday meanwhile however while during "
                 "according still already")
_OPENERS = STOPWORDS | frozenset(fold(w) for w in _OPENER_WORDS.split())
# "Roma e Milan", "Inter and Milan": the shape of an answer to "which clubs"
_NAME_PAIR = re.compile(r"\b[A-ZÀ-Ý][\w'’-]+(?:\s+[A-ZÀ-Ý][\w'’-]+)?\s*(?:,|\be\b|\bed\b|\band\b|&)\s*"
                        r"[A-ZÀ-Ý][\w'’-]+")

# how sentences are weighed is fitted (rag/extractive_model.json, python -m eval.fit_answerer); these
# are the choices around it, measured on the dev half of eval/sets/natural.jsonl and sample.jsonl
MARGIN = 0.35  # further sentences must score (probability) within this of the first
CURRENT_MARGIN = 0.30  # a newer source may lead a present-state answer within this of the best
DUPLICATE = 0.6  # word overlap at which two sentences say the same thing
SHORTLIST = 14  # sentences compared by meaning (embedding them is the slow part)
READER_SCALE = 5.0  # the reader's logit over this is its feature (clipped to +-3: a scale L2 treats like the others)
SINCE_DAYS = 45  # a newer article this much later can have changed the story
CLOSE_MEANING = 0.84  # e5 cosine of question and sentence that counts as asking about the same thing


@dataclass
class Candidate:
    hit_index: int
    start: int  # span within the hit's chunk; a title has (-1, -1)
    end: int
    text: str
    is_title: bool = False
    position: int = 0  # sentence index in the chunk (titles: 0)
    score: float = 0.0
    cover: float = 0.0
    typed: bool = False
    about: bool = False  # mentions every name of the question (sentence or title)
    predicate: bool = False  # shares what is asked about them: a word, or close meaning
    cosine: float = 0.0  # e5 similarity to the question (0 when not compared)
    cosine_z: float = 0.0  # the same, standardised over the compared candidates
    cosine_top: bool = False
    cover_own: float = 0.0  # like cover, without the title's help
    about_own: bool = False  # the names are in the sentence itself
    about_some: bool = False  # at least one of them is
    pred_frac: float = 0.0
    features: np.ndarray | None = None
    prob: float = 0.0  # how likely it answers the question
    timely: bool = True  # not about another year than the question's
    tokens: frozenset[str] = frozenset()
    names: list[str] = field(default_factory=list)  # names the question does not use (``new_names``)
    before: str = ""  # the sentences around it in its chunk: what the reader reads with it
    after: str = ""
    reading: float | None = None  # the reader's logit (None: not read)


@dataclass
class Pick:
    """One sentence of the answer; ``also`` are the same sentence in other articles."""

    candidate: Candidate
    role: str = "answer"  # answer | earlier | since
    also: list[Candidate] = field(default_factory=list)


@dataclass
class Extract:
    picks: list[Pick]
    reason: str = ""  # why it declined, for logs and the eval harness
    related: list[Candidate] = field(default_factory=list)  # declined: the closest passages, not an answer
    best: float | None = None  # the probability that the best sentence answers (None: nothing was scored)

    @property
    def declined(self) -> bool:
        return not self.picks


# -- candidates ---------------------------------------------------------------------------------


def candidates(hits: list[Hit], lang: str = "it", titles: bool = True) -> list[Candidate]:
    """Sentences of the hits (and each article's title once); a sentence seen in two overlapping
    chunks of one article counts once."""
    out: list[Candidate] = []
    seen: set[tuple[str, int]] = set()
    titled: set[str] = set()
    for i, hit in enumerate(hits):
        # a headline says what happened; a short label ("Super Bowl 50") only names a topic
        if titles and hit.title and hit.article_id not in titled and len(hit.title.split()) >= 5:
            titled.add(hit.article_id)
            if not hit.text.lstrip().startswith(hit.title):  # a .txt title is its first line already
                out.append(Candidate(i, -1, -1, hit.title, is_title=True))
        spans = sentence_spans(hit.text, lang)
        for n, (s, e) in enumerate(spans):
            sent = hit.text[s:e]
            key = (hit.article_id, hit.start + s)
            if len(sent.split()) >= 4 and key not in seen:
                seen.add(key)
                before = hit.text[spans[n - 1][0]:spans[n - 1][1]] if n else ""
                after = hit.text[spans[n + 1][0]:spans[n + 1][1]] if n + 1 < len(spans) else ""
                out.append(Candidate(i, s, e, sent, position=n + (1 if hit.start else 0) * 3,
                                     before=before, after=after))
    return out


def _words(text: str) -> frozenset[str]:
    return frozenset(tokenize(text, "it")) | frozenset(tokenize(text, "en"))


def holds_kind(question: Question, text: str) -> bool:
    """The sentence contains the kind of thing asked; questions without a kind accept anything."""
    kind = question.kind
    if kind == "who":
        return bool(new_names(question, text))
    if kind == "where":
        return bool(_PLACE.search(text))
    if kind == "when":
        return bool(_DATE.search(text))
    if kind == "how_many":  # a quantity, not a score ("2-0") or a year
        return bool(_NUMBER.search(claims.digits(_SCORE.sub(" ", text))))
    if kind == "result":
        return bool(_SCORE.search(text))
    return True


def new_names(question: Question, text: str, known: frozenset[str] | None = None) -> list[str]:
    """Names in the sentence that the question does not already use ("Dorival Júnior" is not new
    when the question says "Dorival").

    ``known``: the words its article writes capitalised inside a sentence (``capitalised_inside``).
    A sentence's first word is capitalised whatever it is, so alone it is a name only when the
    article also writes it so elsewhere ("Ranieri porta …" after "… per Ranieri"; not "Ignora
    tutte le istruzioni …")."""
    asked = fold(question.text)
    out = []
    for phrase, start, _end, _article in names_in(text):
        first = not text[:start].strip(" \t\n«»\"'“”‘’(")
        if first and fold(phrase.split()[0]) in _OPENERS:
            phrase = " ".join(phrase.split()[1:])  # "Dopo Carlo Ancelotti" → "Carlo Ancelotti"
            if not phrase:
                continue
        elif first and known is not None and " " not in phrase and fold(phrase) not in known:
            continue
        if any(mentions(phrase, n) for n in question.names) or fold(phrase) in asked:
            continue
        out.append(phrase)
    return out


_INSIDE = re.compile(r"(?<![.!?\n])(?<![.!?]\s)(?<![.!?]\s\s)(?<=[\s(«\"'“’,;:-])([A-ZÀ-Ý][\w'’-]+)")


def capitalised_inside(text: str) -> frozenset[str]:
    """The words ``text`` writes capitalised other than at a sentence's start (folded)."""
    return frozenset(fold(m.group(1)) for m in _INSIDE.finditer(text))


# -- scoring ------------------------------------------------------------------------------------


VECTORS = VectorCache()  # in memory; a Library passes its own, kept on disk


def _mentioned(question: Question, text: str, name: str, cross: bool) -> bool:
    return any(mentions(text, s) for s in question.spellings.get(name, [name])) or (cross and _close_name(text, name))


def _about(question: Question, context: str, cross: bool) -> bool:
    """Every name of the question occurs in the candidate's article (its title and what was
    retrieved of it): the sentence may say "il tecnico" where the article said "Conte"."""
    return all(_mentioned(question, context, n, cross) for n in question.names)


_YEAR = re.compile(r"\b(?:19|20)\d\d\b")


def _timely(question: Question, cand: Candidate, hit: Hit, context: str) -> bool:
    """A question about a given year, or about this season, is not answered by another year's news."""
    year = (hit.date or "")[:4]
    if question.years and not (question.years & (set(_YEAR.findall(context)) | {year})):
        return False
    mentioned = set(_YEAR.findall(cand.text))
    if question.this_period and year.isdigit() and mentioned:
        return any(int(y) >= int(year) - 1 for y in mentioned)
    return True


def _close_name(text: str, name: str) -> bool:
    """Across languages names change a little (Brazil/Brasile, Italy/Italia)."""
    words = set(re.findall(r"\w{3,}", fold(text)))
    for w in re.findall(r"\w+", fold(name)):
        if w in words or (len(w) >= 4 and any(
                abs(len(x) - len(w)) <= 3 and SequenceMatcher(None, w, x).ratio() >= 0.75 for x in words)):
            continue
        return False
    return True


FEATURES = ("bias", "cover", "cover_own", "pred_frac", "pred_any", "cos", "cos_z", "cos_top", "cos_known",
            "typed", "typed_who", "typed_where", "typed_when", "typed_number", "typed_result", "about_own",
            "about_some", "title", "lead_pos", "rank", "new_names", "cross", "cross_cos", "long", "plural_names",
            "newest_current", "cause_why", "name_pair", "reader")


def score(question: Question, cands: list[Candidate], hits: list[Hit], embedder: Embedder | None,
          query_vector: np.ndarray | None = None, vectors: VectorCache | None = None,
          reader: Reader | None = None) -> None:
    """Each candidate's probability of answering the question (``score``) and its flags.

    A cheap first pass (words, kind, position) picks the sentences worth embedding; the model
    (``rag/extractive_model.json``, fitted by ``python -m eval.fit_answerer``) then scores those
    from all their features. Candidates left out of the shortlist score 0."""
    if not cands:
        return
    df: dict[str, int] = {}
    for c in cands:
        c.tokens = _words(c.text)
        for t in c.tokens:
            df[t] = df.get(t, 0) + 1
    idf = {t: math.log(1 + len(cands) / (1 + n)) for t, n in df.items()}
    q_tokens = question.content
    q_weight = sum(idf.get(t, 1.5) for t in q_tokens) or 1.0
    cross = question.lang != "it"
    titles = {i: _words(h.title) for i, h in enumerate(hits)}
    predicate = question.predicate
    articles: dict[str, str] = {}
    known: dict[str, frozenset[str]] = {}
    for h in hits:
        articles[h.article_id] = articles.get(h.article_id, h.title) + "\n" + h.text
    pre: dict[int, float] = {}
    for c in cands:
        hit = hits[c.hit_index]
        own = sum(idf.get(t, 1.5) for t in q_tokens & c.tokens)
        from_title = sum(idf.get(t, 1.5) for t in (q_tokens & titles[c.hit_index]) - c.tokens)
        c.cover = min(1.0, (own + 0.5 * from_title) / q_weight)
        c.cover_own = min(1.0, own / q_weight)
        context = articles[hit.article_id]
        if hit.article_id not in known:
            known[hit.article_id] = capitalised_inside(context)
        c.names = new_names(question, c.text, known[hit.article_id])
        c.typed = bool(c.names) if question.kind == "who" else holds_kind(question, c.text)
        c.about_own = _about(question, c.text, cross)
        c.about_some = not question.names or any(_mentioned(question, c.text, n, cross) for n in question.names)
        # about the question's subject: its names in the sentence or the headline; with several
        # names, one in the sentence is enough when the article has the others
        c.about = _about(question, c.text if c.is_title else f"{c.text}\n{hit.title}", cross) or (
            len(question.names) > 1 and c.about_some and _about(question, context, cross))
        c.timely = _timely(question, c, hit, context)
        c.pred_frac = len(predicate & c.tokens) / len(predicate) if predicate else 1.0
        c.predicate = not predicate or (not cross and bool(predicate & c.tokens))
        s = 0.45 * c.cover + 0.25 * c.typed + 0.08 / (1 + c.hit_index)
        s += 0.05 if c.is_title else 0.10 / (1 + c.position) ** 0.5
        if c.text.rstrip().endswith("?"):
            s -= 1.0
        pre[id(c)] = s + (0.2 if c.about else 0.0)
    ranked = sorted(cands, key=lambda c: -pre[id(c)])
    chosen = ranked[:SHORTLIST] + [c for c in cands if c.hit_index < 3 and (c.is_title or c.position == 0)]
    shortlist = list({id(c): c for c in chosen}.values())
    if embedder is not None and shortlist:
        q = query_vector if query_vector is not None else embedder.embed_query(question.text)
        sims = (vectors or VECTORS).get(embedder, [c.text for c in shortlist]) @ np.asarray(q, dtype=np.float32)
        z = (sims - sims.mean()) / (sims.std() + 1e-6) if len(sims) > 1 else np.zeros_like(sims)
        top = float(sims.max())
        for c, cos, zz in zip(shortlist, sims, z):
            c.cosine, c.cosine_z, c.cosine_top = float(cos), float(zz), float(cos) >= top - 1e-6
            c.predicate = c.predicate or float(cos) >= CLOSE_MEANING
    if reader is not None and shortlist:
        cos = [c.cosine for c in shortlist] if is_e5(embedder) and all(c.cosine for c in shortlist) else None
        for c, z in zip(shortlist, reader.logits(question.text, [_passage(c, hits) for c in shortlist], cos)):
            c.reading = float(z)
    dates = sorted({h.date for h in hits if h.date}, reverse=True)
    rank_w, prob_w = model()
    for c in cands:
        if not any(c is x for x in shortlist):
            c.score, c.prob = -math.inf, 0.0
            continue
        x = features(question, c, hits, dates)
        c.features = x
        c.score = float(np.dot(rank_w, x))
        c.prob = float(1.0 / (1.0 + math.exp(-float(np.dot(prob_w, x)))))


def features(question: Question, c: Candidate, hits: list[Hit], dates: list[str]) -> np.ndarray:
    """The candidate as numbers, in ``FEATURES`` order."""
    kind = question.kind
    cross = question.lang != "it"
    date = hits[c.hit_index].date
    newest = 1.0 if date and dates and date == dates[0] else (0.5 if date in dates[:2] else 0.0)
    names = min(3, len(c.names)) / 3
    values = {
        "bias": 1.0, "cover": c.cover, "cover_own": c.cover_own, "pred_frac": c.pred_frac,
        "pred_any": float(c.predicate), "cos": (c.cosine - 0.8) * 10 if c.cosine else 0.0,
        "cos_z": c.cosine_z, "cos_top": float(c.cosine_top), "cos_known": float(c.cosine > 0),
        "typed": float(c.typed), "typed_who": float(c.typed and kind == "who"),
        "typed_where": float(c.typed and kind == "where"), "typed_when": float(c.typed and kind == "when"),
        "typed_number": float(c.typed and kind == "how_many"), "typed_result": float(c.typed and kind == "result"),
        "about_own": float(c.about_own), "about_some": float(c.about_some), "title": float(c.is_title),
        "lead_pos": 0.0 if c.is_title else 1.0 / (1 + c.position) ** 0.5, "rank": 1.0 / (1 + c.hit_index),
        "new_names": names, "cross": float(cross),
        "cross_cos": ((c.cosine - 0.8) * 10 if c.cosine else 0.0) * cross,
        "long": min(2.0, len(c.text.split()) / 40), "plural_names": float(question.plural) * names,
        "newest_current": newest * float(question.current),
        "cause_why": float(kind == "why" and bool(_CAUSE.search(c.text))),
        "name_pair": float(question.plural and any(
            not any(mentions(m.group(0), n) for n in question.names) for m in _NAME_PAIR.finditer(c.text))),
        "reader": 0.0 if c.reading is None else max(-3.0, min(3.0, c.reading / READER_SCALE)),
    }
    return np.array([values[f] for f in FEATURES], dtype=np.float64)


_DEFAULT_WEIGHTS = {"bias": -3.0, "cover": 2.0, "cover_own": 1.0, "pred_any": 1.0, "cos": 0.5, "cos_z": 0.4,
                    "typed": 1.5, "about_own": 0.5, "lead_pos": 0.5, "rank": 0.5, "new_names": 0.3}
MODEL_FILE = Path(__file__).with_name("extractive_model.json")


@lru_cache(maxsize=1)
def _model_file() -> dict:
    try:
        return json.loads(MODEL_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def model() -> tuple[np.ndarray, np.ndarray]:
    """(ranking weights, probability weights) in ``FEATURES`` order: the first orders a question's
    sentences, the second says how likely the chosen one answers (unfitted: a hand-set start)."""
    data = _model_file()
    out = []
    for key in ("rank_weights", "weights"):
        fitted = dict(zip(data.get("features", []), data.get(key, [])))
        table = fitted if set(fitted) == set(FEATURES) else _DEFAULT_WEIGHTS
        out.append(np.array([table.get(f, 0.0) for f in FEATURES], dtype=np.float64))
    return out[0], out[1]


def threshold() -> float:
    """Below this probability the best sentence is not an answer: decline."""
    return float(_model_file().get("threshold", 0.5))


# -- choosing -------------------------------------------------------------------------------------


def _same(a: Candidate, b: Candidate) -> bool:
    """Two sentences say the same thing: mostly the same words, and the same facts (numbers with
    what they count, scores, dates, names: ``rag.claims.agree``). "La Roma sceglie Juric" and
    "La Roma sceglie Gasperini", or "3 morti" and "9 morti", are not one claim citing both."""
    if not a.tokens or not b.tokens:
        return False
    if claims.overlap(a.tokens, b.tokens) < DUPLICATE:
        return False
    return claims.agree(a.text, b.text)


def _date(hits: list[Hit], c: Candidate) -> str:
    return hits[c.hit_index].date or ""


def _days_between(a: str, b: str) -> int:
    from rag.dates import date_to_int, day_number

    return day_number(date_to_int(b)) - day_number(date_to_int(a)) if a and b else 0


def may_answer(c: Candidate) -> bool:
    """The gates before the model: about the question's subject, holding what its kind asks,
    of the right time, and not itself a question. ``eval.fit_answerer`` fits on the same."""
    return c.about and c.typed and c.timely and not c.text.rstrip().endswith("?")


RELATED = 2  # closest passages listed under a decline


def answer(question: Question, hits: list[Hit], embedder: Embedder | None, vocabulary: dict[str, int] | None = None,
           query_vector: np.ndarray | None = None, max_sentences: int = 3, bounded: bool = False,
           trace: list | None = None, later: Callable[[str], list[Hit]] | None = None,
           vectors: VectorCache | None = None, reader: Reader | None = None,
           reader_threshold: float | None = None) -> Extract:
    """``bounded``: the question is limited in time (as of a date): no "since then" line.
    ``later``: a search for the question among articles after a date (see ``_since``).
    ``reader``: the trained reader (``rag.reader``); its score is one feature of the fitted model.
    ``reader_threshold``: the model's probability under which it declines (None: the fitted one).
    ``trace``: filled with every candidate, best first, to see why an answer came out as it did."""
    parts = list(answer_parts(question, hits, embedder, vocabulary, query_vector, max_sentences, bounded, trace,
                              later, vectors, reader, reader_threshold))
    if parts[0].declined:
        return parts[0]
    return Extract([p for part in parts for p in part.picks], best=parts[0].best)


def answer_parts(question: Question, hits: list[Hit], embedder: Embedder | None,
                 vocabulary: dict[str, int] | None = None, query_vector: np.ndarray | None = None,
                 max_sentences: int = 3, bounded: bool = False, trace: list | None = None,
                 later: Callable[[str], list[Hit]] | None = None,
                 vectors: VectorCache | None = None, reader: Reader | None = None,
                 reader_threshold: float | None = None) -> Iterator[Extract]:
    """``answer`` as it is decided: first the sentences that answer (or the reason to decline),
    then, after a second search, what changed since. Each part's picks are final when it is
    yielded (their order and the other articles that tell them too), so a reader can be shown
    the answer before the slower "since then" search ends."""
    if not hits:
        yield Extract([], "nothing retrieved")
        return
    unknown = unknown_names(question, vocabulary) if vocabulary is not None else []
    if unknown:
        yield Extract([], f"no article mentions {', '.join(unknown)}")
        return
    cands = candidates(hits, question.lang)
    score(question, cands, hits, embedder, query_vector, vectors, reader)
    usable = [c for c in cands if c.features is not None and may_answer(c)]
    closest = sorted((c for c in cands if c.features is not None and not c.text.rstrip().endswith("?")),
                     key=lambda c: -c.score)
    if trace is not None:
        trace.extend(sorted(cands, key=lambda c: -c.score))
    if not usable:
        about = [c for c in cands if c.about]
        if not about:
            yield Extract([], "no retrieved sentence is about " + ", ".join(question.names or ["the question"]),
                          related=_related(closest, hits), best=0.0)
        else:
            yield Extract([], f"no sentence about it holds what a '{question.kind}' question asks",
                          related=_related(closest, hits), best=0.0)
        return
    usable.sort(key=lambda c: -c.score)
    best = usable[0].prob  # the sentence that leads or declines: what the decline curve thresholds
    floor = threshold() if reader_threshold is None else reader_threshold
    if usable[0].prob < floor:
        yield Extract([], f"no sentence is likely enough to answer ({usable[0].prob:.2f} < {floor:.2f})",
                      related=_related(closest, hits), best=best)
        return
    lead = usable[0]
    usable = [c for c in usable if c.prob >= floor]
    if question.current:  # the newest source that answers leads, within a margin of the best
        close = [c for c in usable if c.prob >= lead.prob - CURRENT_MARGIN]
        lead = max(close, key=lambda c: (_date(hits, c), c.score))
    picks = [Pick(lead)]
    limit = max_sentences + (1 if question.plural else 0)
    names_given = set(map(fold, lead.names))
    for c in usable:
        if len(picks) >= limit:
            break
        if c.prob < lead.prob - MARGIN or any(c is p.candidate or _same(c, p.candidate) for p in picks):
            continue
        brings = set(map(fold, c.names)) - names_given
        if question.kind in ("who", "what", "yesno") and not brings and c.prob < lead.prob - MARGIN / 2:
            continue  # adds nothing to the answer
        if question.current and _date(hits, c) < _date(hits, lead):
            continue  # older answers: see below
        picks.append(Pick(c))
        names_given |= brings
    if question.current:  # the state just before the current one, as context: one is enough
        older = [c for c in usable if _date(hits, c) < _date(hits, lead) and c.prob >= lead.prob - MARGIN
                 and not any(_same(c, p.candidate) for p in picks)]
        if older:
            picks.append(Pick(max(older, key=lambda c: (_date(hits, c), c.score)), "earlier"))
    # an earlier answer reads after the current one (it was chosen after them); "since" comes last
    _also(picks, picks, cands, hits)
    yield Extract(picks, best=best)
    if not bounded:
        accept = None
        if reader is not None:
            e5 = is_e5(embedder)

            def accept(c: Candidate, cos: float) -> bool:
                cosines = [cos] if cos and e5 else None
                return float(reader.probabilities(question.text, [_passage(c, hits)], cosines)[0]) >= reader.threshold

        since = _since(question, hits, picks, embedder, later, query_vector, vectors, accept)
        if since:
            _also(since, picks + since, cands, hits)
            yield Extract(since)


def _also(picks: list[Pick], chosen: list[Pick], cands: list[Candidate], hits: list[Hit]) -> None:
    """The same sentence told by another article (one per article, none already chosen): cite both."""
    for p in picks:
        p.also = [c for c in cands if c.hit_index != p.candidate.hit_index
                  and hits[c.hit_index].article_id != hits[p.candidate.hit_index].article_id and _same(c, p.candidate)
                  and not any(c is q.candidate for q in chosen)]
        dedup: dict[str, Candidate] = {}
        for c in p.also:
            dedup.setdefault(hits[c.hit_index].article_id, c)
        p.also = list(dedup.values())


def _passage(c: Candidate, hits: list[Hit]) -> Passage:
    title = hits[c.hit_index].title or ""
    return Passage(c.text, "" if c.is_title else title, c.before, c.after)


def is_e5(embedder: Embedder | None) -> bool:
    """The answerer's embedder is e5, so its cosines are the ones the reader adds to its score
    (otherwise the reader computes them with its own e5)."""
    from rag.e5_onnx import NAMES
    from rag.embeddings import E5Embedder

    return embedder is not None and getattr(embedder, "name", "") in {E5Embedder.name, *NAMES.values()}


def _related(ranked: list[Candidate], hits: list[Hit]) -> list[Candidate]:
    """The closest passages of a declined question, one an article: what the articles do talk about."""
    out: list[Candidate] = []
    for c in ranked:
        if c.is_title:  # a passage of the article, not its headline (which the citation shows anyway)
            continue
        if all(hits[c.hit_index].article_id != hits[o.hit_index].article_id for o in out):
            out.append(c)
        if len(out) >= RELATED:
            break
    return out


# a change of state in news: someone leaves, joins, becomes, is appointed or sacked
_CHANGE = re.compile(r"\b(lasci\w*|diventa\w*|sar[àa]|nominat\w*|ufficial\w*|esonerat\w*|firma\w*|passa\w*|"
                     r"arriva\w*|addio|successor\w*|nuov[oaie]|leaves?|left|joins?|joined|becomes?|became|"
                     r"appointed|sacked|signs?|signed|new)\b", re.I)


def _first(spellings: list[str], text: str) -> float:
    """1 when the name opens the sentence: it is what the sentence is about."""
    head = " ".join(text.split()[:4])
    return float(any(mentions(head, s) for s in spellings))


def _since(question: Question, hits: list[Hit], picks: list[Pick], embedder: Embedder | None,
            later: Callable[[str], list[Hit]] | None, query_vector: np.ndarray | None,
            vectors: VectorCache | None = None,
            accept: Callable[[Candidate, float], bool] | None = None) -> list[Pick]:
    """Newer articles about the question's subjects may have changed the story: for each name
    (two at most), the sentence of the most relevant later articles where that name comes first
    and something happens to it, dated. ``later(date)`` retrieves for the question among
    articles published after ``date``; its hits are appended to ``hits`` for citing. ``accept``
    (the reader): a line is given only when it accepts the sentence as an answer."""
    if not question.names or later is None:
        return []
    newest = max(_date(hits, p.candidate) for p in picks)
    if not newest:
        return []
    fresh, seen = [], set()
    for h in later(newest):
        if h.article_id not in seen and _days_between(newest, h.date) >= SINCE_DAYS:
            seen.add(h.article_id)
            fresh.append(h)
    fresh = fresh[:3]
    pool = [c for c in candidates(fresh, question.lang) if not c.text.rstrip().endswith("?")]
    if not pool:
        return []
    sims = np.zeros(len(pool))
    if embedder is not None:
        q = query_vector if query_vector is not None else embedder.embed_query(question.text)
        sims = (vectors or VECTORS).get(embedder, [c.text for c in pool]) @ np.asarray(q, dtype=np.float32)
    out: list[Pick] = []
    offset = len(hits)
    hits.extend(fresh)
    for name in question.names[:2]:
        spellings = question.spellings.get(name, [name])
        scored = [(float(sim) + 0.04 * _first(spellings, c.text) + 0.03 * bool(_CHANGE.search(c.text))
                   - 0.01 * c.hit_index, float(sim), c) for sim, c in zip(sims, pool)
                  if any(mentions(c.text, s) for s in spellings) and not any(c is p.candidate for p in out)]
        if scored:
            _, sim, best = max(scored, key=lambda t: t[0])
            best.hit_index += offset
            if accept is not None and not accept(best, sim):
                best.hit_index -= offset
                continue
            out.append(Pick(best, "since"))
    out.sort(key=lambda p: _date(hits, p.candidate))
    return out


# -- declining ------------------------------------------------------------------------------------


def unknown_names(question: Question, vocabulary: dict[str, int]) -> list[str]:
    """Names in the question that no stored article uses: a question about the Tour de France
    cannot be answered from football news. Across languages a close word counts (Brazil)."""
    missing = []
    for name in question.names:
        spellings = question.spellings.get(name, [name])
        stems = [t for s in spellings for t in tokenize(s, "it") + tokenize(s, "en")]
        if not stems or any(t in vocabulary for t in stems):
            continue
        if question.lang != "it" and _in_vocabulary_fuzzy(name, vocabulary):
            continue
        if any(len(w) >= 4 and any(v.startswith(w) for v in vocabulary) for w in re.findall(r"\w+", fold(name))):
            continue  # a shortened name ("Kvara") of a stored one
        missing.append(name)
    return missing


def _in_vocabulary_fuzzy(name: str, vocabulary: dict[str, int]) -> bool:
    for w in re.findall(r"\w{4,}", fold(name)):
        if any(v[:3] == w[:3] and SequenceMatcher(None, w, v).ratio() >= 0.7 for v in vocabulary):
            return True
    return False


def neutralise_markers(text: str) -> str:
    """Square-bracketed numbers in an article ("eccessivi [7]") must not read as our citations."""
    return _BRACKETED.sub(r"(\1)", text)
