"""``cronaca summarise`` and ``cronaca digest``: registered by ``rag.cli`` when this module exists."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape


def print_summary(summary, console: Console | None = None, streamed: bool = False) -> None:
    from rag.cli import out, print_sources

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
    print_sources(summary.citations, summary.lang, console)


def _run(args, **selection) -> int:
    from rag.cli import _library, emit, err
    from rag.summaries import Summary, SummaryError, stream_summary

    lib = _library(args)
    items = stream_summary(lib, lang=args.lang, since=args.since or "", until=args.until or "",
                           source=args.source or "", answerer=args.answerer,
                           fallback=args.fallback, **selection)
    try:
        return emit(items, Summary, args.json, print_summary, "summarise")
    except (SummaryError, ValueError) as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2


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
