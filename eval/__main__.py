"""python -m eval {run,compare,pairs,summaries} ..."""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import rag  # noqa: F401  (offline setup first)

OPTIONAL = {"pairs": "eval.pairs", "summaries": "eval.summaries"}


def _parser() -> tuple[argparse.ArgumentParser, dict]:
    p = argparse.ArgumentParser(prog="python -m eval", description="Evaluate cronaca retrieval and answers.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run an eval set (JSONL or SQuAD .json/.json.gz)")
    r.add_argument("set", help="eval/sets/*.jsonl or a SQuAD file")
    r.add_argument("--corpus", help="folder to ingest (default data/sample; SQuAD sets bring their own)")
    r.add_argument("--retrieval", default="hybrid",
                   help="comma-separated modes from rag.retrieval.MODES, compared side by side (first = answer mode)")
    r.add_argument("--k", type=int, default=5, help="passages given to the answerer, and recall@k")
    r.add_argument("--limit", type=int, help="sample this many cases (with --foreign: answerable cases)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--max-articles", type=int, help="SQuAD: keep only the first N articles")
    r.add_argument("--split", choices=("dev", "held", "all"), default="all",
                   help="run one half of a set with splits (natural.jsonl); 'all' reports both side by side")
    r.add_argument("--foreign", type=int, metavar="N",
                   help="SQuAD: corpus = half the articles (by --seed), plus N unanswerable questions "
                        "from the other half")
    r.add_argument("--reader-held", action="store_true",
                   help="SQuAD: only the articles the shipped reader did not train on (rag/reader_delta.npz)")
    r.add_argument("--out", help="output folder (default eval/runs/<timestamp>)")
    r.add_argument("--json", action="store_true", help="print the aggregate as JSON on the last line")
    r.add_argument("--answers", action=argparse.BooleanOptionalAction, default=True,
                   help="also answer every case (first mode only)")
    r.add_argument("--judge", action="store_true", help="LLM-judge faithfulness (needs an LLM)")
    r.add_argument("--fail-under", nargs="*", default=[], metavar="METRIC=VALUE",
                   help="exit 1 if a metric of the first mode is below VALUE")

    c = sub.add_parser("compare", help="metric deltas between two runs")
    c.add_argument("run_a")
    c.add_argument("run_b")

    s = sub.add_parser("show", help="print a run's table (run.json, or cases.partial.jsonl of a live run)")
    s.add_argument("run")
    s.add_argument("--json", action="store_true")

    handlers = {}
    for name, module in OPTIONAL.items():
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        sp = sub.add_parser(name, help=(mod.__doc__ or "").strip().split("\n")[0] or name)
        mod.add_arguments(sp)
        handlers[name] = mod.main
    return p, handlers


def _thresholds(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise SystemExit(f"--fail-under: expected METRIC=VALUE, got '{item}'")
    return out


def cmd_run(args) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from eval import report, runner
    from eval.sets import load_set
    from rag.retrieval import MODES

    err = Console(stderr=True)
    out = Console()
    modes = [m.strip() for m in args.retrieval.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        err.print(f"[red]unknown retrieval mode(s) {bad} (use {', '.join(MODES)})[/red]")
        return 2
    thresholds = _thresholds(args.fail_under)
    started = datetime.now(timezone.utc)
    try:
        evalset = load_set(args.set, limit=args.limit, seed=args.seed, max_articles=args.max_articles,
                           split=args.split, foreign=args.foreign,
                           skip_articles=_reader_trained() if args.reader_held else None)
    except (ValueError, FileNotFoundError) as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        return 2
    if evalset.records is not None:
        if args.corpus:
            err.print("[yellow]--corpus ignored: a SQuAD set brings its own paragraphs[/yellow]")
        corpus = runner.write_records(evalset.records, runner.cache_root())
    else:
        from rag.config import Config

        corpus = Path(args.corpus) if args.corpus else Config.load().sample_dir
    if not corpus.exists():
        err.print(f"[red]corpus {corpus} not found[/red]")
        return 2

    from rag.config import Config

    judge = args.judge and Config.load().llm_configured
    if args.judge and not judge:
        err.print("[yellow]--judge needs an LLM (OPENAI_BASE_URL / OPENAI_API_KEY): skipped[/yellow]")

    outdir = Path(args.out) if args.out else Path("eval/runs") / started.strftime("%Y%m%d-%H%M%S")
    outdir.mkdir(parents=True, exist_ok=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as bar:
        t_ingest = bar.add_task("store", total=None)

        def on_ingest(stage: str, done: int, total: int) -> None:
            bar.update(t_ingest, description=f"ingest: {stage}", completed=done, total=total)

        t0 = time.perf_counter()
        lib, store_info = runner.open_library(corpus, progress=on_ingest)
        libs = {}
        for name in sorted({c.corpus for c in evalset.cases if c.corpus}):
            try:
                extra = runner.case_corpus(name)
            except ValueError as exc:
                err.print(f"[red]{escape(str(exc))}[/red]")
                return 2
            libs[name], info = runner.open_library([corpus, extra], progress=on_ingest)
            store_info.setdefault("case_stores", {})[name] = info
        verb = "reused" if store_info["reused"] else "built"
        bar.update(t_ingest, description=f"store {verb} ({store_info['chunks']} chunks)",
                   total=1, completed=1)
        store_info["open_seconds"] = round(time.perf_counter() - t0, 1)
        task = bar.add_task("cases", total=len(evalset.cases) * len(modes))
        settings = runner.RunSettings(modes=modes, k=args.k, answers=args.answers, judge=judge)
        result = runner.run(lib, evalset, settings, advance=lambda: bar.advance(task),
                            partial=outdir / "cases.partial.jsonl", libs=libs)
    (outdir / "cases.partial.jsonl").unlink(missing_ok=True)
    n_ret = sum(1 for c in evalset.cases if c.relevant and not c.unanswerable)
    config = {
        "set": str(args.set), "corpus": str(corpus), "retrieval": modes, "k": args.k,
        "limit": args.limit, "seed": args.seed, "max_articles": args.max_articles,
        "split": args.split, "foreign": args.foreign, "reader_held": args.reader_held,
        "answers": args.answers, "judge": judge,
        "answerer": f"llm {lib.config.llm_model}" if lib.config.llm_configured else "extractive",
        "embedder": store_info["embedder"], "chunk_tokens": lib.config.chunk_tokens,
        "chunk_overlap": lib.config.chunk_overlap, "candidates": lib.config.candidates,
        "rrf_k": lib.config.rrf_k, "cases_in_set": evalset.total,
        "command": "python -m eval " + shlex.join(sys.argv[1:]),
    }
    run = {
        "created": started.isoformat(timespec="seconds"), "config": config, "store": store_info,
        "n_cases": len(evalset.cases), "n_retrieval_cases": n_ret,
        "aggregate": result.aggregate, "splits": result.splits, "by_type": result.by_type,
        "hitk": result.hitk, "extra": result.extra, "selection": evalset.info, "cases": result.cases,
    }
    (outdir / "run.json").write_text(json.dumps(run, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    report.write_markdown(outdir / "report.md", run)
    report.write_plot(outdir / "hitk.png", result.hitk)
    if result.extra.get("decline_curve"):
        report.write_decline_plot(outdir / "decline.png", result.extra["decline_curve"])

    _print_tables(out, result.aggregate, result.splits, result.by_type, f"{evalset.name}: {len(evalset.cases)} cases",
                  f"by type ({modes[0]})")
    out.print(f"written to {outdir}/ (run.json, report.md, hitk.png)")
    status = 0
    first = result.aggregate[modes[0]]
    for name, floor in thresholds.items():
        value = first.get(name)
        if value is None:
            err.print(f"[red]--fail-under: no metric '{name}' in mode {modes[0]}[/red]")
            status = 1
        elif value < floor:
            err.print(f"[red]{name} = {value:.4f} < {floor} ({modes[0]})[/red]")
            status = 1
    if args.json:
        sys.stdout.flush()
        _print_json(len(evalset.cases), result.aggregate, result.splits)
    return status


def _reader_trained() -> set[str]:
    """Titles of the SQuAD articles the shipped reader was trained on."""
    from rag.reader import load_delta

    return {t for titles in load_delta().meta.get("train_articles", {}).values() for t in titles}


def _print_tables(console, agg: dict, splits: dict, by_type: dict, title: str, type_title: str) -> None:
    from eval import report

    console.print(report.table(report.side_by_side(agg, splits), title=title))
    if by_type:
        console.print(report.type_table(by_type, title=type_title))


def _print_json(n: int, agg: dict, splits: dict) -> None:
    """The aggregate as one JSON line (``splits`` only for a set with splits)."""
    line: dict = {"cases": n, "modes": agg}
    if splits:
        line["splits"] = splits
    print(json.dumps(line, ensure_ascii=False))


def cmd_compare(args) -> int:
    from rich.console import Console

    from eval.report import compare, load_run

    try:
        a, b = load_run(args.run_a), load_run(args.run_b)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    console = Console()
    console.print(f"A = {args.run_a} ({a['config']['command']})\nB = {args.run_b} ({b['config']['command']})")
    compare(a, b, console)
    return 0


def cmd_show(args) -> int:
    from rich.console import Console

    from eval import report, runner

    path = Path(args.run)
    partial = path / "cases.partial.jsonl" if path.is_dir() else path
    if path.is_dir() and (path / "run.json").is_file() or path.name == "run.json":
        run = report.load_run(path)
        agg, n = run["aggregate"], run["n_cases"]
        splits, by_type = run.get("splits") or {}, run.get("by_type") or {}
    elif partial.is_file() and partial.suffix == ".jsonl":
        rows = [json.loads(line) for line in partial.read_text(encoding="utf-8").splitlines() if line]
        modes = list(rows[0]["modes"]) if rows else []
        answers = bool(rows) and "answer" in rows[0]["modes"][modes[0]]
        agg, _ = runner.aggregate_cases(rows, modes, answers)
        splits = runner.split_aggregates(rows, modes, answers)
        by_type = runner.type_breakdown(rows, modes[0]) if answers else {}
        n = len(rows)
    else:
        print(f"no run.json or cases.partial.jsonl at {path}", file=sys.stderr)
        return 2
    _print_tables(Console(), agg, splits, by_type, f"{path}: {n} cases", "by type (answer mode)")
    if args.json:
        _print_json(n, agg, splits)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser, handlers = _parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        return cmd_run(args)
    if args.command == "compare":
        return cmd_compare(args)
    if args.command == "show":
        return cmd_show(args)
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
