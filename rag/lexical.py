"""BM25 over chunks with bm25s, persisted next to the store and updated on ingest.

bm25s has no incremental add, so we keep the tokenised corpus (vocabulary ids, compact numpy)
and re-index it once per ingest batch: seconds at 100k chunks, never per query. Filters
(date range, source) become a weight mask so BM25 and Chroma see the same candidate set.

Besides the chunk text (which starts with the article's title), the title is indexed as a field
of its own: a news title names the subject, so a question's words met there weigh more
(``title_boost``). The query side is handled here too, never by changing ``rag.text.tokenize``
(shared with citations and the answerer): English names of places and competitions get their
Italian spelling, and optional pseudo-relevance feedback adds words of the first results.
``proximity`` scores how many of a question's adjacent word pairs a chunk has adjacent too.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import bm25s
import numpy as np
from bm25s.tokenization import Tokenized

from rag.text import fold, tokenize

TITLE_K1, TITLE_B = 1.2, 0.0  # titles are a few words: no length normalisation
PRF_DOCS = 3  # feedback documents for pseudo-relevance feedback
PRF_WEIGHT = 0.2  # weight of each expansion word against 1 for a word of the question
# a question of two words has one pair, and whether a chunk has it adjacent is all or nothing,
# said again by both words' own BM25 scores: proximity speaks from two pairs (three words) on
PROXIMITY_MIN_PAIRS = 2


@lru_cache(maxsize=1)
def _english_names() -> tuple[re.Pattern[str], dict[str, str]]:
    from rag.question import EN_IT

    table = {fold(en): it for en, it in EN_IT.items()}
    names = sorted(table, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(re.escape(n) for n in names) + r")\b"), table


def italian_names(query: str) -> list[str]:
    """Italian spellings of the English place and competition names in ``query``
    ("Ballon d'Or" -> "pallone d'oro"): an English question meets Italian articles on names."""
    pattern, table = _english_names()
    return [table[m] for m in dict.fromkeys(pattern.findall(fold(query)))]


def query_tokens(query: str, lang: str, expand: bool = False) -> list[str]:
    """The question's BM25 words: stems in its language; for another language than Italian also
    Italian stems (names are written the same) and, with ``expand``, the Italian names."""
    tokens = tokenize(query, lang)
    if lang != "it":
        tokens += [t for t in tokenize(query, "it") if t not in tokens]
        if expand:
            tokens += [t for name in italian_names(query) for t in tokenize(name, "it") if t not in tokens]
    return tokens


class LexicalIndex:
    FILES = ("meta.json", "tokens.npy", "offsets.npy", "date_int.npy", "title_tokens.npy", "title_offsets.npy")

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.lock = threading.Lock()  # guards the swap of a new index
        self.write_lock = threading.Lock()  # one writer at a time
        self.ids: list[str] = []
        self.article_ids: list[str] = []
        self.sources: list[str] = []
        self.date_int = np.zeros(0, dtype=np.int64)
        self.docs: list[np.ndarray] = []  # vocabulary ids per chunk (title, then text)
        self.titles: list[np.ndarray] = []  # vocabulary ids of each chunk's article title
        self.vocab: dict[str, int] = {}
        self.stamp = ""  # the store generation this index reflects (see rag.index)
        self.model: bm25s.BM25 | None = None
        self.title_model: bm25s.BM25 | None = None
        self.idf = np.zeros(0, dtype=np.float32)  # per vocabulary id, for proximity and feedback
        self._load()

    def __len__(self) -> int:
        return len(self.ids)

    # -- persistence ----------------------------------------------------------------------------

    def _load(self) -> None:
        if not (self.dir / "meta.json").exists():
            return
        try:
            meta = json.loads((self.dir / "meta.json").read_text(encoding="utf-8"))
            tokens = np.load(self.dir / "tokens.npy")
            offsets = np.load(self.dir / "offsets.npy")
            self.date_int = np.load(self.dir / "date_int.npy")
        except (OSError, ValueError, json.JSONDecodeError):
            return  # unreadable: start empty; the retriever resyncs from the store
        self.ids, self.article_ids, self.sources = meta["ids"], meta["article_ids"], meta["sources"]
        self.vocab, self.stamp = meta["vocab"], meta.get("stamp", "")
        self.docs = [tokens[offsets[i] : offsets[i + 1]] for i in range(len(self.ids))]
        try:
            title_tokens = np.load(self.dir / "title_tokens.npy")
            title_offsets = np.load(self.dir / "title_offsets.npy")
            self.titles = [title_tokens[title_offsets[i] : title_offsets[i + 1]] for i in range(len(self.ids))]
        except (OSError, ValueError, IndexError):
            # saved before titles were a field: searchable as before, and an unknown stamp makes
            # the index rebuild itself from the store at the next refresh
            self.titles = [np.zeros(0, dtype=np.int32) for _ in self.ids]
            self.stamp = ""
        self._reindex()

    def save(self, stamp: str = "") -> None:
        """Write to a temporary folder and swap it in, so a crash never leaves half an index."""
        with self.write_lock, self.lock:  # one consistent snapshot, never mid-update
            self.stamp = stamp or self.stamp
            ids, article_ids, sources, docs = self.ids, self.article_ids, self.sources, self.docs
            titles, date_int, vocab, stamp = self.titles, self.date_int, dict(self.vocab), self.stamp
        tmp = self.dir.with_name(self.dir.name + f".tmp{os.getpid()}-{threading.get_ident()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, arrays in (("", docs), ("title_", titles)):
            lengths = np.array([len(d) for d in arrays], dtype=np.int64)
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            tokens = np.concatenate(arrays).astype(np.int32) if arrays else np.zeros(0, np.int32)
            np.save(tmp / f"{name}tokens.npy", tokens)
            np.save(tmp / f"{name}offsets.npy", offsets)
        np.save(tmp / "date_int.npy", np.asarray(date_int, dtype=np.int64))
        meta = {"ids": ids, "article_ids": article_ids, "sources": sources, "vocab": vocab, "stamp": stamp}
        (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        old = self.dir.with_name(self.dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if self.dir.exists():
            self.dir.rename(old)
        tmp.rename(self.dir)
        shutil.rmtree(old, ignore_errors=True)

    # -- updates --------------------------------------------------------------------------------

    @staticmethod
    def _token_ids(tokens: Iterable[str], vocab: dict[str, int]) -> np.ndarray:
        """Ids of ``tokens`` in ``vocab``, adding the new ones."""
        return np.array([vocab.setdefault(t, len(vocab)) for t in tokens], dtype=np.int32)

    def update(
        self,
        add: Sequence[tuple[str, str, str, dict]] = (),
        remove: Iterable[str] = (),
    ) -> None:
        """``add`` holds (chunk_id, text, lang, metadata); re-adding an id replaces it.

        New lists are built and swapped in whole, so a search running meanwhile (the page
        answering during an upload) sees either the old index or the new one."""
        with self.write_lock:
            drop = set(remove) | {a[0] for a in add}
            keep = [i for i, cid in enumerate(self.ids) if cid not in drop]
            ids = [self.ids[i] for i in keep]
            article_ids = [self.article_ids[i] for i in keep]
            sources = [self.sources[i] for i in keep]
            docs = [self.docs[i] for i in keep]
            titles = [self.titles[i] for i in keep]
            dates = [int(d) for d in self.date_int[keep]] if keep else []
            for cid, text, lang, meta in add:
                ids.append(cid)
                article_ids.append(meta.get("article_id", ""))
                sources.append(meta.get("source", ""))
                dates.append(int(meta.get("date_int") or 0))
                docs.append(self._token_ids(tokenize(f"{meta.get('title', '')}\n{text}", lang), self.vocab))
                titles.append(self._token_ids(tokenize(meta.get("title", ""), lang), self.vocab))
            models = self._build(docs, titles, self.vocab)
            with self.lock:
                self.ids, self.article_ids, self.sources, self.docs = ids, article_ids, sources, docs
                self.titles = titles
                self.date_int = np.array(dates, dtype=np.int64)
                self.model, self.title_model, self.idf = models

    def clear(self) -> None:
        self.rebuild([], stamp="")

    def rebuild(self, rows: Sequence[tuple[str, str, str, dict]], stamp: str) -> None:
        """Replace everything (a fresh vocabulary too) in one swap: searches meanwhile see the
        old index, never an empty one."""
        with self.write_lock:
            vocab: dict[str, int] = {}
            ids, article_ids, sources, dates, docs, titles = [], [], [], [], [], []

            for cid, text, lang, meta in rows:
                ids.append(cid)
                article_ids.append(meta.get("article_id", ""))
                sources.append(meta.get("source", ""))
                dates.append(int(meta.get("date_int") or 0))
                docs.append(self._token_ids(tokenize(f"{meta.get('title', '')}\n{text}", lang), vocab))
                titles.append(self._token_ids(tokenize(meta.get("title", ""), lang), vocab))
            model, title_model, idf = self._build(docs, titles, vocab)
            with self.lock:
                self.ids, self.article_ids, self.sources, self.docs = ids, article_ids, sources, docs
                self.titles = titles
                self.date_int = np.array(dates, dtype=np.int64)
                self.vocab, self.model, self.title_model, self.idf, self.stamp = vocab, model, title_model, idf, stamp

    def _reindex(self) -> None:
        self.model, self.title_model, self.idf = self._build(self.docs, self.titles, self.vocab)

    @staticmethod
    def _build(docs: list[np.ndarray], titles: list[np.ndarray], vocabulary: dict[str, int]
               ) -> tuple[bm25s.BM25 | None, bm25s.BM25 | None, np.ndarray]:
        """The text model, the title model and each word's idf (Lucene's, as bm25s uses)."""
        if not docs:
            return None, None, np.zeros(0, dtype=np.float32)
        vocab = dict(vocabulary)
        vocab.setdefault("", len(vocab))
        model = bm25s.BM25()
        model.index(Tokenized(ids=[d.tolist() for d in docs], vocab=vocab), show_progress=False)
        title_model = None
        if any(len(t) for t in titles):
            title_model = bm25s.BM25(k1=TITLE_K1, b=TITLE_B)
            title_model.index(Tokenized(ids=[t.tolist() for t in titles], vocab=vocab), show_progress=False)
        present = [np.unique(d) for d in docs if len(d)]
        df = np.bincount(np.concatenate(present), minlength=len(vocab)) if present else np.zeros(len(vocab))
        idf = np.log1p((len(docs) - df + 0.5) / (df + 0.5)).astype(np.float32)
        return model, title_model, idf

    def positions(self) -> dict[str, int]:
        """chunk id -> row, rebuilt lazily after each update."""
        ids = self.ids
        cached = getattr(self, "_positions", None)
        if cached is None or cached[0] is not ids:
            cached = (ids, {cid: i for i, cid in enumerate(ids)})
            self._positions = cached
        return cached[1]

    def dates(self, ids: Iterable[str]) -> dict[str, int]:
        """chunk id -> YYYYMMDD (0 when undated), for the chunks held here."""
        with self.lock:
            pos, date_int = self.positions(), self.date_int
        return {cid: int(date_int[pos[cid]]) for cid in ids if cid in pos}

    def article_map(self) -> dict[str, str]:
        """chunk id → article id, rebuilt lazily after each update."""
        ids, article_ids = self.ids, self.article_ids
        cached = getattr(self, "_article_map", None)
        if cached is None or cached[0] is not ids:
            cached = (ids, dict(zip(ids, article_ids)))
            self._article_map = cached
        return cached[1]

    # -- search ---------------------------------------------------------------------------------

    def mask(self, since: int = 0, until: int = 0, source: str = "") -> np.ndarray | None:
        if not (since or until or source):
            return None
        m = np.ones(len(self.ids), dtype=bool)
        if since:
            m &= self.date_int >= since
        if until:
            m &= self.date_int <= until
        if source:
            m &= np.array([s == source for s in self.sources], dtype=bool)
        return m

    def search(
        self, query: str, lang: str, n: int, since: int = 0, until: int = 0, source: str = "", *,
        title_boost: float = 0.0, prf_terms: int = 0, expand: bool = False,
    ) -> list[tuple[str, float]]:
        """The ``n`` best chunks with a positive score. ``title_boost`` adds that share of the
        title field's score; ``prf_terms`` adds up to that many words of the first results
        (pseudo-relevance feedback); ``expand`` gives English names their Italian spelling."""
        with self.lock:  # a consistent view; updates build outside and swap under the lock
            model, title_model, ids, vocab = self.model, self.title_model, self.ids, self.vocab
            docs, idf = self.docs, self.idf
            mask = self.mask(since, until, source)
        if model is None or not ids:
            return []
        tokens = [t for t in query_tokens(query, lang, expand) if t in vocab]
        if not tokens:
            return []
        scores = model.get_scores(tokens)
        if title_boost and title_model is not None:
            scores = scores + title_boost * title_model.get_scores(tokens)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        if prf_terms > 0:
            extra = feedback_terms(scores, docs, idf, [vocab[t] for t in tokens], prf_terms)
            if extra:
                inverse = {i: t for t, i in vocab.items() if i in extra}
                more = model.get_scores([inverse[i] for i in extra])
                scores = scores + PRF_WEIGHT * (np.where(mask, more, 0.0) if mask is not None else more)
        return _top(ids, scores, n)

    def coverage(self, query: str, lang: str, expand: bool = False) -> float:
        """How much of the question BM25 can see: the idf mass of its words the index knows over
        the mass of all of them, an unknown word weighing as the rarest known one. A question
        whose names the articles spell otherwise ("Juve" for Juventus, "Italy" over Italian text)
        is matched on its common words only, and its BM25 ranking says little; 1 when every word
        is known (or the question has none)."""
        with self.lock:
            vocab, idf = self.vocab, self.idf
        tokens = query_tokens(query, lang, expand)
        if not tokens or not len(idf):
            return 1.0
        rarest = float(idf.max())
        known = [float(idf[vocab[t]]) for t in tokens if t in vocab and vocab[t] < len(idf)]
        unknown = len(tokens) - len(known)
        total = sum(known) + unknown * rarest
        return sum(known) / total if total > 0 else 1.0

    def proximity(self, query: str, lang: str, ids: Iterable[str]) -> dict[str, float]:
        """For each chunk, the idf-weighted share of the question's adjacent word pairs that are
        adjacent in the chunk too (stopwords are gone on both sides, so "allenatore della Roma"
        meets "allen rom"): a phrase of the question found as a phrase, in [0, 1]. The sequential
        dependence idea (Metzler and Croft, 2005) at the cost of a set lookup per candidate.
        Questions with fewer than ``PROXIMITY_MIN_PAIRS`` pairs score 0 everywhere."""
        with self.lock:
            vocab, idf, docs, pos = self.vocab, self.idf, self.docs, self.positions()
        q = [i if i < len(idf) else -1 for i in (vocab.get(t, -1) for t in tokenize(query, lang))]
        weight: dict[tuple[int, int], float] = {}
        for a, b in zip(q, q[1:]):
            weight[(a, b)] = (float(idf[a]) if a >= 0 else 0.0) / 2 + (float(idf[b]) if b >= 0 else 0.0) / 2
        total = sum(weight.values())
        known = [(a, b, w) for (a, b), w in weight.items() if a >= 0 and b >= 0 and w > 0]
        out = {cid: 0.0 for cid in ids if cid in pos}
        if not known or total <= 0 or len(weight) < PROXIMITY_MIN_PAIRS:
            return out
        size = max(len(vocab), 1) + 1
        wanted = {a * size + b: w for a, b, w in known}
        for cid in out:
            doc = docs[pos[cid]].astype(np.int64)
            if len(doc) > 1:  # a set of the chunk's pair codes: cheaper than numpy's isin on small arrays
                have = set((doc[:-1] * size + doc[1:]).tolist())
                out[cid] = sum(w for code, w in wanted.items() if code in have) / total
        return out


def feedback_terms(scores: np.ndarray, docs: Sequence[np.ndarray], idf: np.ndarray, query_ids: Sequence[int],
                   limit: int) -> list[int]:
    """RM3-style expansion: the ``limit`` words (vocabulary ids) weighing most in the first
    ``PRF_DOCS`` results, each result counted by its share of their scores, each word by its
    frequency in the result times its idf; words of the question are left out. Bounded (at most
    ``limit`` words from at most ``PRF_DOCS`` documents) and deterministic (ties by id)."""
    positive = int((scores > 0).sum())
    if limit <= 0 or positive == 0:
        return []
    k = min(PRF_DOCS, positive)
    top = np.argsort(-scores, kind="stable")[:k]
    shares = scores[top] / scores[top].sum()
    weight: dict[int, float] = {}
    skip = set(query_ids)
    for row, share in zip(top, shares):
        doc = docs[row]
        if not len(doc):
            continue
        words, counts = np.unique(doc, return_counts=True)
        for word, count in zip(words.tolist(), counts.tolist()):
            if word not in skip and word < len(idf):
                weight[word] = weight.get(word, 0.0) + float(share) * count / len(doc) * float(idf[word])
    ranked = sorted((w for w in weight if weight[w] > 0), key=lambda w: (-weight[w], w))
    return ranked[:limit]


def _top(ids: Sequence[str], scores: np.ndarray, n: int) -> list[tuple[str, float]]:
    n = min(n, int((scores > 0).sum()))
    if n <= 0:
        return []
    top = np.argpartition(-scores, n - 1)[:n]
    top = top[np.argsort(-scores[top], kind="stable")]
    return [(ids[i], float(scores[i])) for i in top]
