"""Same-story detection on labelled news pairs: precision, recall, F1 at a threshold.

Input: JSONL with text_1, text_2, label (3 = same story, 0-2 = not, 9 = unlabelled: skipped),
e.g. ../shared/data/italian-news-pairs/pairs_dev.jsonl. Scores come from
``rag.stories.same_story_score`` with the configured embedder; embeddings are cached under the
eval cache, so a second run takes seconds.

Without ``--threshold`` it also reports the threshold that maximises F1 subject to precision
>= ``--min-precision``, found on the same file: an optimistic number, as any tuning on the data
it is measured on. The number to quote is the one at the shipped default threshold.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def load_pairs(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                if int(row.get("label", 9)) != 9:
                    rows.append(row)
    return rows


def _embed_cached(embedder, texts: list[str]) -> np.ndarray:
    from eval.runner import cache_root

    h = hashlib.sha1(embedder.name.encode())
    for t in texts:
        h.update(t.encode("utf-8") + b"\0")
    path = cache_root() / "pairs" / f"{h.hexdigest()[:20]}.npy"
    if path.is_file():
        return np.load(path)
    vecs = np.vstack([embedder.embed_passages(texts[i : i + 64]) for i in range(0, len(texts), 64)])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs)
    return vecs


def scores_for(rows: list[dict[str, Any]], embedder) -> np.ndarray:
    from rag.stories import combine, lexical_part

    a = [r["text_1"] for r in rows]
    b = [r["text_2"] for r in rows]
    vecs = _embed_cached(embedder, a + b)
    cos = (vecs[: len(a)] * vecs[len(a) :]).sum(axis=1)
    return np.array([combine(float(c), lexical_part(x, y)) for c, x, y in zip(cos, a, b)])


def metrics(scores: np.ndarray, gold: np.ndarray, threshold: float) -> dict[str, Any]:
    pred = scores >= threshold
    tp = int((pred & gold).sum())
    fp = int((pred & ~gold).sum())
    fn = int((~pred & gold).sum())
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"threshold": round(float(threshold), 4), "precision": round(p, 4), "recall": round(r, 4),
            "f1": round(f1, 4), "tp": tp, "fp": fp, "fn": fn, "tn": int((~pred & ~gold).sum())}


def best_threshold(scores: np.ndarray, gold: np.ndarray, min_precision: float) -> dict[str, Any] | None:
    best = None
    for t in np.unique(np.round(scores, 4)):
        m = metrics(scores, gold, float(t))
        if m["precision"] >= min_precision and (best is None or m["f1"] > best["f1"]):
            best = m
    return best


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="JSONL of text_1, text_2, label (3 = same story)")
    parser.add_argument("--threshold", type=float, help="score at this threshold only")
    parser.add_argument("--min-precision", type=float, default=0.90,
                        help="precision floor when searching the threshold (default 0.90)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on the last line")


def _line(name: str, m: dict[str, Any] | None) -> str:
    if m is None:
        return f"{name:<28} no threshold reaches the precision floor"
    return (f"{name:<28} P={m['precision']:.3f} R={m['recall']:.3f} F1={m['f1']:.3f} "
            f"threshold={m['threshold']:.3f}  (tp {m['tp']}, fp {m['fp']}, fn {m['fn']}, tn {m['tn']})")


def main(args: argparse.Namespace) -> int:
    import rag  # noqa: F401  (offline setup)
    from rag.config import Config
    from rag.embeddings import make_embedder
    from rag.stories import DEFAULT_THRESHOLD

    path = Path(args.file)
    if not path.is_file():
        print(f"no such file: {path}", file=sys.stderr)
        return 2
    rows = load_pairs(path)
    if not rows:
        print(f"{path}: no labelled pairs", file=sys.stderr)
        return 2
    embedder = make_embedder(Config.load())
    scores = scores_for(rows, embedder)
    gold = np.array([int(r["label"]) == 3 for r in rows])
    result: dict[str, Any] = {"file": str(path), "pairs": len(rows), "positives": int(gold.sum()),
                              "embedder": embedder.name}
    print(f"{path}: {len(rows)} labelled pairs, {int(gold.sum())} same-story (label 3)")
    if args.threshold is not None:
        result["at_threshold"] = metrics(scores, gold, args.threshold)
        print(_line("at --threshold", result["at_threshold"]))
    else:
        result["default"] = metrics(scores, gold, DEFAULT_THRESHOLD)
        result["best"] = best_threshold(scores, gold, args.min_precision)
        result["min_precision"] = args.min_precision
        print(_line("shipped default (stories.py)", result["default"]))
        print(_line(f"best F1 @ P>={args.min_precision:.2f}", result["best"]))
        print("note: the best threshold is tuned on this same file, so its numbers are optimistic")
    if args.json:
        sys.stdout.flush()
        print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m eval.pairs")
    add_arguments(p)
    sys.exit(main(p.parse_args()))
