"""``cronaca``: the command line, a thin layer over ``rag.library.Library``.

Exit codes: 0 done, 1 some items failed (ingest) or the store is inconsistent (doctor), 2 bad
usage or an unusable store, 3 the language model failed and no fallback was asked for, 4 the
language model's answer was cut off (length limit, cut stream, CRONACA_LLM_DEADLINE) and no fallback
was asked for.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from rag.config import Config
from rag.dates import spoken, spoken_range
from rag.validation import RequestError

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _library(args, warm: bool = False, reading: bool = False):
    """``warm``: the command will embed, so the model loads in a thread while the store's
    libraries import (a cold ``cronaca ask`` waits for the longer of the two, not their sum).
    ``reading``: the command only reads, so a home that does not exist is an error that says
    where it was looked for: asking from the wrong folder must not leave an empty ``./.cronaca``
    behind and answer from nothing."""
    try:
        config = Config.load(args.config)
        if reading and not config.chroma_host and not config.home.exists():
            _error(f"no archive at {config.home.resolve()} (the home: CRONACA_HOME, default ./.cronaca in the "
                   "current folder); run the command where the archive is, set CRONACA_HOME, or add articles "
                   "with `cronaca ingest FILES` (or `cronaca ingest --sample`)")
            sys.exit(2)
        embedder = None
        if warm:
            from rag.embeddings import make_embedder

            embedder = make_embedder(config)
            if hasattr(embedder, "warm"):
                threading.Thread(target=embedder.warm, name="cronaca-warm", daemon=True).start()
        from rag.library import Library

        return Library(config, embedder=embedder)
    except (_store_error(), ValueError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        sys.exit(2)


def _store_error() -> type[Exception]:
    from rag.store import StoreError

    return StoreError


def _error(message: str) -> None:
    err.print(f"[red]error:[/red] {escape(message)}")


# -- ingest ------------------------------------------------------------------------------------


def cmd_ingest(args) -> int:
    lib = _library(args)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True,
                  disable=args.json or not err.is_terminal) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                label = {"embed": "embedding chunks", "index": "updating BM25"}.get(stage, stage)
                tasks[stage] = bar.add_task(label, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        if not args.paths and not args.sample:
            _error("give files, folders or URLs to ingest, or --sample for the bundled sample articles")
            return 2
        paths = [*args.paths, *([lib.config.sample_dir] if args.sample else [])]
        report = lib.ingest(paths, progress=progress)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        for error in report.errors:
            _error(str(error))
        for note in report.notes:
            err.print(f"[yellow]note:[/yellow] {escape(note)}")
        out.print(f"{report.summary()} ({report.chunks} chunks written)")
    return 1 if report.failed else 0


# -- answers and summaries ---------------------------------------------------------------------


def print_sources(citations, lang: str, console: Console = out) -> None:
    if not citations:
        return
    console.print("\n[bold]Fonti[/bold]" if lang == "it" else "\n[bold]Sources[/bold]")
    for c in citations:
        where = c.url or c.path
        console.print(f"[bold][{c.n}][/bold] {escape(c.title)} — {escape(spoken(c.date, lang) or '?')}"
                      f"{' — ' + escape(c.source) if c.source else ''} — [dim]{escape(where)}[/dim]")
        console.print(f"    «{escape(c.quote)}»")


def print_answer(answer, console: Console = out) -> None:
    if answer.question != answer.standalone_question and answer.standalone_question:
        console.print(f"[dim]({escape(answer.standalone_question)})[/dim]")
    console.print(escape(answer.text))
    if answer.notice:
        console.print(f"\n[dim]{escape(answer.notice)}[/dim]")
    print_sources(answer.citations, answer.lang, console)


def print_summary(summary, console: Console = out) -> None:
    console.print(escape(summary.text))
    if summary.notice:
        console.print(f"\n[dim]{escape(summary.notice)}[/dim]")
    by_article = {c.article_id: c for c in summary.citations}
    if summary.stories and len(summary.stories) > 1:
        console.print("\n[bold]Storie[/bold]" if summary.lang == "it" else "\n[bold]Stories[/bold]")
        for i, story in enumerate(summary.stories, 1):
            cited = [f"[{by_article[a].n}]" for a in story.article_ids if a in by_article]
            when = spoken_range(story.first_date, story.last_date, summary.lang) or "?"
            console.print(f"{i}. {escape(story.title)} — {escape(when)} — "
                          f"{len(story.article_ids)} art. {escape(' '.join(cited))}")
    print_sources(summary.citations, summary.lang, console)


def emit(make_stream: Callable[[], Any], as_json: bool, printer, what: str) -> int:
    """One path for answers and summaries: on a terminal the text shows while it streams, as a
    draft that is then replaced by the validated result (markers checked and renumbered), so one
    answer is printed; otherwise (pipes, --json) only the result."""
    from rich.live import Live
    from rich.text import Text

    from rag.llm import LLMError

    live = not as_json and out.is_terminal
    try:
        stream = make_stream()
        if live:
            draft = Text(style="dim")
            with Live(draft, console=out, transient=True, refresh_per_second=12) as view:
                for delta in stream:
                    draft.append(delta)
                    view.update(draft)
            result = stream.result
        else:
            result = stream.finish()
    except LLMError as exc:
        _error(str(exc))
        err.print(f"[dim]use --fallback extractive to {what} without the language model[/dim]")
        return 3
    except RequestError as exc:
        _error(str(exc))
        return 2
    if as_json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        printer(result)
    if getattr(result, "truncated", False):  # a cut answer must not look like a finished one to a script
        err.print(f"[dim]the {what} was cut off; use --fallback extractive to {what} without the language "
                  "model instead[/dim]")
        return 4
    return 0


def _say_if_empty(lib) -> None:
    """An empty archive answers nothing: say which home was read, so a reader in the wrong
    folder (or with another CRONACA_HOME) knows why, instead of trusting "the sources do not say"."""
    if lib.is_empty():
        err.print(f"[yellow]note:[/yellow] the archive at {escape(str(lib.config.home.resolve()))} is empty "
                  "(CRONACA_HOME); add articles with `cronaca ingest FILES` or `cronaca ingest --sample`")


def cmd_ask(args) -> int:
    lib = _library(args, warm=True, reading=True)
    _say_if_empty(lib)
    return emit(lambda: lib.stream(args.question, k=args.k, since=args.since or "", until=args.until or "",
                                   source=args.source or "", as_of=args.as_of or "",
                                   answerer=args.answerer, fallback=args.fallback),
                args.json, print_answer, "answer")


def _summary(args, **selection) -> int:
    from rag.summaries import SummaryError

    lib = _library(args, reading=True)
    _say_if_empty(lib)
    try:
        return emit(lambda: lib.stream_summary(since=args.since or "", until=args.until or "",
                                               source=args.source or "", lang=args.lang,
                                               answerer=args.answerer, fallback=args.fallback, **selection),
                    args.json, print_summary, "summarise")
    except SummaryError as exc:
        _error(str(exc))
        return 2


def cmd_summarise(args) -> int:
    return _summary(args, article_id=args.id, query=args.query, k=args.k)


def cmd_digest(args) -> int:
    return _summary(args, digest=True)


# -- the archive -------------------------------------------------------------------------------


def cmd_list(args) -> int:
    lib = _library(args, reading=True)
    try:
        rows = lib.articles(since=args.since or "", until=args.until or "", source=args.source or "")
    except RequestError as exc:
        _error(str(exc))
        return 2
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], ensure_ascii=False))
        return 0
    # ids and dates whole (ids are what `show`, `summarise` and `delete` take); in a narrow
    # terminal the title goes on a line of its own rather than shrink to nothing, and only
    # what does not fit on that line is cut, unless --wide asks for every line whole
    wid = max([len(r.id) for r in rows] + [2])
    src = min(max([len(r.source) for r in rows] + [6]), 10_000 if args.wide else 18)
    room = 10_000 if args.wide else out.width - wid - src - 10 - 6 - 8
    below = room < 30
    if below and not args.wide:
        room, src = out.width - 4, max(6, min(src, out.width - wid - 22))

    def cut(text: str, width: int) -> str:
        return text if len(text) <= width else text[: width - 1] + "…"

    out.print(f"[bold]{'id':<{wid}}  {'date':<10}  {'chunks':>6}  {'source':<{src}}{'' if below else '  title'}"
              "[/bold]")
    for r in rows:
        head = f"{escape(r.id):<{wid}}  {r.date:<10}  {r.chunks:>6}  {escape(cut(r.source, src)):<{src}}"
        title = escape(cut(r.title, room))
        out.print(f"{head}\n    {title}" if below else f"{head}  {title}", crop=False, overflow="ignore")
    out.print(f"{len(rows)} articles in {escape(str(lib.config.home.resolve()))}")
    return 0


def _resolve_id(lib, given: str) -> str | None:
    """An article id, or the one stored id it begins (``cronaca list`` ids are long); an
    ambiguous beginning is a usage error naming how many it matches."""
    if lib.article(given) is not None:
        return given
    matches = [a.id for a in lib.articles() if a.id.startswith(given)] if given else []
    if len(matches) > 1:
        shown = ", ".join(matches[:3]) + (", …" if len(matches) > 3 else "")
        raise RequestError("id", f"id prefix '{given}' matches {len(matches)} articles ({shown}): give more of it",
                           code="ambiguous")
    return matches[0] if matches else None


def cmd_show(args) -> int:
    lib = _library(args, reading=True)
    article_id = _resolve_id(lib, args.id)
    art = lib.article(article_id) if article_id else None
    if art is None:
        _error(f"no article with id {args.id} in {lib.config.home.resolve()}")
        return 1
    if args.json:
        print(json.dumps(art.to_dict(with_text=True), ensure_ascii=False))
        return 0
    out.print(f"[bold]{escape(art.title)}[/bold]")
    out.print(f"[dim]{escape(art.id)} · {art.date or '?'} · {escape(art.source or '?')} · "
              f"{art.lang} · {escape(art.url or art.path)}[/dim]\n")
    out.print(escape(art.text))
    return 0


def cmd_delete(args) -> int:
    lib = _library(args)
    status = 0
    for article_id in args.ids:
        if lib.delete(article_id):
            out.print(f"deleted {escape(article_id)}")
        else:
            _error(f"no article with id {article_id}")
            status = 1
    return status


def cmd_stats(args) -> int:
    stats = _library(args, reading=True).stats()
    if args.json:
        print(json.dumps(stats, ensure_ascii=False))
    else:
        for key, value in stats.items():
            out.print(f"[bold]{key}[/bold]: {escape(', '.join(value) if isinstance(value, list) else str(value))}")
    return 0


def cmd_doctor(args) -> int:
    report = _library(args).doctor(repair=args.repair)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        for problem in report.problems:
            out.print(f"problem: {escape(str(problem))}")
        for action in report.actions:
            out.print(f"repaired: {escape(action)}")
        for problem in report.remaining:
            _error(f"still inconsistent: {problem}")
        if report.clean:
            out.print("the store is consistent" if not report.actions else "the store is consistent again")
    return 0 if report.clean else 1


# -- serve -------------------------------------------------------------------------------------


def _port(text: str) -> int:
    """A TCP port, 1-65535: uvicorn would take 99999 and listen somewhere else."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (use 1-65535)")
    return port


def cmd_serve(args) -> int:
    from rag import access
    from rag.server import parse_every, serve

    every = parse_every(args.refresh_every)  # a bad interval is a RequestError: exit 2 before loading
    refusal = access.refuse_open_bind(args.host, access.Policy.from_env(), args.insecure)
    if refusal:
        _error(refusal)
        return 2
    return serve(_library(args), host=args.host, port=args.port, refresh_every=every, insecure=args.insecure)


def cmd_mcp(args) -> int:
    """No warm-up thread: an assistant may close stdin at once, and a process ending while
    onnxruntime loads in another thread aborts."""
    from rag.mcp_server import run_stdio

    return run_stdio(_library(args))


# -- feeds -------------------------------------------------------------------------------------


def cmd_feed(args) -> int:
    from rag.feeds import FeedError

    lib = _library(args)
    try:
        if args.feed_command == "add":
            feed = lib.feeds.add(args.url, name=args.name, source=args.source)
            out.print(f"following {escape(feed.name)} ({escape(feed.url)}); run `cronaca feed refresh` to fetch it")
        elif args.feed_command == "remove":
            feed = lib.feeds.remove(args.feed)
            out.print(f"stopped following {escape(feed.name)} (its articles stay in the archive)")
        elif args.feed_command == "list":
            feeds = lib.feeds.list()
            if args.json:
                print(json.dumps([f.to_dict() for f in feeds], ensure_ascii=False))
                return 0
            table = Table("name", "url", "source", "last run", "status", "items")
            for f in feeds:
                d = f.to_dict()
                status = d.get("last_status") or "never run"
                if d.get("last_error"):
                    status = f"{status}: {d['last_error']}"
                table.add_row(escape(f.name), escape(f.url), escape(d.get("source") or ""),
                              escape(d.get("last_run") or ""), escape(status), str(d.get("items", "")))
            out.print(table)
        else:
            report = lib.refresh_feeds(args.names, force=args.force)
            if args.json:
                print(json.dumps(report.to_dict(), ensure_ascii=False))
            else:
                for line in report.errors:
                    _error(line)
                for result in report.feeds:
                    out.print(escape(result.summary()))
                out.print(report.summary())
            return 1 if report.failed else 0
    except FeedError as exc:
        _error(str(exc))
        return 2
    return 0


# -- arguments ---------------------------------------------------------------------------------


def _answer_options(s, fallback_default: str) -> None:
    s.add_argument("--answerer", choices=["auto", "llm", "extractive"], default="auto",
                   help="auto = the LLM when one is configured, else extractive")
    s.add_argument("--fallback", choices=["none", "extractive"], default=fallback_default,
                   help="what to do when the LLM fails")
    s.add_argument("--json", action="store_true", help="print one JSON object")


def _period_options(s, since_required: bool = False) -> None:
    s.add_argument("--since", required=since_required, help="only articles dated on or after (YYYY-MM-DD or YYYY-MM)")
    s.add_argument("--until", help="only articles dated on or before")
    s.add_argument("--source", help="only articles from this source")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cronaca", description="Cited answers and summaries over news articles.")
    p.add_argument("--config", help="TOML configuration file (default: $CRONACA_CONFIG or ./cronaca.toml)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("ingest", help="add or update articles from files, folders and http(s) URLs")
    s.add_argument("paths", nargs="*")
    s.add_argument("--sample", action="store_true", help="also ingest the bundled sample articles")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_ingest)

    s = sub.add_parser("ask", help="answer a question from the stored articles, with citations")
    s.add_argument("question")
    s.add_argument("--k", type=int, default=None, help="chunks to retrieve (default 5)")
    _period_options(s)
    s.add_argument("--as-of", dest="as_of", help="answer as of this date, from articles up to it")
    _answer_options(s, "none")
    s.set_defaults(func=cmd_ask)

    s = sub.add_parser("summarise", aliases=["summarize"],
                       help="summarise an article, a topic (--query) or a period, with citations")
    s.add_argument("id", nargs="?", help="article id (see `cronaca list`)")
    s.add_argument("--query", "-q", help="summarise what the articles say about this")
    s.add_argument("--k", type=int, default=30, help="chunks to retrieve for --query (default 30)")
    _period_options(s)
    s.add_argument("--lang", choices=["it", "en"], default="it", help="language of the summary")
    _answer_options(s, "extractive")
    s.set_defaults(func=cmd_summarise)

    s = sub.add_parser("digest", help="a digest of the stories of a period, with citations")
    _period_options(s, since_required=True)
    s.add_argument("--lang", choices=["it", "en"], default="it", help="language of the summary")
    _answer_options(s, "extractive")
    s.set_defaults(func=cmd_digest)

    s = sub.add_parser("list", help="list stored articles")
    _period_options(s)
    s.add_argument("--wide", action="store_true", help="whole titles and sources, wrapped (ids are always whole)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_list)
    s = sub.add_parser("show", help="show one article")
    s.add_argument("id", help="an article id, or the beginning of one that no other id shares")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_show)
    s = sub.add_parser("delete", help="delete articles by id")
    s.add_argument("ids", nargs="+")
    s.set_defaults(func=cmd_delete)
    s = sub.add_parser("stats", help="what the store holds and how cronaca is configured")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_stats)
    s = sub.add_parser("feed", help="follow RSS/Atom feeds: add, list, remove, refresh")
    feed = s.add_subparsers(dest="feed_command", required=True)
    f = feed.add_parser("add", help="follow a feed")
    f.add_argument("url")
    f.add_argument("--name", help="a short name (default: from the URL)")
    f.add_argument("--source", help="the source label its articles get (default: the site's name)")
    f = feed.add_parser("list", help="the feeds followed, with their last run")
    f.add_argument("--json", action="store_true")
    f = feed.add_parser("remove", help="stop following a feed (its articles stay)")
    f.add_argument("feed", help="URL or name")
    f = feed.add_parser("refresh", help="fetch new and changed articles of all feeds, or of the ones named")
    f.add_argument("names", nargs="*")
    f.add_argument("--force", action="store_true", help="no conditional GET: fetch every item's page again")
    f.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_feed)

    s = sub.add_parser("doctor", help="check that Chroma, the article records and BM25 agree")
    s.add_argument("--repair", action="store_true", help="fix what is found and say what was done")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_doctor)

    s = sub.add_parser("serve", help="serve the page at / and the HTTP API (/api/v1, OpenAI-compatible /v1)")
    s.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1",
                   help="address to listen on (default $GRADIO_SERVER_NAME or 127.0.0.1)")
    s.add_argument("--port", type=_port, default=os.environ.get("GRADIO_SERVER_PORT") or "7860",
                   help="port, 1-65535 (default $GRADIO_SERVER_PORT or 7860)")
    s.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback --host without CRONACA_API_KEY or CRONACA_AUTH (anyone may use it)")
    s.add_argument("--refresh-every", dest="refresh_every", default=os.environ.get("CRONACA_REFRESH_EVERY", ""),
                   help="refresh the followed feeds this often: 90s, 15m, 1h (default $CRONACA_REFRESH_EVERY, off)")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("mcp", help="serve the tools to an assistant over stdio (MCP); `serve` also has /mcp")
    s.set_defaults(func=cmd_mcp)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    global _command
    args = build_parser().parse_args(argv)
    _command = args.command
    try:
        return args.func(args)
    except RequestError as exc:
        _error(str(exc))
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except Exception as exc:  # the store's errors, imported only when one happens (see _library)
        from rag.index import IndexBusy
        from rag.store import StoreError

        if isinstance(exc, (StoreError, IndexBusy)):
            _error(str(exc))
            return 2
        raise


QUICK_EXIT = {"ask", "summarise", "digest", "list", "show", "stats"}
_command = ""  # the last command main() ran


def run() -> None:
    """The console entry point. Commands that only read leave without tearing the interpreter
    down: freeing the model, its vocabulary and the store's bindings takes half a second of a
    cold ``cronaca ask`` and protects nothing (what they write, sentence vectors, is committed
    as it is written)."""
    code = main(sys.argv[1:])
    if _command in QUICK_EXIT:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
