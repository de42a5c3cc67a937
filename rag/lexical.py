"""BM25 over chunks with tantivy: one index on disk per home, updated in place, read by every
process of that home.

tantivy indexes in segments: an update deletes and adds only the chunks it names and commits
(a new segment, merged in the background), so a write costs what it writes, not what is stored.
A commit is atomic (tantivy swaps its ``meta.json``): a killed write leaves the last commit, never
half of one. Each process reads through a searcher that it reloads only when the store's
generation moves (``reload``), so a search sees one commit from start to end. The generation the
files reflect is kept next to them in ``stamp``, written after the commit; ``rag.index`` compares
it with the store's and applies what changed since (or rebuilds, see there).

Words are ours, not tantivy's: ``rag.text.tokenize`` (folded, stemmed, stopwords dropped, shared
with citations and the answerer) makes the terms, indexed with tantivy's whitespace tokenizer.
Fields: ``body`` (the title, then the chunk text, with positions), ``title`` (the article's title:
a news title names the subject, so a question's words met there weigh more, ``title_boost``),
``date_int`` and ``source`` (filters, so BM25 and Chroma see the same candidate set), ``id`` and
``article_id``, and ``hit`` (stored, not indexed: the chunk's text and metadata as Chroma holds
them, so a chunk found only by BM25 needs no second request to Chroma). The engine scores
(BM25), boosts fields, filters, matches phrases (the ``proximity`` bonus: a question's adjacent
word pairs found adjacent) and counts documents per word (idf, for proximity, coverage and
feedback).

The query side is handled here too, never by changing ``rag.text.tokenize``: English names of
places and competitions get their Italian spelling, and optional pseudo-relevance feedback adds
words of the first results.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import threading
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import tantivy

from rag.text import fold, tokenize

PRF_DOCS = 3  # feedback documents for pseudo-relevance feedback
PRF_WEIGHT = 0.2  # weight of each expansion word against 1 for a word of the question
# a question of two words has one pair, and whether a chunk has it adjacent is all or nothing,
# said again by both words' own BM25 scores: proximity speaks from two pairs (three words) on
PROXIMITY_MIN_PAIRS = 2
WRITER_HEAP = 64_000_000  # bytes tantivy buffers before it writes a segment
STAMP = "stamp"
SCHEMA = "schema"  # file holding SCHEMA_VERSION: an index of another schema is rebuilt
SCHEMA_VERSION = "2"  # 2: the stored ``hit`` field

Q, Occur = tantivy.Query, tantivy.Occur
Row = tuple[str, str, str, dict]  # (chunk id, text, lang, metadata)


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




def _schema() -> tantivy.Schema:
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("id", stored=True, tokenizer_name="raw")
    sb.add_text_field("article_id", stored=True, tokenizer_name="raw")
    sb.add_text_field("source", tokenizer_name="raw")
    sb.add_integer_field("date_int", stored=True, indexed=True, fast=True)
    sb.add_text_field("body", stored=True, tokenizer_name="whitespace", index_option="position")
    sb.add_text_field("title", tokenizer_name="whitespace", index_option="freq")
    sb.add_bytes_field("hit", stored=True)
    return sb.build()


def _document(row: Row) -> tantivy.Document:
    """The one way a chunk becomes a tantivy document, for ingest and for a rebuild alike."""
    cid, text, lang, meta = row
    title = meta.get("title", "") or ""
    return tantivy.Document(
        id=cid, article_id=meta.get("article_id", "") or "", source=meta.get("source", "") or "",
        date_int=int(meta.get("date_int") or 0),
        body=" ".join(tokenize(f"{title}\n{text}", lang)), title=" ".join(tokenize(title, lang)),
        hit=json.dumps([text, meta], ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def _keep(doc: tantivy.Document, held: dict[str, tuple[str, int]]) -> str:
    """Note a stored chunk's article and date; its id."""
    if len(held) > 200_000:  # a long-running server touches the whole archive in time
        held.clear()
    cid = doc["id"][0]
    held[cid] = (doc["article_id"][0] if doc["article_id"] else "", int(doc["date_int"][0]))
    return cid


class LexicalIndex:
    """The home's tantivy index. ``stamp`` is the store generation this process's searcher
    reflects; the files may be ahead of it until ``reload``."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.schema = _schema()
        self.lock = threading.Lock()  # guards the swap of a new searcher
        self.write_lock = threading.Lock()  # one writer at a time in this process
        self._index = self._open()
        self.stamp = ""
        self.reload()

    def _open(self) -> tantivy.Index:
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            if (self.dir / SCHEMA).read_text(encoding="utf-8").strip() == SCHEMA_VERSION and \
                    tantivy.Index.exists(str(self.dir)):
                return tantivy.Index.open(str(self.dir))
        except (OSError, ValueError):
            pass
        # nothing, or an index of another format (bm25s before tantivy, an older schema): start
        # empty; the unknown stamp makes rag.index rebuild it from the store
        for child in self.dir.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        index = tantivy.Index(self.schema, path=str(self.dir))
        (self.dir / SCHEMA).write_text(SCHEMA_VERSION, encoding="utf-8")
        return index

    def __len__(self) -> int:
        return self._searcher.num_docs

    # -- persistence ----------------------------------------------------------------------------

    def disk_stamp(self) -> str:
        """The generation the committed files reflect."""
        try:
            return (self.dir / STAMP).read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    def reload(self) -> None:
        """See the last commit (by any process of this home) and the stamp written with it."""
        with self.lock:
            stamp = self.disk_stamp()  # read first: files at least as new as the stamp
            self._index.reload()
            self._searcher = self._index.searcher()
            self._idf: dict[str, float] = {}
            self._vocab: dict[str, int] | None = None
            # chunk id -> (article id, date) and ids not held, for this searcher: swapped with it
            self._view: tuple[tantivy.Searcher, dict[str, tuple[str, int]], set[str]] = (
                self._searcher, {}, set())
            self.stamp = stamp

    def save(self, stamp: str = "") -> None:
        """Record the generation the committed files reflect (written after the commit, by
        rename: a crash in between leaves the older stamp, and the delta since is applied again,
        which changes nothing that is already there)."""
        self.stamp = stamp or self.stamp
        tmp = self.dir / f"{STAMP}.tmp{os.getpid()}-{threading.get_ident()}"
        tmp.write_text(self.stamp, encoding="utf-8")
        tmp.replace(self.dir / STAMP)

    # -- updates --------------------------------------------------------------------------------

    def _write(self, rows: Iterable[Row], remove: Iterable[str] = (), articles: Iterable[str] = (),
               everything: bool = False, threads: int = 1) -> None:
        with self.write_lock:
            writer = self._index.writer(heap_size=WRITER_HEAP * max(1, threads), num_threads=threads)
            try:
                if everything:
                    writer.delete_all_documents()
                for cid in remove:
                    writer.delete_documents_by_term("id", cid)
                for aid in articles:
                    writer.delete_documents_by_term("article_id", aid)
                for row in rows:
                    writer.add_document(_document(row))
                writer.commit()
                writer.wait_merging_threads()  # hands the lock back; merges finish first
            except BaseException:
                writer.rollback()
                raise
        stamp = self.stamp
        self.reload()
        self.stamp = stamp  # the caller saves the new stamp once it is the store's

    def update(self, add: Sequence[Row] = (), remove: Iterable[str] = (), articles: Iterable[str] = ()) -> None:
        """``add`` holds (chunk_id, text, lang, metadata); re-adding an id replaces it. ``remove``
        names chunks, ``articles`` articles whose every chunk goes (before ``add`` comes in).
        One commit: searches meanwhile see the index before it, then after it."""
        self._write(add, remove=[*remove, *(r[0] for r in add)], articles=articles)

    def clear(self) -> None:
        self.rebuild([], stamp="")

    def rebuild(self, rows: Iterable[Row], stamp: str) -> None:
        """Replace everything in one commit: searches meanwhile see the old index, never an
        empty one."""
        self._write(rows, everything=True, threads=2)
        self.save(stamp)

    # -- lookups --------------------------------------------------------------------------------

    def _docs(self, ids: Iterable[str]) -> dict[str, tuple[str, int]]:
        """chunk id -> (article id, YYYYMMDD) for the chunks of ``ids`` held here. What one
        searcher holds never changes, so answers are kept until the next reload (a question
        asks about the same candidates for dense, proximity and dates)."""
        ids = list(dict.fromkeys(ids))
        searcher, held, absent = self._view
        missing = [cid for cid in ids if cid not in held and cid not in absent]
        if missing:
            found = searcher.search(Q.term_set_query(self.schema, "id", missing), limit=len(missing), count=False)
            for _, address in found.hits:
                _keep(searcher.doc(address), held)
            if len(absent) > 200_000:
                absent.clear()
            absent.update(cid for cid in missing if cid not in held)
        return {cid: held[cid] for cid in ids if cid in held}

    def stored(self, ids: Sequence[str]) -> dict[str, tuple[str, dict]]:
        """chunk id -> (text, metadata) as Chroma holds them, for the chunks of ``ids`` committed
        here (the few hits of a question that only BM25 found: no request to Chroma)."""
        if not ids:
            return {}
        searcher = self._view[0]
        found = searcher.search(Q.term_set_query(self.schema, "id", list(ids)), limit=len(ids), count=False)
        out: dict[str, tuple[str, dict]] = {}
        for _, address in found.hits:
            doc = searcher.doc(address)
            if doc["hit"]:
                text, meta = json.loads(bytes(doc["hit"][0]).decode("utf-8"))
                out[doc["id"][0]] = (text, meta)
        return out

    def lookup(self, ids: Iterable[str]) -> dict[str, str]:
        """chunk id -> article id, for the chunks of ``ids`` that are committed (held here)."""
        return {cid: v[0] for cid, v in self._docs(ids).items()}

    def article_of(self, chunk_id: str) -> str:
        got = self._docs([chunk_id]).get(chunk_id)
        return got[0] if got else ""

    def dates(self, ids: Iterable[str]) -> dict[str, int]:
        """chunk id -> YYYYMMDD (0 when undated), for the chunks held here."""
        return {cid: v[1] for cid, v in self._docs(ids).items()}

    def all_ids(self) -> set[str]:
        """Every chunk id held (for ``doctor``: reads the whole index)."""
        searcher = self._searcher
        if not searcher.num_docs:
            return set()
        found = searcher.search(Q.all_query(), limit=searcher.num_docs, count=False)
        return {searcher.doc(address)["id"][0] for _, address in found.hits}

    @property
    def ids(self) -> list[str]:
        return sorted(self.all_ids())

    @property
    def vocab(self) -> dict[str, int]:
        """Every indexed word -> its document frequency, read from the term dictionary once per
        reload (the answerer asks whether a name is known at all)."""
        with self.lock:
            if self._vocab is None:
                self._vocab = dict(self._searcher.terms_with_prefix("body", "")) if len(self) else {}
            return self._vocab

    def idf(self, word: str) -> float:
        """Lucene's idf, as BM25 scores it; 0 for a word no chunk has."""
        cached = self._idf.get(word)
        if cached is None:
            searcher = self._searcher
            df = searcher.doc_freq("body", word)
            cached = math.log1p((searcher.num_docs - df + 0.5) / (df + 0.5)) if df else 0.0
            self._idf[word] = cached
        return cached

    # -- search ---------------------------------------------------------------------------------

    def _filters(self, since: int, until: int, source: str) -> list[tuple[tantivy.Occur, tantivy.Query]]:
        out = []
        if since or until:
            span = Q.range_query(self.schema, "date_int", tantivy.FieldType.Integer, since or None, until or None)
            out.append((Occur.Must, Q.const_score_query(span, 0.0)))
        if source:
            out.append((Occur.Must, Q.const_score_query(Q.term_query(self.schema, "source", source), 0.0)))
        return out

    def search(
        self, query: str, lang: str, n: int, since: int = 0, until: int = 0, source: str = "", *,
        title_boost: float = 0.0, prf_terms: int = 0, expand: bool = False,
    ) -> list[tuple[str, float]]:
        """The ``n`` best chunks with a positive score. ``title_boost`` adds that share of the
        title field's score; ``prf_terms`` adds up to that many words of the first results
        (pseudo-relevance feedback); ``expand`` gives English names their Italian spelling."""
        searcher, held, _ = self._view  # one commit for the whole search
        tokens = [t for t in query_tokens(query, lang, expand) if self.idf(t) > 0]
        if not tokens or n <= 0:
            return []
        words = [Q.term_query(self.schema, "body", t) for t in tokens]
        if title_boost:
            words += [Q.boost_query(Q.term_query(self.schema, "title", t), title_boost) for t in tokens]
        filters = self._filters(since, until, source)

        def run(clauses: list[tantivy.Query]) -> list[tuple[float, tantivy.DocAddress]]:
            scoring = Q.boolean_query([(Occur.Should, q) for q in clauses])
            q = Q.boolean_query([(Occur.Must, scoring), *filters]) if filters else scoring
            return searcher.search(q, limit=n, count=False).hits

        hits = run(words)
        if prf_terms > 0 and hits:
            extra = self._feedback([searcher.doc(a) for _, a in hits[:PRF_DOCS]], [s for s, _ in hits[:PRF_DOCS]],
                                   tokens, prf_terms)
            if extra:
                hits = run(words + [Q.boost_query(Q.term_query(self.schema, "body", t), PRF_WEIGHT) for t in extra])
        out = []
        for score, address in hits:
            out.append((_keep(searcher.doc(address), held), float(score)))
        return [r for r in out if r[1] > 0]

    def _feedback(self, docs: list, scores: list[float], tokens: list[str], limit: int) -> list[str]:
        local: dict[str, int] = {}
        arrays = [np.array([local.setdefault(w, len(local)) for w in d["body"][0].split()], dtype=np.int32)
                  for d in docs]
        words = list(local)
        idf = np.array([self.idf(w) for w in words], dtype=np.float32)
        chosen = feedback_terms(np.array(scores), arrays, idf, [local[t] for t in tokens if t in local], limit)
        return [words[i] for i in chosen]

    def coverage(self, query: str, lang: str, expand: bool = False) -> float:
        """How much of the question BM25 can see: the idf mass of its words the index knows over
        the mass of all of them, an unknown word weighing as the rarest known one (a word in one
        chunk). A question whose names the articles spell otherwise ("Juve" for Juventus, "Italy"
        over Italian text) is matched on its common words only, and its BM25 ranking says
        little; 1 when every word is known (or the question has none)."""
        tokens = query_tokens(query, lang, expand)
        n = self._searcher.num_docs
        if not tokens or not n:
            return 1.0
        rarest = math.log1p((n - 0.5) / 1.5)
        known = [w for w in (self.idf(t) for t in tokens) if w > 0]
        unknown = len(tokens) - len(known)
        total = sum(known) + unknown * rarest
        return sum(known) / total if total > 0 else 1.0

    def proximity(self, query: str, lang: str, ids: Iterable[str]) -> dict[str, float]:
        """For each chunk, the idf-weighted share of the question's adjacent word pairs that are
        adjacent in the chunk too (stopwords are gone on both sides, so "allenatore della Roma"
        meets "allen rom"): a phrase of the question found as a phrase (tantivy's phrase query,
        one per pair, over these chunks only), in [0, 1]. The sequential dependence idea (Metzler
        and Croft, 2005). Questions with fewer than ``PROXIMITY_MIN_PAIRS`` pairs score 0."""
        searcher = self._searcher
        held = self._docs(ids)
        out = {cid: 0.0 for cid in held}
        q = tokenize(query, lang)
        weight: dict[tuple[str, str], float] = {}
        for a, b in zip(q, q[1:]):
            weight[(a, b)] = self.idf(a) / 2 + self.idf(b) / 2
        total = sum(weight.values())
        known = [(a, b, w) for (a, b), w in weight.items() if self.idf(a) > 0 and self.idf(b) > 0 and w > 0]
        if not known or total <= 0 or len(weight) < PROXIMITY_MIN_PAIRS or not out:
            return out
        among = Q.term_set_query(self.schema, "id", list(out))
        for a, b, w in known:
            phrase = Q.phrase_query(self.schema, "body", [a, b])
            found = searcher.search(Q.boolean_query([(Occur.Must, phrase), (Occur.Must, among)]),
                                    limit=len(out), count=False)
            for _, address in found.hits:
                out[searcher.doc(address)["id"][0]] += w / total
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
