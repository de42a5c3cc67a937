"""The eval harness: metric arithmetic, SQuAD loading and sampling, and end-to-end runs."""

from __future__ import annotations

import gzip
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eval import metrics as M
from eval.sets import load_jsonl, load_set, load_squad, sample

from .conftest import ROOT, shared_or_skip

# --------------------------------------------------------------------------- metrics


def test_normalize_case_accents_punctuation_articles():
    assert M.normalize("L'Inter è Campione!") == "inter e campione"
    assert M.normalize("Il Milan, la Roma e gli ultrà [1]") == "milan roma e ultra"
    assert M.normalize("The Arsenal and an apple") == "arsenal and apple"
    assert M.normalize("un'altra volta") == "altra volta"


def test_contains_is_word_bounded_and_normalised():
    assert M.contains("Allenerà la Roma dal 2025 [1].", ["roma"])
    assert M.contains("Ha vinto con il Leicester City.", ["il Leicester"])
    assert not M.contains("Romanzo criminale", ["Roma"])
    assert M.contains("Finale persa 5-0 contro il PSG", ["0-5", "5-0"])
    assert not M.contains("", ["Roma"])


def test_exact_match_and_f1():
    assert M.exact_match("La Juventus.", ["juventus"])
    assert not M.exact_match("La Juventus di Torino", ["juventus"])
    assert M.token_f1("la Juventus di Torino", ["Juventus"]) == pytest.approx(0.5)  # p=1/3 r=1
    assert M.token_f1("Gian Piero Gasperini", ["Gasperini", "Gian Piero Gasperini"]) == 1.0
    assert M.token_f1("niente", ["Roma"]) == 0.0


def _rel(flags):
    return [{"x"} if f else set() for f in flags]


def test_mrr_and_hits():
    rel = _rel([0, 0, 1, 0])
    assert M.mrr_at(rel, 10) == pytest.approx(1 / 3)
    assert M.mrr_at(rel, 2) == 0.0
    assert M.hit_at(rel, 2) == 0.0 and M.hit_at(rel, 3) == 1.0


def test_ndcg_binary():
    assert M.ndcg_at(_rel([1, 0, 0]), 1) == 1.0
    assert M.ndcg_at(_rel([0, 1]), 1) == pytest.approx(1 / math.log2(3))
    # two relevant, found at ranks 1 and 3
    expected = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert M.ndcg_at(_rel([1, 0, 1]), 2) == pytest.approx(expected)
    assert M.ndcg_at(_rel([0, 0]), 0) == 0.0


def test_relevance_by_id_or_basename_and_dedupe():
    hits = [
        {"article_id": "a1", "path": "/data/x/ancelotti.txt"},
        {"article_id": "a1", "path": "/data/x/ancelotti.txt"},  # second chunk, same article
        {"article_id": "b2", "path": "/data/feed.jsonl:12"},
        {"article_id": "c3", "path": "/data/feed.json#4"},
    ]
    ranked = M.ranked_articles(hits)
    assert [a for a, _ in ranked] == ["a1", "b2", "c3"]
    rel = M.relevance(ranked, ["feed.jsonl", "c3"])
    assert [bool(r) for r in rel] == [False, True, True]
    assert M.recall_at(rel, 2, 2) == 0.5 and M.recall_at(rel, 2, 3) == 1.0


def test_citation_metrics():
    assert M.citations_resolve("Roma [1]. Milan [3].", [1, 2]) == 0.5
    assert M.citations_resolve("nessun marcatore", [1]) is None
    assert M.cited_sentences("Roma vince. [1] Poi il Milan perde [2]. Niente qui.") == pytest.approx(2 / 3)


def test_percentile():
    assert M.percentile([1, 2, 3, 4, 5], 50) == 3
    assert M.percentile([10, 20], 95) == pytest.approx(19.5)
    assert M.percentile([], 50) is None


# --------------------------------------------------------------------------- sets


def _tiny_squad(path: Path, gz: bool = False) -> Path:
    data = {"version": "1.1", "data": [
        {"title": "Roma", "paragraphs": [
            {"context": "La Roma è stata fondata nel 1927 da una fusione di tre club.",
             "qas": [{"id": "q1", "question": "Quando è stata fondata la Roma?",
                      "answers": [{"text": "1927", "answer_start": 28},
                                  {"text": "1927", "answer_start": 28}]},
                     {"id": "q2", "question": "Da quanti club?",
                      "answers": [{"text": "tre", "answer_start": 50}]}]},
            {"context": "Lo stadio Olimpico ospita le partite casalinghe della Roma e della Lazio.",
             "qas": [{"id": "q3", "question": "Dove gioca la Roma?",
                      "answers": [{"text": "stadio Olimpico", "answer_start": 3}]}]},
        ]},
        {"title": "Milano", "paragraphs": [
            {"context": "Milano è il capoluogo della Lombardia e ha due grandi squadre di calcio.",
             "qas": [{"id": f"m{i}", "question": f"Domanda {i} su Milano?",
                      "answers": [{"text": "Lombardia", "answer_start": 28}]} for i in range(5)]},
        ]},
    ]}
    body = json.dumps(data)
    if gz:
        path.write_bytes(gzip.compress(body.encode()))
    else:
        path.write_text(body)
    return path


def test_squad_loading(tmp_path):
    cases, records = load_squad(_tiny_squad(tmp_path / "s.json"))
    assert [r["id"] for r in records] == ["Roma#0", "Roma#1", "Milano#0"]
    assert records[0] == {"id": "Roma#0", "title": "Roma",
                          "text": "La Roma è stata fondata nel 1927 da una fusione di tre club."}
    assert len(cases) == 8
    q1 = cases[0]
    assert q1.id == "q1" and q1.answers == ["1927"] and q1.relevant == ["Roma#0"] and not q1.unanswerable
    assert cases[2].relevant == ["Roma#1"]
    cases2, records2 = load_squad(_tiny_squad(tmp_path / "s.json.gz", gz=True), max_articles=1)
    assert len(records2) == 2 and len(cases2) == 3


def test_squad_sampling_is_reproducible(tmp_path):
    path = _tiny_squad(tmp_path / "s.json.gz", gz=True)
    a = load_set(path, limit=4, seed=3)
    b = load_set(path, limit=4, seed=3)
    assert [x.id for x in a.cases] == [x.id for x in b.cases]
    assert len(a.cases) == 4 and a.total == 8 and a.records is not None
    all_cases, _ = load_squad(path)
    import random

    assert [x.id for x in a.cases] == [x.id for x in random.Random(3).sample(all_cases, 4)]
    assert sample(all_cases, None, 0) == all_cases and sample(all_cases, 100, 0) == all_cases


def test_jsonl_sets_load():
    for name in ("sample.jsonl", "natural.jsonl"):
        cases = load_jsonl(ROOT / "eval" / "sets" / name)
        assert cases and all(c.question for c in cases)
        assert any(c.unanswerable for c in cases)
        assert all(c.relevant for c in cases if not c.unanswerable)


# --------------------------------------------------------------------------- end to end


def _eval(args: list[str], cache: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRONACA_", "OPENAI_", "CHROMA_"))}
    env["CRONACA_EVAL_CACHE"] = str(cache)
    env["CRONACA_HOME"] = str(cache / "must-not-be-used")
    env["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "eval", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _run_eval(args: list[str], cache: Path, timeout: int = 900) -> tuple[dict, subprocess.CompletedProcess]:
    proc = _eval(["run", *args], cache, timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    return json.loads(last), proc


@pytest.fixture(scope="module")
def eval_cache(tmp_path_factory):
    """One store cache for the end-to-end runs of this module: data/sample is embedded once."""
    return tmp_path_factory.mktemp("eval-cache")


@pytest.mark.parametrize(("args", "message"), [
    (["eval/sets/sample.jsonl", "--retrieval", "hybrid,nonsense"], "unknown retrieval mode(s) ['nonsense']"),
    (["eval/sets/sample.jsonl", "--split", "held"], "has no 'split' field"),
    (["eval/sets/natural.jsonl", "--foreign", "5"], "SQuAD sets only"),
])
def test_eval_run_refuses_bad_options(tmp_path, args, message):
    proc = _eval(["run", *args, "--out", str(tmp_path / "out")], tmp_path / "cache", timeout=120)
    assert proc.returncode == 2
    assert message in " ".join(proc.stderr.split())
    assert not (tmp_path / "cache").exists()  # refused before any store is built


def test_retrieval_modes_come_from_the_library():
    from rag.retrieval import MODES

    proc = _eval(["run", "--help"], Path("/nonexistent"), timeout=120)
    assert "rag.retrieval.MODES" in " ".join(proc.stdout.split())
    assert "hybrid" in MODES


@pytest.mark.slow
def test_eval_run_sample_end_to_end(tmp_path, eval_cache):
    out = tmp_path / "out"
    result, _ = _run_eval(["eval/sets/sample.jsonl", "--limit", "8", "--seed", "1", "--json",
                           "--out", str(out)], eval_cache)
    assert result["cases"] == 8
    hybrid = result["modes"]["hybrid"]
    for key in ("hit@1", "hit@5", "hit@10", "recall@5", "mrr@10", "ndcg@10", "latency_p50_ms",
                "answer_contains", "token_f1", "exact_match", "answer_contains_given_hit5",
                "lead_contains", "dup_sentences", "dup_sentences_total", "citations_resolve", "abstain_wrong"):
        assert key in hybrid, key
    assert "splits" not in result  # sample.jsonl has no splits
    assert hybrid["hit@5"] > 0
    for name in ("report.md", "run.json", "hitk.png"):
        assert (out / name).is_file(), name
    run = json.loads((out / "run.json").read_text())
    assert len(run["cases"]) == 8 and run["aggregate"]["hybrid"]["hit@5"] == hybrid["hit@5"]
    assert "python -m eval run" in (out / "report.md").read_text()
    assert not (eval_cache / "must-not-be-used").exists()
    # the store is cached: a second run reuses it
    again = json.loads(eval_cache.joinpath(run["store"]["key"], "eval-ready.json").read_text())
    assert again["added"] > 0


@pytest.mark.slow
def test_eval_run_natural_split_compare_and_show(tmp_path, eval_cache):
    out = tmp_path / "out"
    result, proc = _run_eval(["eval/sets/natural.jsonl", "--split", "held", "--limit", "6", "--seed", "2",
                              "--retrieval", "hybrid,bm25", "--json", "--out", str(out)], eval_cache)
    assert result["cases"] == 6
    assert set(result["splits"]) == {"held"} and set(result["splits"]["held"]) == {"hybrid", "bm25"}
    assert result["splits"]["held"]["hybrid"] == result["modes"]["hybrid"]  # only held cases were run
    for key in ("lead_contains", "dup_sentences", "dup_sentences_total", "abstain_wrong"):
        assert key in result["modes"]["hybrid"], key
    assert "hybrid" in proc.stdout and "held" in proc.stdout
    run = json.loads((out / "run.json").read_text())
    assert all(c["split"] == "held" for c in run["cases"])
    assert run["config"]["split"] == "held" and run["by_type"]
    assert sum(t["cases"] for t in run["by_type"].values()) == 6
    assert "## By type" in (out / "report.md").read_text()
    compared = _eval(["compare", str(out), str(out)], eval_cache, timeout=120)
    assert compared.returncode == 0
    assert "hybrid held: A → B" in compared.stdout and "lead_contains" in compared.stdout
    shown = _eval(["show", str(out), "--json"], eval_cache, timeout=120)
    assert json.loads(shown.stdout.strip().splitlines()[-1])["splits"] == result["splits"]


@pytest.mark.slow
def test_eval_run_squad_shared(tmp_path, eval_cache):
    squad = shared_or_skip("squad-it/squad_it_dev.json.gz")
    out = tmp_path / "out"
    _, records = load_squad(squad, max_articles=1)
    result, _ = _run_eval([str(squad), "--max-articles", "1", "--limit", "6", "--seed", "0",
                           "--retrieval", "hybrid,bm25", "--json", "--out", str(out)], eval_cache)
    assert result["cases"] == 6
    assert set(result["modes"]) == {"hybrid", "bm25"}
    assert result["modes"]["hybrid"]["hit@5"] > 0
    run = json.loads((out / "run.json").read_text())
    assert run["store"]["articles"] == len(records)  # only the paragraphs of the first article
    assert all(c["relevant"][0].rsplit("#", 1)[0] == records[0]["title"] for c in run["cases"])
