"""``cronaca summarise`` and ``cronaca digest``: registered by ``rag.cli`` when this module exists."""

from __future__ import annotations

import json

from rich.console import Console
from rich.markup import escape


def print_summary(summary, console: Console | None = None, streamed: bool = False) -> None:
    from rag.cli import out

    console = console or out
    if not streamed:
        console.print(escape(summary.text))
    if summary.notice:
        console.print(f"\n[dim]{escape(summary.notice)}[/dim]")
    by_article = {c.article_id: c for c in summary.citations}
    if summary.stories and len(summary.stories) > 1:
        console.print("\n[bold]Storie[/bold]" if summary.lang == "it" else "\n[bold]Stories[/bold]")
        for i, story in enumerate(summary.stories, 1):
            cited = [f"[{by_article[a].n}]" for a in story.article_ids if a in by_article]
            console.print(f"{i}. {escape(story.title)} — {escape(story.date_range or '?')} — "
                          f"{len(story.article_ids)} art. {escape(' '.join(cited))}")
    if summary.citations:
        console.print("\n[bold]Fonti[/bold]" if summary.lang == "it" else "\n[bold]Sources[/bold]")
        for c in summary.citations:
            where = c.url or c.path
            console.print(f"[bold][{c.n}][/bold] {escape(c.title)} — {escape(c.date or '?')}"
                          f"{' — ' + escape(c.source) if c.source else ''} — [dim]{escape(where)}[/dim]")
            console.print(f"    «{escape(c.quote)}»")


def _run(args, **selection) -> int:
    from rag.cli import _library, err, out
    from rag.llm import LLMError
    from rag.summaries import Summary, SummaryError, stream_summary

    lib = _library(args)
    streaming = not args.json and out.is_terminal
    summary = None
    try:
        for item in stream_summary(lib, lang=args.lang, since=args.since or "", until=args.until or "",
                                   source=args.source or "", answerer=args.answerer,
                                   fallback=args.fallback, **selection):
            if isinstance(item, Summary):
                summary = item
            elif streaming:
                out.print(escape(item), end="")
    except (SummaryError, ValueError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2
    except LLMError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        err.print("[dim]use --fallback extractive to summarise without the language model[/dim]")
        return 3
    assert summary is not None
    if args.json:
        print(json.dumps(summary.to_dict(), ensure_ascii=False))
    else:
        if streaming:
            out.print("\n")
            if summary.mode == "llm":  # the validated text, markers renumbered
                out.print(escape(summary.text))
        print_summary(summary, streamed=streaming)
    return 0


def cmd_summarise(args) -> int:
    from rag.cli import err

    if not (args.id or args.query or args.since or args.until or args.source):
        err.print("[red]error:[/red] give an article ID, --query, or a period (--since/--until)")
        return 2
    return _run(args, article_id=args.id, query=args.query, k=args.k)


def cmd_digest(args) -> int:
    return _run(args, digest=True)


def _common(s) -> None:
    s.add_argument("--until", help="only articles dated on or before (YYYY-MM-DD or YYYY-MM)")
    s.add_argument("--source", help="only articles from this source")
    s.add_argument("--lang", choices=["it", "en"], default="it", help="language of the summary")
    s.add_argument("--answerer", choices=["auto", "llm", "extractive"], default="auto",
                   help="auto = LLM when one is configured, else extractive")
    s.add_argument("--fallback", choices=["none", "extractive"], default="extractive",
                   help="what to do when the LLM fails")
    s.add_argument("--json", action="store_true")


def register(sub) -> None:
    s = sub.add_parser("summarise", aliases=["summarize"],
                       help="summarise an article, a topic (--query) or a period, with citations")
    s.add_argument("id", nargs="?", help="article id (see `cronaca list`)")
    s.add_argument("--query", "-q", help="summarise what the articles say about this")
    s.add_argument("--k", type=int, default=30, help="chunks to retrieve for --query (default 30)")
    s.add_argument("--since", help="only articles dated on or after (YYYY-MM-DD or YYYY-MM)")
    _common(s)
    s.set_defaults(func=cmd_summarise)

    s = sub.add_parser("digest", help="a digest of the stories of a period, with citations")
    s.add_argument("--since", required=True, help="first date (YYYY-MM-DD or YYYY-MM)")
    _common(s)
    s.set_defaults(func=cmd_digest)
