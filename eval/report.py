"""Present a run: rich table, Markdown report, hit@k plot; and compare two runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

PERCENT_FREE = ("latency", "tokens", "cases", "_total")  # counts and milliseconds, not rates
LOWER_IS_BETTER = ("abstain_wrong", "dup_sentences", "false_conflict")  # dup_sentences and dup_sentences_total


def fmt(value: Any, metric: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not any(s in metric for s in PERCENT_FREE):
        return f"{value:.3f}"
    if isinstance(value, float):
        return f"{value:.0f}"
    return str(value)


def side_by_side(aggregate: dict[str, dict[str, float]], splits: dict[str, dict[str, dict[str, float]]] | None
                 ) -> dict[str, dict[str, float]]:
    """Columns for one table: each mode over all cases, then that mode on each split ("hybrid dev")."""
    columns: dict[str, dict[str, float]] = {}
    for mode, agg in aggregate.items():
        columns[mode] = agg
        for split, by_mode in (splits or {}).items():
            if mode in by_mode:
                columns[f"{mode} {split}"] = by_mode[mode]
    return columns


TYPE_ORDER = ("cases", "hit@5", "answer_contains", "lead_contains", "current_correct", "abstain_correct",
              "abstain_wrong")


def _type_columns(by_type: dict[str, dict[str, float]]) -> list[str]:
    """The metrics present for any type, in a fixed order (not in the order the first type had them)."""
    present = {name for stats in by_type.values() for name in stats}
    return [n for n in TYPE_ORDER if n in present] + sorted(present - set(TYPE_ORDER))


def type_table(by_type: dict[str, dict[str, float]], title: str = "") -> Table:
    t = Table(title=title or None)
    names = _type_columns(by_type)
    t.add_column("type", no_wrap=True)
    for name in names:
        t.add_column(name, justify="right")
    for typ, stats in by_type.items():
        t.add_row(typ, *(fmt(stats.get(n), n) for n in names))
    return t


def type_markdown(by_type: dict[str, dict[str, float]]) -> str:
    names = _type_columns(by_type)
    lines = ["| type | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for typ, stats in by_type.items():
        lines.append(f"| {typ} | " + " | ".join(fmt(stats.get(n), n) for n in names) + " |")
    return "\n".join(lines)


def metric_rows(aggregate: dict[str, dict[str, float]]) -> list[str]:
    rows: list[str] = []
    for agg in aggregate.values():
        for name in agg:
            if name not in rows:
                rows.append(name)
    return rows


def table(aggregate: dict[str, dict[str, float]], title: str = "") -> Table:
    t = Table(title=title or None)
    t.add_column("metric", no_wrap=True, min_width=max(map(len, metric_rows(aggregate)), default=6))
    for column in aggregate:  # "hybrid dev" is headed "hybrid" over "dev", to stay narrow
        t.add_column(column.replace(" ", "\n"), justify="right", no_wrap=True, min_width=5)
    for name in metric_rows(aggregate):
        t.add_row(name, *(fmt(aggregate[m].get(name), name) for m in aggregate))
    return t


def markdown_table(aggregate: dict[str, dict[str, float]]) -> str:
    modes = list(aggregate)
    lines = ["| metric | " + " | ".join(modes) + " |", "|---|" + "---:|" * len(modes)]
    for name in metric_rows(aggregate):
        lines.append(f"| {name} | " + " | ".join(fmt(aggregate[m].get(name), name) for m in modes) + " |")
    return "\n".join(lines)


def write_markdown(path: Path, run: dict[str, Any]) -> None:
    cfg = run["config"]
    settings = "\n".join(f"- **{k}**: `{v}`" for k, v in cfg.items() if k != "command")
    splits = run.get("splits") or {}
    body = (
        f"# cronaca eval: {cfg['set']}\n\n"
        f"{run['n_cases']} cases ({run['n_retrieval_cases']} with relevant articles), "
        f"{run['created']}\n\n{markdown_table(side_by_side(run['aggregate'], splits))}\n\n"
        "Answer, citation and abstention metrics are computed with the first retrieval mode only. "
        "Retrieval metrics exclude unanswerable cases."
        + (" Columns named `<mode> dev` / `<mode> held` are the two halves of the set." if splits else "")
        + "\n\n"
    )
    if run.get("by_type"):
        body += f"## By type (first mode)\n\n{type_markdown(run['by_type'])}\n\n"
    body += f"## Settings\n\n{settings}\n\n## Reproduce\n\n```\n{cfg['command']}\n```\n"
    path.write_text(body, encoding="utf-8")


def write_plot(path: Path, hitk: dict[str, list[float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for mode, curve in hitk.items():
        if curve:
            ax.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3, label=mode)
    ax.set_xlabel("k (articles)")
    ax.set_ylabel("hit@k")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(range(1, 21))
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("hit@k by retrieval mode")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_decline_plot(path: Path, curve: dict[str, Any]) -> None:
    """Unanswerable declined against answerable wrongly declined, one point a threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [p for p in curve["points"] if p["declined"] is not None and p["wrongly_declined"] is not None]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    if pts:
        ax.plot([p["wrongly_declined"] for p in pts], [p["declined"] for p in pts], marker="o", markersize=3)
        for p in pts[4::10]:
            ax.annotate(f"{p['threshold']:.2f}", (p["wrongly_declined"], p["declined"]), fontsize=7)
    ax.set_xlabel(f"answerable wrongly declined (of {curve['answerable']})")
    ax.set_ylabel(f"unanswerable declined (of {curve['unanswerable']})")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title("declining over the reader's threshold")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def load_run(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        p = p / "run.json"
    if not p.is_file():
        raise FileNotFoundError(f"no run.json at {p}")
    return json.loads(p.read_text(encoding="utf-8"))


def _delta(name: str, va: Any, vb: Any) -> str:
    """B - A, green when B is better; counts and latencies are shown uncoloured."""
    if not (isinstance(va, (int, float)) and isinstance(vb, (int, float))):
        return "–"
    d = vb - va
    shown = ("+" if d > 0 else "") + fmt(float(d), name)
    if abs(d) <= 1e-9 or any(s in name for s in PERCENT_FREE if s != "_total"):
        return shown
    good = d < 0 if name.startswith(LOWER_IS_BETTER) else d > 0
    return f"[{'green' if good else 'red'}]{shown}[/]"


def compare_table(title: str, agg_a: dict[str, float], agg_b: dict[str, float]) -> Table:
    t = Table(title=title)
    for col in ("metric", "A", "B", "Δ"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    for name in metric_rows({"a": agg_a, "b": agg_b}):
        va, vb = agg_a.get(name), agg_b.get(name)
        t.add_row(name, fmt(va, name), fmt(vb, name), _delta(name, va, vb))
    return t


def compare(a: dict[str, Any], b: dict[str, Any], console: Console) -> None:
    """Every metric of every shared mode, then of every shared split, then answer_contains by type."""
    agg_a, agg_b = a["aggregate"], b["aggregate"]
    modes = [m for m in agg_a if m in agg_b]
    if not modes:
        console.print("[yellow]the two runs share no retrieval mode[/yellow]")
        return
    for mode in modes:
        console.print(compare_table(f"{mode}: A → B", agg_a[mode], agg_b[mode]))
    splits_a, splits_b = a.get("splits") or {}, b.get("splits") or {}
    for split in (s for s in splits_a if s in splits_b):
        for mode in (m for m in modes if m in splits_a[split] and m in splits_b[split]):
            console.print(compare_table(f"{mode} {split}: A → B", splits_a[split][mode], splits_b[split][mode]))
    types_a, types_b = a.get("by_type") or {}, b.get("by_type") or {}
    shared = [t for t in types_a if t in types_b]
    if shared:
        t = Table(title=f"by type ({modes[0]}): answer_contains (abstain_correct for unanswerable)")
        for col in ("type", "A", "B", "Δ"):
            t.add_column(col, justify="left" if col == "type" else "right")
        for typ in shared:
            name = "answer_contains" if "answer_contains" in types_a[typ] else "abstain_correct"
            va, vb = types_a[typ].get(name), types_b[typ].get(name)
            t.add_row(typ, fmt(va, name), fmt(vb, name), _delta(name, va, vb))
        console.print(t)
