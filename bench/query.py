"""Retrieval latency at 10k and 100k chunks: query embedding, dense, BM25, fusion.

    python bench/query.py            # 10k and 100k chunks
    python bench/query.py --quick    # 10k and 20k chunks (about a minute; the fill dominates)

The store is bulk-filled with precomputed random unit vectors (384-d, like e5-small) and
synthetic chunk texts made of data/sample sentences, through the index's own write path (what an
ingest ends in), without paying for the embedder.
Queries are embedded with the real e5 model. Timings come from ``Retriever.search``'s
``timings_ms`` (embed_query, dense, bm25, fusion), hybrid mode and dense-only mode.

Random vectors have no cluster structure, which is close to the worst case for HNSW, so the
dense numbers are, if anything, pessimistic.

Prints a Markdown table; the LAST line is one JSON object with ``overhead_p95_ms_100k``
(p95 of dense + bm25 + fusion in hybrid mode at the largest size, i.e. everything retrieval
adds on top of embedding the query) and ``hybrid_over_dense_p95`` (that p95 over the p95 of
dense + fusion in dense-only mode, same size). Targets: < 25 ms and <= 1.3. It also carries
``bench/answer.py``'s keys (``extractive_speedup``, ``cold_ask_over_import``, ...), measured in
the same run (``--no-answer`` leaves them out).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import rag  # noqa: E402,F401  (offline setup first)
from rag.config import Config  # noqa: E402

DIM = 384
QUESTIONS = [
    "Chi ha vinto lo scudetto?",
    "Quando è stato esonerato De Rossi?",
    "Chi è il nuovo allenatore della Roma?",
    "Perché Ancelotti ha lasciato il Real Madrid?",
    "Chi ha segnato nella finale di Supercoppa?",
    "Cosa è successo all'Inter nella finale di Champions contro il PSG?",
    "Chi ha sostituito Inzaghi sulla panchina dell'Inter?",
    "Quanto è stato pagato Kvaratskhelia dal PSG?",
    "Chi allena la Juventus dopo Thiago Motta?",
    "Il Bologna ha vinto la Coppa Italia?",
    "Chi è il commissario tecnico della Nazionale dopo Spalletti?",
    "Xabi Alonso allenerà il Real Madrid?",
    "Il Brasile si è qualificato ai Mondiali?",
    "Chi ha preso il posto di Fonseca al Milan?",
    "Quando è arrivato Allegri al Milan?",
    "Gasperini alla Roma: quando è stato annunciato?",
    "Who won the Serie A title?",
    "Why was Juric sacked by Roma?",
    "Real Madrid Arsenal Champions League quarter final result",
    "Conte Napoli McTominay rovesciata Cagliari",
]


def load_sentences(sample_dir: Path | None = None) -> list[str]:
    """Every sentence of every article in data/sample, read through the real parser."""
    from rag.parsing import iter_files, parse_file
    from rag.text import sentence_spans

    sample_dir = sample_dir or ROOT / "data" / "sample"
    out: list[str] = []
    for path, err in iter_files([sample_dir]):
        if err:
            continue
        for art in parse_file(path).articles:
            out.extend(art.text[s:e] for s, e in sentence_spans(art.text, art.lang or "it"))
    out = [s for s in out if len(s) > 30]
    if not out:
        raise SystemExit(f"no sentences found in {sample_dir}")
    return out


def random_unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    m = rng.standard_normal((n, dim)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def fill_store(lib, n_chunks: int, sentences: list[str], seed: int = 0, batch: int = 5000,
               per_chunk: int = 6, chunks_per_article: int = 4) -> float:
    """Add ``n_chunks`` synthetic chunks (random unit vectors) through the index's own write path,
    as an ingest does after embedding; seconds."""
    from rag.index import Prepared
    from rag.models import Article, Chunk

    rng = np.random.default_rng(seed)
    pyrng = random.Random(seed)
    t0 = time.perf_counter()
    n_articles = -(-n_chunks // chunks_per_article)
    per_batch = max(1, batch // chunks_per_article)
    with lib.index.writing() as writer:
        for first in range(0, n_articles, per_batch):
            prepared = []
            for art in range(first, min(n_articles, first + per_batch)):
                count = min(chunks_per_article, n_chunks - art * chunks_per_article)
                texts = [" ".join(pyrng.choice(sentences) for _ in range(per_chunk)) for _ in range(count)]
                year, month, day = 2024 + art % 2, 1 + art % 12, 1 + art % 28
                article = Article(id=f"bench-{art}", title=f"Articolo di prova {art}", text="\n\n".join(texts),
                                  date=f"{year}-{month:02d}-{day:02d}", source=f"Testata {art % 7}", lang="it",
                                  path="bench", content_hash=f"h{art}")
                chunks, pos = [], 0
                for j, text in enumerate(texts):
                    chunks.append(Chunk(id=f"bench-{art}-{j}", article_id=article.id, index=j, text=text,
                                        start=pos, end=pos + len(text), tokens=len(text) // 5))
                    pos += len(text) + 2
                prepared.append(Prepared(article, f"t{art}", chunks, random_unit(rng, count)))
            writer.put(prepared)
    return time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def bench_size(n_chunks: int, sentences: list[str], embedder, repeats: int) -> dict:
    from rag.library import Library

    with tempfile.TemporaryDirectory(prefix="cronaca-bench-q-") as tmp:
        cfg = Config.load(path=Path(tmp) / "none.toml",
                          env={"CRONACA_HOME": str(Path(tmp) / "home")})
        lib = Library(cfg, embedder=embedder)
        fill_s = fill_store(lib, n_chunks, sentences)
        assert lib.index.counts()[1] == n_chunks == len(lib.index.lexical), "fill mismatch"
        for q in QUESTIONS[:3]:  # warm caches
            lib.search(q, mode="hybrid")
            lib.search(q, mode="dense")
        parts: dict[str, list[float]] = {k: [] for k in ("embed_query", "dense", "bm25", "fusion")}
        hybrid, dense_only = [], []
        for _ in range(repeats):
            for q in QUESTIONS:
                t = lib.search(q, mode="hybrid").timings_ms
                for k in parts:
                    parts[k].append(t.get(k, 0.0))
                hybrid.append(t["retrieval"])  # dense and BM25 run side by side: the wall time
                d = lib.search(q, mode="dense").timings_ms
                dense_only.append(d["retrieval"])
        del lib
    row = {"chunks": n_chunks, "fill_s": round(fill_s, 1), "queries": len(hybrid)}
    for k, v in parts.items():
        row[f"{k}_p50"], row[f"{k}_p95"] = pct(v, 50), pct(v, 95)
    row["hybrid_p50"], row["hybrid_p95"] = pct(hybrid, 50), pct(hybrid, 95)
    row["dense_only_p50"], row["dense_only_p95"] = pct(dense_only, 50), pct(dense_only, 95)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="10k and 20k chunks, one pass of the questions")
    p.add_argument("--sizes", default="", help="comma-separated chunk counts (overrides the default)")
    p.add_argument("--repeats", type=int, default=0, help="passes over the question list")
    p.add_argument("--no-answer", dest="answer", action="store_false",
                   help="leave out bench/answer.py's figures (answerer speed, cold ask)")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s] or ([10_000, 20_000] if args.quick
                                                             else [10_000, 100_000])
    repeats = args.repeats or (1 if args.quick else 5)

    from rag.embeddings import make_embedder

    embedder = make_embedder(Config.load())
    embedder.embed_query("riscaldamento")  # load the model outside the timings
    sentences = load_sentences()
    t0 = time.perf_counter()
    rows = [bench_size(n, sentences, embedder, repeats) for n in sizes]
    total_s = time.perf_counter() - t0

    cols = ["embed_query", "dense", "bm25", "fusion", "hybrid", "dense_only"]
    print(f"## Retrieval latency (ms), {os.cpu_count()} CPUs"
          + (f" - QUICK: largest size is {sizes[-1]}, not 100k" if sizes[-1] != 100_000 else ""))
    print()
    print("| chunks | fill s | queries | " + " | ".join(f"{c} p50 / p95" for c in cols) + " |")
    print("|---" * (3 + len(cols)) + "|")
    for r in rows:
        cells = " | ".join(f"{r[c + '_p50']:.1f} / {r[c + '_p95']:.1f}" for c in cols)
        print(f"| {r['chunks']} | {r['fill_s']} | {r['queries']} | {cells} |")
    print()
    print("hybrid = dense + bm25 + fusion (hybrid mode); dense_only = dense + fusion (dense mode); "
          "neither includes embedding the query.")
    big = rows[-1]
    result = {
        "overhead_p95_ms_100k": round(big["hybrid_p95"], 2),
        "hybrid_over_dense_p95": round(big["hybrid_p95"] / max(big["dense_only_p95"], 1e-9), 3),
        "largest_chunks": big["chunks"],
        "quick": args.quick,
        "embed_query_p95_ms": round(big["embed_query_p95"], 2),
        "dense_p95_ms": round(big["dense_p95"], 2),
        "bm25_p95_ms": round(big["bm25_p95"], 2),
        "fusion_p95_ms": round(big["fusion_p95"], 2),
        "dense_only_p95_ms": round(big["dense_only_p95"], 2),
        "by_size": {str(r["chunks"]): {"hybrid_p95_ms": round(r["hybrid_p95"], 2),
                                       "dense_only_p95_ms": round(r["dense_only_p95"], 2)}
                    for r in rows},
        "seconds": round(total_s, 1),
    }
    if args.answer:
        import answer  # bench/answer.py, next to this script

        figures = answer.run(6 if args.quick else 10, 8 if args.quick else None)
        print()
        print("| answer figure | value |\n|---|---|")
        for key, value in figures.items():
            print(f"| {key} | {value} |")
        result.update(figures)
    if big["chunks"] != 100_000:
        result["note"] = f"overhead_p95_ms_100k measured at {big['chunks']} chunks (--quick/--sizes)"
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
