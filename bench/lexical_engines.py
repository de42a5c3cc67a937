"""tantivy or SQLite FTS5 for BM25: measured side by side before choosing (issue 22).

    python bench/lexical_engines.py            # 100k chunks
    python bench/lexical_engines.py --chunks 20000

Both index the same chunks as the same terms (``rag.text.tokenize``'s stems, whitespace
separated), a body and a title field, a date and a source. Measured for each: the bulk build,
an incremental write of 300 chunks (median of five, each one committed), a question's p50/p95
(top 40, the question's words OR-ed, title weighted 0.5, no filter and with a date filter), and
what a reader pays to see a commit (tantivy: reload the searcher; SQLite: every read sees the
last commit, so the cost is its first query on a fresh connection). Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from query import QUESTIONS  # noqa: E402
from scale import load_sentences, make_batch  # noqa: E402

from rag.lexical import LexicalIndex, query_tokens  # noqa: E402
from rag.text import detect_lang, tokenize  # noqa: E402


def rows(first: int, count: int, sentences) -> list[tuple[str, str, str, dict]]:
    out = []
    for p in make_batch(first, count, sentences, np.random.default_rng(first)):
        meta = p.article.meta()
        out += [(c.id, c.text, p.article.lang, meta) for c in p.chunks]
    return out


class Fts5:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path)
        self.db.executescript(
            "PRAGMA journal_mode=WAL;"
            "CREATE VIRTUAL TABLE IF NOT EXISTS chunks USING fts5(body, title, cid UNINDEXED,"
            " tokenize='unicode61 remove_diacritics 0');"
            "CREATE TABLE IF NOT EXISTS meta(rowid INTEGER PRIMARY KEY, date_int INTEGER, source TEXT);"
            "CREATE INDEX IF NOT EXISTS meta_date ON meta(date_int);")

    def add(self, batch) -> None:
        with self.db:
            for cid, text, lang, meta in batch:
                title = meta.get("title", "")
                cur = self.db.execute("INSERT INTO chunks(body, title, cid) VALUES (?, ?, ?)",
                                      (" ".join(tokenize(f"{title}\n{text}", lang)),
                                       " ".join(tokenize(title, lang)), cid))
                self.db.execute("INSERT INTO meta VALUES (?, ?, ?)", (cur.lastrowid, meta.get("date_int", 0),
                                                                      meta.get("source", "")))

    def search(self, tokens: list[str], n: int, since: int = 0, db=None) -> list[tuple[str, float]]:
        db = db or self.db
        match = " OR ".join(f'"{t}"' for t in tokens)
        sql = ("SELECT cid, -bm25(chunks, 1.0, 0.5) AS s FROM chunks JOIN meta ON meta.rowid = chunks.rowid "
               "WHERE chunks MATCH ? AND meta.date_int >= ? ORDER BY s DESC LIMIT ?")
        return db.execute(sql, (match, since, n)).fetchall()


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chunks", type=int, default=100_000)
    args = p.parse_args(argv)
    sentences = load_sentences()
    n_articles = args.chunks // 3
    archive = rows(0, n_articles, sentences)
    writes = [rows(n_articles + i * 100, 100, sentences) for i in range(5)]
    questions = [(q, detect_lang(q)) for q in QUESTIONS]
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="cronaca-engines-") as tmp:
        tv = LexicalIndex(Path(tmp) / "tantivy")
        fts = Fts5(Path(tmp) / "fts5.sqlite")
        for name, build, write, search, reload in (
            ("tantivy", lambda: tv.rebuild(archive, "x"), tv.update,
             lambda q, lang, since=0: tv.search(q, lang, 40, since=since, title_boost=0.5), tv.reload),
            ("fts5", lambda: fts.add(archive), fts.add,
             lambda q, lang, since=0: fts.search(query_tokens(q, lang, True), 40, since),
             lambda: fts.search(["rom"], 1, db=sqlite3.connect(fts.path))),
        ):
            figures = {"build_s": timed(build)}
            figures["write_300_s"] = statistics.median(timed(lambda b=b, w=write: w(b)) for b in writes)
            times = []
            for _ in range(3):
                for q, lang in questions:
                    times.append(timed(lambda q=q, lang=lang, f=search: f(q, lang)) * 1000)
                    times.append(timed(lambda q=q, lang=lang, f=search: f(q, lang, 20240101)) * 1000)
            figures["query_p50_ms"] = float(np.percentile(times, 50))
            figures["query_p95_ms"] = float(np.percentile(times, 95))
            figures["reload_ms"] = statistics.median(timed(reload) for _ in range(5)) * 1000
            out[name] = {k: round(v, 4) for k, v in figures.items()}
    print(f"| engine ({args.chunks:,} chunks) | build s | write 300 s | query p50 ms | query p95 ms | reload ms |")
    print("|---|---|---|---|---|---|")
    for name, f in out.items():
        print(f"| {name} | {f['build_s']:.1f} | {f['write_300_s']:.3f} | {f['query_p50_ms']:.2f} | "
              f"{f['query_p95_ms']:.2f} | {f['reload_ms']:.2f} |")
    print(json.dumps({"chunks": args.chunks, **out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
