"""``cronaca``: the command line, a thin layer over ``rag.library.Library``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from rag.config import Config
from rag.models import Answer

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _library(args):
    from rag.library import Library
    from rag.store import StoreError

    try:
        return Library(Config.load(args.config))
    except (StoreError, ValueError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(2)


def cmd_ingest(args) -> int:
    lib = _library(args)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True,
                  disable=args.json or not err.is_terminal) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                label = {"embed": "embedding chunks", "index": "updating BM25"}.get(stage, stage)
                tasks[stage] = bar.add_task(label, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        report = lib.ingest(args.paths, progress=progress)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        for error in report.errors:
            err.print(f"[red]error:[/red] {escape(str(error))}")
        for note in report.notes:
            err.print(f"[yellow]note:[/yellow] {escape(note)}")
        out.print(f"{report.summary()} ({report.chunks} chunks written)")
    return 1 if report.failed else 0


def _filters(args):
    from rag.retrieval import Filters

    return Filters.from_strings(args.since or "", args.until or "", args.source or "")


def print_sources(citations, lang: str, console: Console = out) -> None:
    if not citations:
        return
    console.print("\n[bold]Fonti[/bold]" if lang == "it" else "\n[bold]Sources[/bold]")
    for c in citations:
        where = c.url or c.path
        console.print(f"[bold][{c.n}][/bold] {escape(c.title)} — {escape(c.date or '?')}"
                      f"{' — ' + escape(c.source) if c.source else ''} — [dim]{escape(where)}[/dim]")
        console.print(f"    «{escape(c.quote)}»")


def print_answer(answer: Answer, console: Console = out, streamed: bool = False) -> None:
    if not streamed:
        console.print(escape(answer.text))
    if answer.notice:
        console.print(f"\n[dim]{escape(answer.notice)}[/dim]")
    print_sources(answer.citations, answer.lang, console)


def emit(items, final_type: type, as_json: bool, printer, what: str) -> int:
    """Stream deltas to a terminal, then print the validated result (or its JSON): one path
    for answers and summaries. ``what`` completes "use --fallback extractive to ..."."""
    from rag.llm import LLMError

    streaming = not as_json and out.is_terminal
    result = None
    try:
        for item in items:
            if isinstance(item, final_type):
                result = item
            elif streaming:
                out.print(escape(item), end="")
    except LLMError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        err.print(f"[dim]use --fallback extractive to {what} without the language model[/dim]")
        return 3
    assert result is not None
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
        return 0
    if streaming:
        out.print("\n")
        if result.mode == "llm":  # the validated text: invalid markers removed, renumbered
            out.print(escape(result.text))
    printer(result, streamed=streaming)
    return 0


def cmd_ask(args) -> int:
    lib = _library(args)
    try:
        filters = _filters(args)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2
    items = lib.stream(args.question, k=args.k, filters=filters, answerer=args.answerer or "auto",
                       fallback=args.fallback)
    return emit(items, Answer, args.json, print_answer, "answer")


def cmd_list(args) -> int:
    lib = _library(args)
    rows = lib.articles()
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
        return 0
    table = Table("id", "date", "source", "title", "chunks")
    for r in rows:
        table.add_row(escape(r["id"]), r.get("date", ""), escape(r.get("source", "")),
                      escape(r.get("title", "")[:70]), str(r.get("chunks", "")))
    out.print(table)
    out.print(f"{len(rows)} articles")
    return 0


def cmd_show(args) -> int:
    lib = _library(args)
    art = lib.article(args.id)
    if art is None:
        err.print(f"[red]error:[/red] no article with id {escape(args.id)}")
        return 1
    if args.json:
        print(json.dumps(art, ensure_ascii=False))
        return 0
    out.print(f"[bold]{escape(art['title'])}[/bold]")
    out.print(f"[dim]{art['id']} · {art.get('date') or '?'} · {escape(art.get('source') or '?')} · "
              f"{art.get('lang')} · {escape(art.get('url') or art.get('path', ''))}[/dim]\n")
    out.print(escape(art["text"]))
    return 0


def cmd_delete(args) -> int:
    lib = _library(args)
    status = 0
    for article_id in args.ids:
        if lib.delete(article_id):
            out.print(f"deleted {escape(article_id)}")
        else:
            err.print(f"[red]error:[/red] no article with id {escape(article_id)}")
            status = 1
    return status


def cmd_stats(args) -> int:
    stats = _library(args).stats()
    if args.json:
        print(json.dumps(stats, ensure_ascii=False))
    else:
        for key, value in stats.items():
            out.print(f"[bold]{key}[/bold]: {escape(', '.join(value) if isinstance(value, list) else str(value))}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cronaca", description="Cited answers and summaries over news articles.")
    p.add_argument("--config", help="TOML configuration file (default: $CRONACA_CONFIG or ./cronaca.toml)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("ingest", help="add or update articles from files and folders")
    s.add_argument("paths", nargs="+")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("ask", help="answer a question from the stored articles, with citations")
    s.add_argument("question")
    s.add_argument("--k", type=int, default=None, help="chunks to retrieve (default 5)")
    s.add_argument("--since", help="only articles dated on or after (YYYY-MM-DD or YYYY-MM)")
    s.add_argument("--until", help="only articles dated on or before")
    s.add_argument("--source", help="only articles from this source")
    s.add_argument("--answerer", choices=["auto", "llm", "extractive"], default="auto",
                   help="auto = LLM when one is configured, else extractive")
    s.add_argument("--fallback", choices=["none", "extractive"], default="none",
                   help="what to do when the LLM fails")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_ask)

    s = sub.add_parser("list", help="list stored articles")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_list)
    s = sub.add_parser("show", help="show one article")
    s.add_argument("id")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)
    s = sub.add_parser("delete", help="delete articles by id")
    s.add_argument("ids", nargs="+")
    s.set_defaults(func=cmd_delete)
    s = sub.add_parser("stats", help="what the store holds and how cronaca is configured")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_stats)

    try:
        from rag import summaries_cli
    except ImportError:
        pass
    else:
        summaries_cli.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from rag.store import StoreError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except StoreError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
