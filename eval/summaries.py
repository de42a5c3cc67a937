"""Summaries: fact coverage, citation validity and length over a summaries eval set.

Each case of the JSONL set (eval/sets/summaries.jsonl) is
``{"id", "kind": "query"|"article"|"digest", "query", "article", "since", "until", "lang", "facts"}``;
``article`` is a file name of the corpus, resolved to the article id through the stored ``path``.
The corpus (default data/sample) is ingested once into the eval cache (never CRONACA_HOME).

Per case: fact coverage (share of facts found in the summary, accent- and case-insensitive),
citation validity (every [n] resolves to a citation, and every quote is text of its article),
length in words, number of stories.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any


def load_cases(path: Path) -> list[dict[str, Any]]:
    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if row.get("kind") in ("query", "article", "digest"):
                cases.append(row)
    return cases


def article_ids_by_file(lib) -> dict[str, str]:
    out = {}
    for a in lib.articles():
        if a.path:
            out.setdefault(Path(a.path).name, a.id)
    return out


def fact_coverage(text: str, facts: list[str]) -> tuple[float, list[str]]:
    from rag.text import fold

    folded = fold(text)
    missing = [f for f in facts if fold(f) not in folded]
    return (1 - len(missing) / len(facts) if facts else 1.0), missing


def citation_check(lib, summary) -> dict[str, Any]:
    from rag.citations import markers
    from rag.text import fold

    numbers = {c.n for c in summary.citations}
    used = markers(summary.text)
    unresolved = sorted({n for n in used if n not in numbers})
    texts: dict[str, str] = {}
    bad_quotes = []
    for c in summary.citations:
        if c.article_id not in texts:
            art = lib.article(c.article_id)
            texts[c.article_id] = art.text if art else ""
        body = texts[c.article_id]
        for part in c.quote.split(" … "):
            if part.strip() and part not in body and fold(part) not in fold(body):
                bad_quotes.append(c.n)
                break
    uncited = sorted(numbers - set(used))
    valid = not unresolved and not bad_quotes and (bool(used) or not summary.citations)
    return {"valid": valid, "markers": len(used), "unresolved": unresolved, "bad_quotes": bad_quotes,
            "uncited_sources": uncited}


def run_case(lib, case: dict[str, Any], ids_by_file: dict[str, str]) -> dict[str, Any]:
    kind = case["kind"]
    kwargs: dict[str, Any] = {"lang": case.get("lang", "it"), "since": case.get("since", ""),
                              "until": case.get("until", "")}
    if kind == "article":
        aid = ids_by_file.get(Path(case["article"]).name)
        if aid is None:
            return {"id": case["id"], "kind": kind, "error": f"no article from file {case['article']}"}
        kwargs["article_id"] = aid
    elif kind == "query":
        kwargs["query"] = case["query"]
    else:
        kwargs["digest"] = True
    t = time.perf_counter()
    summary = lib.summarise(**kwargs)
    seconds = time.perf_counter() - t
    coverage, missing = fact_coverage(summary.text, case.get("facts", []))
    plain = re.sub(r"\[\d+\]", "", summary.text)
    return {
        "id": case["id"], "kind": kind, "lang": kwargs["lang"], "mode": summary.mode,
        "fact_coverage": round(coverage, 4), "missing_facts": missing,
        "citations": citation_check(lib, summary), "words": len(plain.split()),
        "stories": len(summary.stories), "seconds": round(seconds, 2), "summary": summary.text,
    }


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in rows if "error" not in r]
    n = len(ok) or 1
    out: dict[str, Any] = {
        "cases": len(rows), "errors": len(rows) - len(ok),
        "fact_coverage": round(sum(r["fact_coverage"] for r in ok) / n, 4),
        "citation_validity": round(sum(r["citations"]["valid"] for r in ok) / n, 4),
        "mean_words": round(sum(r["words"] for r in ok) / n, 1),
        "mean_seconds": round(sum(r["seconds"] for r in ok) / n, 2),
    }
    for kind in ("query", "article", "digest"):
        sub = [r for r in ok if r["kind"] == kind]
        if sub:
            out[f"fact_coverage_{kind}"] = round(sum(r["fact_coverage"] for r in sub) / len(sub), 4)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("set", nargs="?", default="eval/sets/summaries.jsonl",
                        help="summaries JSONL (default eval/sets/summaries.jsonl)")
    parser.add_argument("--corpus", help="folder to ingest (default data/sample)")
    parser.add_argument("--verbose", "-v", action="store_true", help="print every summary")
    parser.add_argument("--json", action="store_true", help="print the aggregate as JSON on the last line")


def main(args: argparse.Namespace) -> int:
    import rag  # noqa: F401  (offline setup)
    from eval.runner import open_library
    from rag.config import Config

    path = Path(args.set)
    if not path.is_file():
        print(f"no such set: {path}", file=sys.stderr)
        return 2
    cases = load_cases(path)
    corpus = Path(args.corpus) if args.corpus else Config.load().sample_dir
    lib, _info = open_library(corpus)
    ids_by_file = article_ids_by_file(lib)
    rows = []
    for case in cases:
        row = run_case(lib, case, ids_by_file)
        rows.append(row)
        if "error" in row:
            print(f"{row['id']:<5} {row['kind']:<7} ERROR {row['error']}")
            continue
        cit = row["citations"]
        print(f"{row['id']:<5} {row['kind']:<7} {row['lang']} facts {row['fact_coverage']:.2f} "
              f"citations {'ok' if cit['valid'] else 'BAD'} ({cit['markers']} markers) "
              f"{row['words']} words, {row['stories']} stories"
              + (f"  missing: {', '.join(row['missing_facts'])}" if row["missing_facts"] else ""))
        if args.verbose:
            print("   " + row["summary"].replace("\n", "\n   "))
    agg = aggregate(rows)
    print(f"fact coverage {agg['fact_coverage']:.3f}, citation validity {agg['citation_validity']:.3f}, "
          f"mean length {agg['mean_words']} words over {agg['cases']} cases ({agg['errors']} errors)")
    if args.json:
        sys.stdout.flush()
        print(json.dumps({"aggregate": agg, "cases": rows}, ensure_ascii=False))
    return 0 if not agg["errors"] else 1


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m eval.summaries")
    add_arguments(p)
    sys.exit(main(p.parse_args()))
