"""The LLM path, over the wire: a real llama.cpp server (SmolLM2, nonsense words but real
tokens) for streaming and validation, and the scripted stub for exact content."""

import json
import os
import subprocess
import sys

import pytest

from rag.citations import markers
from rag.models import Answer
from tests.support.stub_openai import StubOpenAI, reply

pytestmark = pytest.mark.server
# a 135M model on two busy CI cores can take longer than the default 90 s for 120 tokens; these
# tests are about streaming and validation, not about the deadline (test_faults.py covers that)
SLOW_MACHINE_DEADLINE = 600


def stream_answer(lib, question: str, **kwargs) -> list:
    """The deltas, then the Answer: what the stream yields, in order."""
    stream = lib.stream(question, **kwargs)
    return [*stream, stream.result]


@pytest.fixture(scope="module")
def llama():
    from tests.support.llama_server import start_llama_server

    with start_llama_server() as server:
        yield server


def test_real_server_streams_and_only_valid_citations_survive(llama, hash_sample):
    lib = hash_sample(openai_base_url=llama.base_url, openai_api_key="none", llm_model=llama.model,
                      answer_tokens=120, context_tokens=800, model_context_tokens=2048,
                      llm_deadline=SLOW_MACHINE_DEADLINE)
    items = list(stream_answer(lib, "Quali club vogliono Ancelotti?"))
    answer = items[-1]
    deltas = [i for i in items if isinstance(i, str)]
    assert isinstance(answer, Answer) and answer.mode == "llm" and answer.model == llama.model
    assert len(deltas) > 3, "the server should stream several token deltas"
    cited = {c.n for c in answer.citations}
    assert set(markers(answer.text)) == cited  # every marker resolves, every citation is used
    assert all(c.quote in c.chunk_text for c in answer.citations)
    assert answer.timings_ms["generate"] > 0 and answer.usage["completion_tokens"] > 0


def test_real_server_length_limit_is_a_truncated_answer(llama, hash_sample):
    """llama.cpp stops at max_tokens with finish_reason "length": the answer says it was cut."""
    lib = hash_sample(openai_base_url=llama.base_url, openai_api_key="none", llm_model=llama.model,
                      answer_tokens=4, context_tokens=800, model_context_tokens=2048,
                      llm_deadline=SLOW_MACHINE_DEADLINE)
    answer = lib.ask("Quali club vogliono Ancelotti?")
    assert answer.mode == "llm" and answer.truncated and answer.usage["completion_tokens"] <= 4
    assert "La risposta è stata interrotta dal modello (limite di lunghezza)" in answer.notice


def test_stub_answer_markers_validated_against_provided_sources(hash_sample):
    with StubOpenAI() as stub:
        stub.script([reply("In pole ci sono Roma e Milan [1][12]. Ancelotti è al Real [2, 1].")])
        lib = hash_sample(openai_base_url=stub.base_url, openai_api_key="k", llm_model="stub")
        answer = [i for i in stream_answer(lib, "Quali club vogliono Ancelotti?", k=5)][-1]
        body = stub.chat_requests[-1].json
    assert "[12]" not in answer.text
    assert sorted({c.n for c in answer.citations}) == sorted(set(markers(answer.text))) == [1, 2]
    system, user = body["messages"][0]["content"], body["messages"][1]["content"]
    assert "mai un'istruzione" in system and body["stream"] is True
    assert user.count("<fonte n=") == len(answer.hits) or user.count("<fonte n=") <= 5


def test_stub_refusal_is_a_declined_answer(hash_sample):
    with StubOpenAI() as stub:
        stub.script([reply("Le fonti disponibili non contengono la risposta a questa domanda.")])
        lib = hash_sample(openai_base_url=stub.base_url, openai_api_key="k", llm_model="stub")
        answer = lib.ask("Chi ha vinto il Tour de France?")
    assert answer.declined and answer.citations == []


@pytest.mark.slow
def test_cli_ask_json_in_llm_mode(llama, sample_home, tmp_path):
    """Acceptance: the same ask with OPENAI_BASE_URL at a local server gives mode llm."""
    import shutil

    home = tmp_path / "home"
    shutil.copytree(sample_home, home)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CRONACA_"))}
    env.update(CRONACA_HOME=str(home), OPENAI_BASE_URL=llama.base_url, OPENAI_API_KEY="none",
               CRONACA_LLM_MODEL=llama.model, CRONACA_ANSWER_TOKENS="100",
               CRONACA_CONTEXT_TOKENS="800", CRONACA_MODEL_CONTEXT="2048",
               CRONACA_LLM_DEADLINE=str(SLOW_MACHINE_DEADLINE))
    proc = subprocess.run([sys.executable, "-m", "rag.cli", "ask", "Quali club vogliono Ancelotti?", "--json"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 4), proc.stderr  # 4: the tiny model ran into the length limit
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["mode"] == "llm" and out["model"] == llama.model
    assert out["truncated"] == (proc.returncode == 4)
    assert set(markers(out["answer"])) == {c["n"] for c in out["citations"]}
