"""Eval sets: the project's JSONL format, and SQuAD (.json / .json.gz) turned into cases + corpus.

The JSONL schema is documented in ``eval/sets/README.md``. Values are type-checked here, with
an error naming ``file:line``, because a mistyped gold (a string where a list belongs) would
otherwise be scored silently as something else; keys this harness does not know are ignored.
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SPLITS = ("dev", "held")
FILTER_KEYS = ("since", "until", "source")


@dataclass
class Current:
    """The newest state of a fact that changed during the period, and the states it replaced."""

    answers: list[str]
    date: str = ""
    superseded: list[str] = field(default_factory=list)


@dataclass
class Version:
    """One outlet's version of a disputed fact: the answer must state ``value`` citing ``source``."""

    value: str
    source: str


@dataclass
class Case:
    id: str
    question: str
    answers: list[str] = field(default_factory=list)
    relevant: list[str] = field(default_factory=list)
    unanswerable: bool = False
    filters: dict[str, str] = field(default_factory=dict)
    lang: str = ""
    type: str = ""
    must_include: list[str] = field(default_factory=list)
    current: Current | None = None
    as_of: str = ""
    history: list[str] = field(default_factory=list)  # earlier user turns, oldest first
    resolved: list[str] = field(default_factory=list)
    split: str = ""
    conflict: list[Version] = field(default_factory=list)  # sources that disagree: every version
    corpus: str = ""  # articles of its own, eval/corpora/<corpus>/, added to the run's corpus for it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EvalSet:
    name: str
    cases: list[Case]
    total: int  # cases in the file before sampling
    records: list[dict[str, str]] | None = None  # corpus built from the set itself (SQuAD)
    info: dict[str, Any] = field(default_factory=dict)  # how the cases were chosen, for run.json

    @property
    def splits(self) -> list[str]:
        """The splits present among the chosen cases, in canonical order."""
        present = {c.split for c in self.cases if c.split}
        return [s for s in SPLITS if s in present]


def is_squad(path: str | Path) -> bool:
    name = str(path).lower()
    return name.endswith(".json") or name.endswith(".json.gz")


# --------------------------------------------------------------------------- JSONL


class _Line:
    """Typed reads of one JSON object, every error prefixed with ``file:line``."""

    def __init__(self, obj: dict[str, Any], where: str) -> None:
        self.obj, self.where = obj, where

    def fail(self, message: str) -> ValueError:
        return ValueError(f"{self.where}: {message}")

    def text(self, key: str, obj: dict[str, Any] | None = None) -> str:
        value = (self.obj if obj is None else obj).get(key)
        if value is None or value == "":
            return ""
        if not isinstance(value, str):
            raise self.fail(f"'{key}' must be a string, got {type(value).__name__} {value!r:.60}")
        return value

    def texts(self, key: str, obj: dict[str, Any] | None = None) -> list[str]:
        value = (self.obj if obj is None else obj).get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(f"'{key}' must be a list of strings, got {value!r:.80}")
        return list(value)

    def flag(self, key: str) -> bool:
        value = self.obj.get(key, False)
        if not isinstance(value, bool):
            raise self.fail(f"'{key}' must be true or false, got {value!r:.40}")
        return value

    def date(self, key: str, obj: dict[str, Any] | None = None) -> str:
        from rag.dates import DateError, parse_date

        value = self.text(key, obj=obj)
        if not value:
            return ""
        try:
            return parse_date(value)
        except DateError as exc:
            raise self.fail(f"'{key}': {exc}") from None

    def mapping(self, key: str) -> dict[str, Any] | None:
        value = self.obj.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail(f"'{key}' must be an object, got {value!r:.60}")
        return value


def parse_case(obj: Any, where: str) -> Case:
    """One JSONL object → a ``Case``; ``where`` ("file:line") names it in every error."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: a case must be a JSON object")
    line = _Line(obj, where)
    if not obj.get("question"):
        raise line.fail("case without a question")
    current = None
    cur = line.mapping("current")
    if cur is not None:
        current = Current(answers=line.texts("answers", cur), date=line.date("date", cur),
                          superseded=line.texts("superseded", cur))
        if not current.answers:
            raise line.fail("'current' needs a non-empty 'answers' list")
    split = line.text("split")
    if split and split not in SPLITS:
        raise line.fail(f"'split' must be one of {', '.join(SPLITS)}, got {split!r}")
    filters = line.mapping("filters") or {}
    for key in FILTER_KEYS:
        line.text(key, obj=filters)
    raw_versions = obj.get("conflict") or []
    if not isinstance(raw_versions, list) or not all(isinstance(v, dict) for v in raw_versions):
        raise line.fail(f"'conflict' must be a list of {{\"value\", \"source\"}} objects, got {raw_versions!r:.60}")
    versions = [Version(value=line.text("value", v), source=line.text("source", v)) for v in raw_versions]
    if any(not v.value or not v.source for v in versions) or len(versions) == 1:
        raise line.fail("'conflict' needs two or more versions, each with a 'value' and a 'source'")
    ident = obj.get("id")
    if ident is not None and not isinstance(ident, (str, int)):
        raise line.fail(f"'id' must be a string, got {ident!r:.40}")
    return Case(
        id=str(ident or ""),
        question=line.text("question"),  # present: checked above
        answers=line.texts("answers"),
        relevant=line.texts("relevant"),
        unanswerable=line.flag("unanswerable"),
        filters={k: filters[k] for k in FILTER_KEYS if filters.get(k)},
        lang=line.text("lang"),
        type=line.text("type"),
        must_include=line.texts("must_include"),
        current=current,
        as_of=line.date("as_of"),
        history=line.texts("history"),
        resolved=line.texts("resolved"),
        split=split,
        conflict=versions,
        corpus=line.text("corpus"),
    )


def load_jsonl(path: str | Path) -> list[Case]:
    cases: list[Case] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc})") from exc
            case = parse_case(obj, f"{path}:{lineno}")
            case.id = case.id or f"L{lineno}"
            if case.id in seen:
                raise ValueError(f"{path}:{lineno}: id {case.id!r} already used on line {seen[case.id]}")
            seen[case.id] = lineno
            cases.append(case)
    return cases


def choose_split(cases: list[Case], split: str, where: str) -> list[Case]:
    """The cases of one half (``dev`` / ``held``), or all of them."""
    if split == "all":
        return list(cases)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (use dev, held or all)")
    if not any(c.split for c in cases):
        raise ValueError(f"{where} has no 'split' field: use --split all")
    return [c for c in cases if c.split == split]


# --------------------------------------------------------------------------- SQuAD


def _squad_articles(path: str | Path, max_articles: int | None,
                    skip: set[str] | None = None) -> list[dict[str, Any]]:
    """The file's articles, the first ``max_articles``, without those titled in ``skip`` (the
    articles a trained reader saw)."""
    opener = gzip.open if str(path).lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    articles = data.get("data", data) if isinstance(data, dict) else data
    if skip:
        articles = [a for a in articles if a.get("title", "") not in skip]
    return articles[:max_articles] if max_articles else articles


def _flat(text: str) -> str:
    return " ".join(text.split())


def squad_cases(articles: list[dict[str, Any]]) -> tuple[list[Case], list[dict]]:
    """Every paragraph becomes an article ``title#index``; every question a case pointing at it."""
    cases: list[Case] = []
    records: list[dict] = []
    same_text: dict[str, list[str]] = {}  # ingest keeps one of identical paragraphs: accept any
    for art in articles:
        for i, para in enumerate(art.get("paragraphs", [])):
            same_text.setdefault(_flat(para["context"]), []).append(f"{art.get('title', '')}#{i}")
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
                    relevant=[] if impossible else [pid] + [p for p in same_text[_flat(para["context"])] if p != pid],
                    unanswerable=impossible,
                ))
    return cases, records


def load_squad(path: str | Path, max_articles: int | None = None,
               skip: set[str] | None = None) -> tuple[list[Case], list[dict]]:
    return squad_cases(_squad_articles(path, max_articles, skip))


def split_articles(articles: list[dict[str, Any]], seed: int) -> tuple[list[dict], list[dict]]:
    """Articles shuffled with ``random.Random(seed)``: the first ceil(n/2) are "in" (the corpus),
    the rest "out" (their questions are foreign). Each half keeps the file's order."""
    order = list(range(len(articles)))
    random.Random(seed).shuffle(order)
    n_in = (len(articles) + 1) // 2
    chosen = set(order[:n_in])
    return ([a for i, a in enumerate(articles) if i in chosen],
            [a for i, a in enumerate(articles) if i not in chosen])


def squad_with_foreign(path: str | Path, n_foreign: int, limit: int | None, seed: int,
                       max_articles: int | None = None, skip: set[str] | None = None) -> EvalSet:
    """Abstention at scale: the corpus is the "in" half of the articles; the cases are ``limit``
    questions of those articles (answerable) plus ``n_foreign`` questions of the "out" half,
    marked unanswerable with no relevant article. A foreign question whose paragraph also
    occurs verbatim in the corpus is not foreign and is never drawn."""
    articles = _squad_articles(path, max_articles, skip)
    if len(articles) < 2:
        raise ValueError(f"{path}: --foreign needs at least two articles")
    inside, outside = split_articles(articles, seed)
    cases, records = squad_cases(inside)
    corpus_texts = {_flat(r["text"]) for r in records}
    pool = [
        Case(id=str(qa.get("id") or f"{art.get('title', '')}#{i}/{j}"), question=qa["question"], unanswerable=True)
        for art in outside
        for i, para in enumerate(art.get("paragraphs", []))
        if _flat(para["context"]) not in corpus_texts
        for j, qa in enumerate(para.get("qas", []))
    ]
    if n_foreign > len(pool):
        raise ValueError(f"--foreign {n_foreign}: the left-out articles have only {len(pool)} questions")
    answerable = sample(cases, limit, seed)
    foreign = random.Random(f"foreign/{seed}").sample(pool, n_foreign)
    chosen = answerable + foreign
    random.Random(f"order/{seed}").shuffle(chosen)  # interleaved, so a partial run is a fair sample
    info = {"foreign": n_foreign, "articles_in": [a.get("title", "") for a in inside],
            "articles_out": [a.get("title", "") for a in outside], "paragraphs_in": len(records),
            "answerable_pool": len(cases), "foreign_pool": len(pool)}
    return EvalSet(name=Path(path).name, cases=chosen, total=len(cases) + len(pool), records=records, info=info)


# --------------------------------------------------------------------------- any set


def sample(cases: list[Case], limit: int | None, seed: int) -> list[Case]:
    if not limit or limit >= len(cases):
        return list(cases)
    return random.Random(seed).sample(cases, limit)


def load_set(path: str | Path, limit: int | None = None, seed: int = 0, max_articles: int | None = None,
             split: str = "all", foreign: int | None = None, skip_articles: set[str] | None = None) -> EvalSet:
    """``split`` selects a half before sampling; ``foreign`` (SQuAD only) adds that many
    questions from left-out articles, ``limit`` still counting the answerable ones."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"eval set {path} not found")
    if is_squad(path):
        if split != "all":
            raise ValueError(f"{path}: a SQuAD set has no splits (use --split all)")
        if foreign:
            return squad_with_foreign(path, foreign, limit, seed, max_articles, skip_articles)
        cases, records = load_squad(path, max_articles, skip_articles)
        return EvalSet(name=path.name, cases=sample(cases, limit, seed), total=len(cases), records=records)
    if foreign:
        raise ValueError(f"{path}: --foreign works on SQuAD sets only (a JSONL set lists its unanswerable cases)")
    cases = load_jsonl(path)
    chosen = choose_split(cases, split, str(path))
    info = {"split": split} if split != "all" else {}
    return EvalSet(name=path.name, cases=sample(chosen, limit, seed), total=len(cases), info=info)
