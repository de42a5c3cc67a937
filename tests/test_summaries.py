"""Summaries: extractive (hash embedder fast, e5 slow), LLM map-reduce against the stub, CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rag.citations import markers
from rag.summaries import Summary, SummaryError, short_title
from rag.validation import RequestError
from tests.conftest import ROOT
from tests.support.stub_openai import StubOpenAI, reply


def stream_summary(lib, **kwargs) -> list:
    """The deltas, then the Summary: what the stream yields, in order."""
    stream = lib.stream_summary(**kwargs)
    return [*stream, stream.result]


def summarise(lib, **kwargs) -> Summary:
    return lib.summarise(**kwargs)


def _id_of(lib, filename: str) -> str:
    return next(a.id for a in lib.articles() if Path(a.path).name == filename)


def _check_citations(lib, summary: Summary) -> None:
    assert summary.citations, summary.text
    assert set(markers(summary.text)) == {c.n for c in summary.citations}
    assert [c.n for c in summary.citations] == list(range(1, len(summary.citations) + 1))
    for c in summary.citations:
        text = lib.article(c.article_id).text
        for part in c.quote.split(" … "):
            assert part in text, (c.n, part)
        assert c.chunk_text in text


def test_extractive_query_summary_cites_real_sentences(hash_sample):
    lib = hash_sample()
    items = list(stream_summary(lib, query="Ancelotti"))
    summary = items[-1]
    assert isinstance(summary, Summary) and summary.mode == "extractive"
    assert "".join(i for i in items if isinstance(i, str)) == summary.text
    assert "estrattivo" in summary.notice
    _check_citations(lib, summary)
    dates = [s.last_date for s in summary.stories]
    assert dates == sorted(dates, reverse=True)  # newest story first
    d = summary.to_dict()
    assert set(d) == {"summary", "mode", "model", "stories", "citations", "conflicts"}
    assert all(set(s) == {"title", "article_ids"} for s in d["stories"])


def test_article_summary_english_notice(hash_sample):
    lib = hash_sample()
    aid = _id_of(lib, "2025-05_napoli-scudetto.md")
    summary = summarise(lib, article_id=aid, lang="en")
    assert len(summary.stories) == 1 and summary.stories[0].article_ids == [aid]
    assert {c.article_id for c in summary.citations} == {aid}
    assert "Extractive" in summary.notice
    assert "Napoli" in summary.text and 1 <= summary.text.count("[1]") <= 3
    _check_citations(lib, summary)


def test_digest_period_and_errors(hash_sample):
    lib = hash_sample()
    summary = summarise(lib, digest=True, since="2025-06", until="2025-06")
    ids = {a for s in summary.stories for a in s.article_ids}
    assert ids and all(lib.article(a).date.startswith("2025-06") for a in ids)
    _check_citations(lib, summary)
    with pytest.raises(SummaryError):
        summarise(lib, article_id="no-such-article")
    with pytest.raises(RequestError):
        summarise(lib)
    empty = summarise(lib, digest=True, since="1990-01", until="1990-12")
    assert empty.stories == [] and empty.citations == [] and "Nessun articolo" in empty.text


def test_short_title():
    assert short_title("Breve") == "Breve"
    long = "parola " * 40
    assert len(short_title(long)) <= 91 and short_title(long).endswith("…")


def test_llm_map_reduce_validates_markers(hash_sample):
    with StubOpenAI() as stub:
        lib = hash_sample(openai_base_url=stub.base_url, openai_api_key="k", llm_model="stub")
        period = {"since": "2025-05", "until": "2025-05"}
        n = len(summarise(lib, digest=True, answerer="extractive", **period).stories)
        assert n > 1
        # one map call per story, then the reduce; [99] points at nothing and must go
        final = reply("Rassegna: Ancelotti al Brasile [2]. Falso [99].")
        stub.script([reply("Storia uno [1].")] * n + [final])
        summary = summarise(lib, digest=True, **period)
        requests = stub.chat_requests
    n_stories = len(summary.stories)
    assert summary.mode == "llm" and summary.model == "stub"
    assert len(requests) == n_stories + 1
    assert "[99]" not in summary.text and "Rassegna" in summary.text
    said, _, named = summary.text.partition("\n\nNe scrivono anche: ")
    assert said.count("[1]") == 1 and "[2]" not in said  # renumbered 2 -> 1
    # the articles the model did not cite are named by outlet, each with its own citation
    assert {c.article_id for c in summary.citations} == {a for s in summary.stories for a in s.article_ids}
    assert named.count("[") == len(summary.citations) - 1
    assert "<fonte n=" in requests[0].json["messages"][1]["content"]
    assert "<notizia" in requests[-1].json["messages"][1]["content"]


def test_llm_single_article_streams_and_falls_back(hash_sample):
    with StubOpenAI() as stub:
        lib = hash_sample(openai_base_url=stub.base_url, openai_api_key="k", llm_model="stub",
                          llm_retries=0)
        aid = _id_of(lib, "2025-05_napoli-scudetto.md")
        stub.script([reply("Il Napoli vince lo scudetto con Conte [1].")])
        items = list(stream_summary(lib, article_id=aid))
        assert len(stub.chat_requests) == 1  # one story: no reduce step
        summary = items[-1]
        assert summary.mode == "llm" and summary.citations[0].article_id == aid
        assert "Napoli" in summary.citations[0].quote
        from tests.support.stub_openai import status

        stub.script([status(400)])
        fallback = summarise(lib, article_id=aid)
    assert fallback.mode == "extractive" and "rejected" in fallback.notice


# -- with the real embedder ----------------------------------------------------------------------


@pytest.mark.slow
def test_ancelotti_summary_mentions_roma_and_milan(sample_lib):
    summary = summarise(sample_lib, query="Ancelotti")
    assert "Roma" in summary.text and "Milan" in summary.text, summary.text
    assert "Brasile" in summary.text
    _check_citations(sample_lib, summary)


@pytest.mark.slow
def test_digest_groups_the_near_duplicate_pair(sample_lib):
    summary = summarise(sample_lib, digest=True, since="2025-05", until="2025-05")
    a = _id_of(sample_lib, "2025-05_ancelotti-brasile.md")
    b = _id_of(sample_lib, "2025-05_ancelotti-ct-brasile.md")
    groups = [set(s.article_ids) for s in summary.stories]
    assert {a, b} in groups, groups
    assert sum(len(g) for g in groups) == len(summary.stories) + 1  # only that pair merges
    _check_citations(sample_lib, summary)


@pytest.mark.slow
def test_cli_summarise_query_json(sample_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(sample_home, home)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRONACA_", "OPENAI_", "CHROMA_"))}
    env["CRONACA_HOME"] = str(home)
    proc = subprocess.run([sys.executable, "-m", "rag.cli", "summarise", "--query", "Ancelotti", "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    assert data["mode"] == "extractive" and data["stories"] and data["citations"]
    assert "Roma" in data["summary"] and "Milan" in data["summary"]
    assert set(markers(data["summary"])) == {c["n"] for c in data["citations"]}
    proc = subprocess.run([sys.executable, "-m", "rag.cli", "digest", "--since", "2025-06", "--lang", "en"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Sources" in proc.stdout and "Extractive" in proc.stdout
