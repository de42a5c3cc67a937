"""Present a run: rich table, Markdown report, hit@k plot; and compare two runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

PERCENT_FREE = ("latency", "tokens", "cases")


def fmt(value: Any, metric: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not any(s in metric for s in PERCENT_FREE):
        return f"{value:.3f}"
    if isinstance(value, float):
        return f"{value:.0f}"
    return str(value)


def metric_rows(aggregate: dict[str, dict[str, float]]) -> list[str]:
    rows: list[str] = []
    for agg in aggregate.values():
        for name in agg:
            if name not in rows:
                rows.append(name)
    return rows


def table(aggregate: dict[str, dict[str, float]], title: str = "") -> Table:
    t = Table(title=title or None)
    t.add_column("metric")
    for mode in aggregate:
        t.add_column(mode, justify="right")
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
    body = (
        f"# cronaca eval: {cfg['set']}\n\n"
        f"{run['n_cases']} cases ({run['n_retrieval_cases']} with relevant articles), "
        f"{run['created']}\n\n{markdown_table(run['aggregate'])}\n\n"
        "Answer, citation and abstention metrics are computed with the first retrieval mode only. "
        "Retrieval metrics exclude unanswerable cases.\n\n"
        f"## Settings\n\n{settings}\n\n## Reproduce\n\n```\n{cfg['command']}\n```\n"
    )
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


def load_run(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        p = p / "run.json"
    if not p.is_file():
        raise FileNotFoundError(f"no run.json at {p}")
    return json.loads(p.read_text(encoding="utf-8"))


def compare(a: dict[str, Any], b: dict[str, Any], console: Console) -> None:
    agg_a, agg_b = a["aggregate"], b["aggregate"]
    modes = [m for m in agg_a if m in agg_b]
    if not modes:
        console.print("[yellow]the two runs share no retrieval mode[/yellow]")
        return
    for mode in modes:
        t = Table(title=f"{mode}: A → B")
        for col in ("metric", "A", "B", "Δ"):
            t.add_column(col, justify="left" if col == "metric" else "right")
        for name in metric_rows({"a": agg_a[mode], "b": agg_b[mode]}):
            va, vb = agg_a[mode].get(name), agg_b[mode].get(name)
            delta = "–"
            if isinstance(va, (int, float)) and isinstance(vb, (int, float)):
                d = vb - va
                shown = fmt(float(d), name)
                delta = ("+" if d > 0 else "") + shown
                if abs(d) > 1e-9 and not any(s in name for s in PERCENT_FREE):
                    good = d > 0 if name != "abstain_wrong" else d < 0
                    delta = f"[{'green' if good else 'red'}]{delta}[/]"
            t.add_row(name, fmt(va, name), fmt(vb, name), delta)
        console.print(t)
