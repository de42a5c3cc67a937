"""Fit the extractive answerer's sentence model: which retrieved sentence answers a question.

    python -m eval.fit_answerer [--squad-corpus DIR] [--squad-limit 300] [--write]

Every candidate sentence the answerer would consider is described by ``rag.extractive.FEATURES``
and labelled by whether it contains a gold answer (for a present-state question, the current
answer). Data, each with its own weight:

* ``eval/sets/natural.jsonl``, **dev half only** (the held half stays aside to check the fit);
* ``eval/sets/sample.jsonl``;
* SQuAD-it questions over a cached SQuAD store (``--squad-corpus``, a folder made by
  ``python -m eval run ... --foreign`` or any SQuAD run), when given.

The model is L2-regularised logistic regression (Newton's method, numpy). The decline threshold
is chosen on the same dev data: the lowest probability at which at most 5% of answerable
questions are declined while most unanswerable ones are. ``--write`` stores both in
``rag/extractive_model.json``; the report shows the figures on dev and, separately, on held.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import rag  # noqa: F401  (offline setup first)

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = {"natural": 3.0, "sample": 2.0, "squad": 1.0}


def collect(lib, cases: list[dict], source: str, reader=None) -> list[dict]:
    """One row per case: the candidates' features, labels and gates (``reader``: with its score)."""
    from eval.metrics import contains
    from rag import extractive
    from rag.conversation import standalone_question
    from rag.question import analyse

    rows = []
    for case in cases:
        question = standalone_question([(h, "") for h in case.get("history", [])], case["question"])
        retrieval = lib.search(question, as_of=case.get("as_of", ""), **case.get("filters", {}))
        asked = analyse(question)
        cands = extractive.candidates(retrieval.hits, asked.lang)
        extractive.score(asked, cands, retrieval.hits, lib.embedder, retrieval.vector, reader=reader)
        golds = (case.get("current") or {}).get("answers") or case.get("answers") or []
        unknown = bool(extractive.unknown_names(asked, lib.retriever.vocabulary))
        feats, labels, gates = [], [], []
        for c in cands:
            if c.features is None:
                continue
            feats.append(c.features)
            labels.append(float(contains(c.text, golds)))
            gates.append(bool(extractive.may_answer(c)))
        rows.append({"id": case["id"], "source": source, "split": case.get("split", "dev"),
                     "unanswerable": bool(case.get("unanswerable")) or not golds, "unknown": unknown,
                     "x": np.array(feats).reshape(len(feats), -1), "y": np.array(labels), "gate": np.array(gates)})
    return rows


def fit(rows: list[dict], l2: float = 1.0, iterations: int = 50) -> np.ndarray:
    xs = [r["x"] for r in rows if len(r["y"])]
    ys = [r["y"] for r in rows if len(r["y"])]
    ws = [np.full(len(r["y"]), WEIGHTS[r["source"]]) for r in rows if len(r["y"])]
    x, y, sw = np.vstack(xs), np.concatenate(ys), np.concatenate(ws)
    w = np.zeros(x.shape[1])
    reg = l2 * np.eye(x.shape[1])
    reg[0, 0] = 0.0  # no penalty on the bias
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(x @ w)))
        grad = x.T @ (sw * (p - y)) + reg @ w
        hess = (x * (sw * p * (1 - p))[:, None]).T @ x + reg
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return w


def fit_ranking(rows: list[dict], l2: float = 1.0, iterations: int = 300, rate: float = 0.5) -> np.ndarray:
    """Conditional logit over each question's gated candidates: the right sentence should be the
    first one, whatever the absolute level of its features (gradient ascent, L2)."""
    groups = []
    for r in rows:
        gate = r["gate"]
        if len(r["y"]) and (r["y"] * gate).any() and gate.sum() > 1:
            groups.append((r["x"][gate], r["y"][gate], WEIGHTS[r["source"]]))
    w = np.zeros(groups[0][0].shape[1]) if groups else np.zeros(1)
    total = sum(g[2] for g in groups) or 1.0
    for _ in range(iterations):
        grad = -l2 * w
        grad[0] = 0.0
        for x, y, weight in groups:
            s = x @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            q = y * p
            q /= q.sum()
            grad += weight * (x.T @ (q - p)) / total * len(groups)
        w += rate * grad / len(groups)
    return w


def best_probabilities(rows: list[dict], w: np.ndarray, rank: np.ndarray | None = None
                       ) -> list[tuple[dict, float, bool]]:
    """Per case: the probability of the gated candidate ranked first, and whether it is right."""
    out = []
    for r in rows:
        if r["unknown"] or not r["gate"].any():
            out.append((r, 0.0, False))
            continue
        order = r["x"] @ (rank if rank is not None else w)
        i = int(np.argmax(np.where(r["gate"], order, -np.inf)))
        p = 1 / (1 + np.exp(-(r["x"][i] @ w)))
        out.append((r, float(p), bool(r["y"][i])))
    return out


def choose_threshold(scored: list[tuple[dict, float, bool]], max_wrong: float = 0.05) -> float:
    """The highest threshold that declines at most ``max_wrong`` of the answerable questions that
    the model would otherwise answer — the rest of the room goes to declining unanswerable ones."""
    answerable = sorted(p for r, p, _ in scored if not r["unanswerable"] and p > 0)
    n = len([1 for r, _, _ in scored if not r["unanswerable"]])
    if not answerable:
        return 0.5
    budget = int(max_wrong * n) - sum(1 for r, p, _ in scored if not r["unanswerable"] and p <= 0)
    budget = max(0, budget)
    return float(answerable[budget] - 1e-6) if budget < len(answerable) else 0.5


def report(scored: list[tuple[dict, float, bool]], threshold: float, label: str) -> dict:
    ans = [(p, ok) for r, p, ok in scored if not r["unanswerable"]]
    una = [p for r, p, _ in scored if r["unanswerable"]]
    answered = [(p, ok) for p, ok in ans if p >= threshold]
    out = {
        "cases": len(scored),
        "abstain_wrong": round(1 - len(answered) / len(ans), 3) if ans else None,
        "abstain_correct": round(sum(p < threshold for p in una) / len(una), 3) if una else None,
        "lead_right_when_answered": round(sum(ok for _, ok in answered) / len(answered), 3) if answered else None,
    }
    print(f"{label:10} {json.dumps(out)}")
    return out


def load_cases(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def squad_cases(corpus: Path, limit: int, seed: int = 0, skip: set[str] | None = None) -> list[dict]:
    """SQuAD questions whose paragraph is in ``corpus``, a seeded sample of ``limit``; none of the
    articles in ``skip`` (those the reader trained on: its score there would be better than it is)."""
    import random

    from eval.sets import load_squad

    stored = {json.loads(line)["id"] for line in (corpus / "squad.jsonl").read_text(encoding="utf-8").splitlines()}
    path = ROOT.parent / "shared" / "data" / "squad-it" / "squad_it_dev.json.gz"
    cases, _ = load_squad(path, skip=skip)
    mine = [c for c in cases if c.relevant and c.relevant[0] in stored]
    random.Random(seed).shuffle(mine)
    return [{"id": c.id, "question": c.question, "answers": c.answers} for c in mine[:limit]]


def main(argv: list[str] | None = None) -> int:
    from eval.runner import open_library
    from rag import extractive
    from rag.config import Config

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--squad-corpus", help="a cached SQuAD corpus folder (.eval-cache/corpora/<key>)")
    p.add_argument("--squad-limit", type=int, default=300)
    p.add_argument("--l2", type=float, default=1.0)
    p.add_argument("--reader", type=Path, help="a reader file (rag/reader_delta.npz): its score is a feature")
    p.add_argument("--write", action="store_true", help="write rag/extractive_model.json")
    args = p.parse_args(argv)
    reader, skip = None, None
    if args.reader:
        from rag.reader import Reader

        reader = Reader(args.reader)
        skip = set(reader.delta.meta.get("train_articles", {}).get("squad-it", []))

    lib, _ = open_library(Config.load().sample_dir)
    natural = load_cases(ROOT / "eval" / "sets" / "natural.jsonl")
    rows = collect(lib, [c for c in natural if c.get("split") == "dev"], "natural", reader)
    held = collect(lib, [c for c in natural if c.get("split") == "held"], "natural", reader)
    sample = load_cases(ROOT / "eval" / "sets" / "sample.jsonl")
    rows += collect(lib, sample, "sample", reader)
    if args.squad_corpus:
        squad_lib, _ = open_library(Path(args.squad_corpus))
        rows += collect(squad_lib, squad_cases(Path(args.squad_corpus), args.squad_limit, skip=skip), "squad",
                        reader)
    print(f"{sum(len(r['y']) for r in rows)} candidates from {len(rows)} cases", file=sys.stderr)
    w = fit(rows, l2=args.l2)
    rank = fit_ranking(rows, l2=args.l2 / 10)
    dev_scored = best_probabilities([r for r in rows if r["source"] != "squad"], w, rank)
    threshold = choose_threshold(dev_scored)
    print("weights:", json.dumps(dict(zip(extractive.FEATURES, np.round(w, 3).tolist()))))
    print("rank weights:", json.dumps(dict(zip(extractive.FEATURES, np.round(rank, 3).tolist()))))
    print(f"threshold {threshold:.3f}")
    figures = {"dev": report(dev_scored, threshold, "dev"),
               "held": report(best_probabilities(held, w, rank), threshold, "held")}
    if args.squad_corpus:
        figures["squad"] = report(best_probabilities([r for r in rows if r["source"] == "squad"], w, rank),
                                  threshold, "squad")
    if args.write:
        data = {"features": list(extractive.FEATURES), "weights": np.round(w, 4).tolist(),
                "rank_weights": np.round(rank, 4).tolist(),
                "threshold": round(threshold, 4), "fitted_on": {
                    "natural_dev": sum(r["source"] == "natural" for r in rows),
                    "sample": sum(r["source"] == "sample" for r in rows),
                    "squad": sum(r["source"] == "squad" for r in rows)},
                "reader": reader.delta.digest if reader is not None else None,
                "figures": figures, "command": "python -m eval.fit_answerer " + " ".join(argv or sys.argv[1:])}
        extractive.MODEL_FILE.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        print(f"written {extractive.MODEL_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
