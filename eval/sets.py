"""Eval sets: the project's JSONL format, and SQuAD (.json / .json.gz) turned into cases + corpus."""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Case:
    id: str
    question: str
    answers: list[str] = field(default_factory=list)
    relevant: list[str] = field(default_factory=list)
    unanswerable: bool = False
    filters: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvalSet:
    name: str
    cases: list[Case]
    total: int  # cases in the file before sampling
    records: list[dict[str, str]] | None = None  # corpus built from the set itself (SQuAD)


def is_squad(path: str | Path) -> bool:
    name = str(path).lower()
    return name.endswith(".json") or name.endswith(".json.gz")


def load_jsonl(path: str | Path) -> list[Case]:
    cases = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc})") from exc
            if not obj.get("question"):
                raise ValueError(f"{path}:{lineno}: case without a question")
            cases.append(Case(
                id=str(obj.get("id") or f"L{lineno}"),
                question=obj["question"],
                answers=[str(a) for a in obj.get("answers") or []],
                relevant=[str(r) for r in obj.get("relevant") or []],
                unanswerable=bool(obj.get("unanswerable", False)),
                filters={k: str(v) for k, v in (obj.get("filters") or {}).items()
                         if k in ("since", "until", "source") and v},
            ))
    return cases


def load_squad(path: str | Path, max_articles: int | None = None) -> tuple[list[Case], list[dict]]:
    """Every paragraph becomes an article ``title#index``; every question a case pointing at it."""
    opener = gzip.open if str(path).lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    articles = data.get("data", data) if isinstance(data, dict) else data
    if max_articles:
        articles = articles[:max_articles]
    cases: list[Case] = []
    records: list[dict] = []
    same_text: dict[str, list[str]] = {}  # ingest keeps one of identical paragraphs: accept any
    for art in articles:
        for i, para in enumerate(art.get("paragraphs", [])):
            same_text.setdefault(" ".join(para["context"].split()), []).append(f"{art.get('title', '')}#{i}")
    for art in articles:
        title = art.get("title", "")
        for i, para in enumerate(art.get("paragraphs", [])):
            pid = f"{title}#{i}"
            records.append({"id": pid, "title": title, "text": para["context"]})
            for qa in para.get("qas", []):
                golds = list(dict.fromkeys(a["text"] for a in qa.get("answers", []) if a.get("text")))
                impossible = bool(qa.get("is_impossible", False)) or not golds
                cases.append(Case(
                    id=str(qa.get("id") or f"{pid}/{len(cases)}"),
                    question=qa["question"],
                    answers=golds,
                    relevant=[] if impossible else
                    [pid] + [p for p in same_text[" ".join(para["context"].split())] if p != pid],
                    unanswerable=impossible,
                ))
    return cases, records


def sample(cases: list[Case], limit: int | None, seed: int) -> list[Case]:
    if not limit or limit >= len(cases):
        return list(cases)
    return random.Random(seed).sample(cases, limit)


def load_set(path: str | Path, limit: int | None = None, seed: int = 0,
             max_articles: int | None = None) -> EvalSet:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"eval set {path} not found")
    if is_squad(path):
        cases, records = load_squad(path, max_articles)
    else:
        cases, records = load_jsonl(path), None
    return EvalSet(name=path.name, cases=sample(cases, limit, seed), total=len(cases), records=records)
