"""Ingest throughput against the bare embedder, and peak memory of a 100k-chunk store.

    python bench/ingest.py                 # 1,000 and 10,000 articles; RSS at 100k chunks
    python bench/ingest.py --n 200,1000    # other corpus sizes
    python bench/ingest.py --quick         # 30 articles; RSS at 20k chunks (about a minute)

Throughput: a synthetic corpus of N articles (sentences of data/sample, read through
``rag.parsing.parse_file``, shuffled into new articles) is written as .jsonl to a temp folder
and ingested end to end with ``Library.ingest`` and the real e5 embedder. In the same run the
bare embedder embeds exactly the texts the ingest embeds (same chunking, same title prefix,
same batch size). ``ingest_ratio`` = ingest chunks/s over embedder chunks/s: 1.0 means parsing,
chunking, Chroma and BM25 cost nothing next to the model (target >= 0.9).

Memory: a child process opens a Library (real e5 loaded), fills it with N random unit 384-d
vectors and synthetic texts through the index's write path (what an
ingest ends in), saves BM25 and runs a few hybrid searches; its peak RSS comes from
``getrusage(RUSAGE_CHILDREN)``. Target < 1500 MB at 100k chunks. With --quick the store has
20k chunks: the figure is reported as measured (not extrapolated) and marked in the JSON.

The LAST printed line is one JSON object with ``ingest_ratio`` and ``peak_rss_mb``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import rag  # noqa: E402,F401  (offline setup first)
from rag.config import Config  # noqa: E402


def _query_bench():
    spec = importlib.util.spec_from_file_location("bench_query", HERE / "query.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def write_corpus(folder: Path, n_articles: int, sentences: list[str], seed: int = 0,
                 per_file: int = 500) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines: dict[int, list[str]] = {}
    for i in range(n_articles):
        body = " ".join(rng.choice(sentences) for _ in range(rng.randint(4, 12)))
        record = {
            "id": f"synt-{i}",
            "title": f"{rng.choice(sentences)[:80]} ({i})",
            "date": f"{2024 + i % 2}-{1 + i % 12:02d}-{1 + i % 28:02d}",
            "source": f"Testata {i % 7}",
            "text": f"Notizia numero {i}. {body}",
        }
        lines.setdefault(i // per_file, []).append(json.dumps(record, ensure_ascii=False))
    for part, rows in lines.items():
        (folder / f"corpus-{part:04d}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")


def chunk_texts(folder: Path, cfg: Config) -> list[str]:
    """The exact texts an ingest of ``folder`` sends to the embedder."""
    from rag.chunking import chunk_article
    from rag.embeddings import passage_text
    from rag.parsing import iter_files, parse_file

    texts = []
    for path, _ in iter_files([folder]):
        for art in parse_file(path, cfg.max_file_bytes).articles:
            texts.extend(passage_text(art.title, c.text)
                         for c in chunk_article(art, cfg.chunk_tokens, cfg.chunk_overlap))
    return texts


def bench_throughput(n_articles: int, sentences: list[str], embedder) -> dict:
    from rag.embeddings import embed_batched
    from rag.library import Library

    with tempfile.TemporaryDirectory(prefix="cronaca-bench-i-") as tmp:
        tmp = Path(tmp)
        corpus = tmp / "corpus"
        write_corpus(corpus, n_articles, sentences, seed=n_articles)
        cfg = Config.load(path=tmp / "none.toml", env={"CRONACA_HOME": str(tmp / "home")})
        texts = chunk_texts(corpus, cfg)
        t = time.perf_counter()
        embed_batched(embedder, texts, cfg.embed_batch)
        embed_s = time.perf_counter() - t
        lib = Library(cfg, embedder=embedder)
        t = time.perf_counter()
        report = lib.ingest([corpus])
        ingest_s = time.perf_counter() - t
        if report.failed or report.added != n_articles or report.chunks != len(texts):
            raise SystemExit(f"ingest did not store the corpus: {report.summary()}, {report.chunks} chunks "
                             f"(expected {n_articles} articles, {len(texts)} chunks): {report.errors[:3]}")
        del lib
    return {
        "articles": n_articles, "chunks": len(texts),
        "embed_s": embed_s, "ingest_s": ingest_s,
        "embed_cps": len(texts) / embed_s, "ingest_cps": len(texts) / ingest_s,
        "ratio": (len(texts) / ingest_s) / (len(texts) / embed_s),
    }


def rss_child(n_chunks: int, home: Path) -> None:
    """Runs in the child: fill a store to ``n_chunks`` and search it."""
    from rag.embeddings import make_embedder
    from rag.library import Library

    q = _query_bench()
    cfg = Config.load(path=home / "none.toml", env={"CRONACA_HOME": str(home)})
    lib = Library(cfg, embedder=make_embedder(Config.load()))
    q.fill_store(lib, n_chunks, q.load_sentences())
    for question in q.QUESTIONS[:5]:
        lib.search(question, mode="hybrid")
    assert lib.index.counts()[1] == n_chunks == len(lib.index.lexical)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"chunks": n_chunks, "self_peak_rss_mb": round(own, 1)}))


def bench_rss(n_chunks: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="cronaca-bench-rss-") as tmp:
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--rss-child", str(n_chunks), "--home", tmp],
            capture_output=True, text=True,
        )
        seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"memory child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
    return {"chunks": n_chunks, "peak_rss_mb": peak, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="30 articles, RSS at 20k chunks")
    p.add_argument("--n", default="", help="comma-separated corpus sizes in articles (default 1000,10000)")
    p.add_argument("--rss-chunks", type=int, default=0, help="store size for the memory test")
    p.add_argument("--rss-child", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--home", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.rss_child:
        rss_child(args.rss_child, Path(args.home))
        return 0

    sizes = [int(s) for s in args.n.split(",") if s] or ([30] if args.quick else [1000, 10_000])
    rss_chunks = args.rss_chunks or (20_000 if args.quick else 100_000)

    # the memory child runs first, so this process's own model and stores are not in its way
    rss = bench_rss(rss_chunks)

    from rag.embeddings import make_embedder

    embedder = make_embedder(Config.load())
    embedder.embed_passages(["passaggio di riscaldamento"] * 4)  # model load outside the timings
    sentences = _query_bench().load_sentences()
    rows = [bench_throughput(n, sentences, embedder) for n in sizes]

    print("## Ingest throughput (real e5 embedder)")
    print()
    print("| articles | chunks | embedder s | ingest s | embedder chunks/s | ingest chunks/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['articles']} | {r['chunks']} | {r['embed_s']:.1f} | {r['ingest_s']:.1f} | "
              f"{r['embed_cps']:.2f} | {r['ingest_cps']:.2f} | {r['ratio']:.3f} |")
    print()
    print("## Peak memory")
    print()
    print("| chunks in store | peak RSS MB | child s |")
    print("|---|---|---|")
    print(f"| {rss['chunks']} | {rss['peak_rss_mb']:.0f} | {rss['seconds']:.0f} |")
    if rss_chunks != 100_000:
        print(f"\nNote: memory measured at {rss_chunks} chunks, not 100k (--quick); "
              "Chroma's HNSW and BM25 grow roughly linearly in chunks above the fixed model cost.")
    big = rows[-1]
    result = {
        "ingest_ratio": round(big["ratio"], 3),
        "peak_rss_mb": round(rss["peak_rss_mb"], 1),
        "rss_chunks": rss_chunks,
        "ingest_chunks_per_s": round(big["ingest_cps"], 2),
        "embedder_chunks_per_s": round(big["embed_cps"], 2),
        "by_size": {str(r["articles"]): {"chunks": r["chunks"], "ratio": round(r["ratio"], 3)} for r in rows},
        "quick": args.quick,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
