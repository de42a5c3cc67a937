"""Tests of the test-support servers themselves, through the real clients.

The stub tests are fast and unmarked; the ones that start a real process (the
xllamacpp LLM server, ``chroma run``) are marked ``server``.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import math
import struct
import time

import openai
import pytest
from openai import OpenAI

from tests.support.stub_openai import (
    EMBEDDING_DIM,
    StubOpenAI,
    cut_stream,
    delay,
    hash_embedding,
    malformed_stream,
    reply,
    status,
)

MESSAGES = [{"role": "user", "content": "What happened in Rome today?"}]


@pytest.fixture
def stub():
    with StubOpenAI() as server:
        yield server


def _client(base_url: str, **kwargs) -> OpenAI:
    kwargs.setdefault("max_retries", 0)
    kwargs.setdefault("timeout", 10)
    return OpenAI(base_url=base_url, api_key="test-key", **kwargs)


def _ask(client: OpenAI) -> str | None:
    return client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content


def _collect(stream) -> tuple[list[str], list]:
    pieces, chunks = [], []
    for chunk in stream:
        chunks.append(chunk)
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    return pieces, chunks


# ------------------------------------------------------------------------ stub: happy


def test_stub_streams_scripted_reply_with_usage(stub):
    stub.script([reply("The mayor opened a new bridge [1].", chunk_size=6)])
    stream = _client(stub.base_url).chat.completions.create(
        model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    pieces, chunks = _collect(stream)
    assert "".join(pieces) == "The mayor opened a new bridge [1]."
    assert len(pieces) == 6
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert chunks[-1].usage.total_tokens == (
        chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens
    )


def test_stub_non_streamed_reply_and_recorded_request(stub):
    stub.script(["Short answer."])
    result = _client(stub.base_url).chat.completions.create(
        model="gpt-test", messages=MESSAGES, temperature=0
    )
    assert result.choices[0].message.content == "Short answer."
    assert result.model == "gpt-test"
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    (request,) = stub.chat_requests
    assert request.method == "POST" and request.path == "/v1/chat/completions"
    assert request.json["messages"] == MESSAGES
    assert request.json["temperature"] == 0
    assert request.headers["authorization"] == "Bearer test-key"


def test_stub_default_reply_once_script_is_used_up(stub):
    stub.script(["first"])
    client = _client(stub.base_url)
    assert stub.pending == 1
    texts = [_ask(client) for _ in range(3)]
    assert texts[0] == "first"
    assert texts[1] == texts[2] and texts[1] != "first"
    stub.set_default(reply("new default"))
    assert _ask(client) == "new default"
    assert stub.pending == 0


def test_stub_records_concurrent_requests(stub):
    client = _client(stub.base_url)

    def ask(i: int) -> str:
        messages = [{"role": "user", "content": f"q{i}"}]
        return client.chat.completions.create(model="m", messages=messages).id

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(ask, range(24)))
    assert len(set(ids)) == 24
    asked = sorted(r.json["messages"][0]["content"] for r in stub.chat_requests)
    assert asked == sorted(f"q{i}" for i in range(24))


def test_stub_models_and_embeddings(stub):
    client = _client(stub.base_url)
    assert "stub-model" in [m.id for m in client.models.list()]
    result = client.embeddings.create(model="emb", input=["alpha", "beta", "alpha"])
    vectors = [d.embedding for d in result.data]
    assert [len(v) for v in vectors] == [EMBEDDING_DIM] * 3
    assert vectors[0] == vectors[2] != vectors[1]
    assert math.isclose(sum(x * x for x in vectors[0]), 1.0, rel_tol=1e-6)
    assert vectors[0] == pytest.approx(hash_embedding("alpha"))
    assert result.usage.prompt_tokens > 0
    # base64 is honoured (this openai client hands the string back undecoded)
    b64 = client.embeddings.create(model="emb", input="alpha", encoding_format="base64")
    raw = base64.b64decode(b64.data[0].embedding)
    assert list(struct.unpack(f"<{EMBEDDING_DIM}f", raw)) == pytest.approx(vectors[0], abs=1e-6)
    assert [r.json["input"] for r in stub.embedding_requests] == [
        ["alpha", "beta", "alpha"],
        "alpha",
    ]


# ------------------------------------------------------------------------ stub: faults


@pytest.mark.parametrize(
    ("code", "exc_type"),
    [
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
        (401, openai.AuthenticationError),
        (400, openai.BadRequestError),
    ],
)
def test_stub_status_maps_to_openai_exception(stub, code, exc_type):
    stub.script([status(code, headers={"Retry-After": "1"}, message=f"boom {code}")])
    with pytest.raises(exc_type) as info:
        _client(stub.base_url).chat.completions.create(model="m", messages=MESSAGES)
    assert info.value.status_code == code
    assert info.value.message.endswith(f"boom {code}")
    assert info.value.body["message"] == f"boom {code}"
    assert info.value.response.headers["retry-after"] == "1"


def test_stub_status_also_fails_a_streamed_request(stub):
    stub.script([status(429)])
    with pytest.raises(openai.RateLimitError):
        _client(stub.base_url).chat.completions.create(model="m", messages=MESSAGES, stream=True)


def test_stub_custom_error_body(stub):
    body = {"error": {"message": "slow down", "type": "requests", "code": "rate_limit"}}
    stub.script([status(429, body=body)])
    with pytest.raises(openai.RateLimitError) as info:
        _client(stub.base_url).chat.completions.create(model="m", messages=MESSAGES)
    assert info.value.code == "rate_limit"


def test_stub_client_retries_through_429_and_500(stub):
    stub.script([status(429, headers={"retry-after-ms": "20"}), status(500), "finally"])
    client = _client(stub.base_url, max_retries=2)
    result = client.chat.completions.create(model="m", messages=MESSAGES)
    assert result.choices[0].message.content == "finally"
    retry_counts = [r.headers.get("x-stainless-retry-count") for r in stub.chat_requests]
    assert retry_counts == ["0", "1", "2"]


def test_stub_cut_stream_raises_connection_error_after_partial_text(stub):
    stub.script([cut_stream("Partial answ", chunk_size=4)])
    stream = _client(stub.base_url).chat.completions.create(model="m", messages=MESSAGES, stream=True)
    pieces: list[str] = []
    with pytest.raises(openai.APIConnectionError) as info:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == "Partial answ"
    assert not isinstance(info.value, openai.APITimeoutError)
    assert "incomplete chunked read" in str(info.value.__cause__)


def test_stub_cut_non_streamed_response_is_a_connection_error(stub):
    stub.script([cut_stream()])
    with pytest.raises(openai.APIConnectionError):
        _client(stub.base_url).chat.completions.create(model="m", messages=MESSAGES)


def test_stub_malformed_stream_raises_json_decode_error(stub):
    # The openai client does not wrap this: a bare json.JSONDecodeError escapes.
    stub.script([malformed_stream()])
    stream = _client(stub.base_url).chat.completions.create(model="m", messages=MESSAGES, stream=True)
    with pytest.raises(json.JSONDecodeError):
        list(stream)


def test_stub_delay_makes_client_time_out(stub):
    stub.script([delay(5, then="too late"), "on time"])
    client = _client(stub.base_url, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=MESSAGES)
    assert time.monotonic() - started < 3
    assert _ask(client) == "on time"


def test_stub_delay_then_answers(stub):
    stub.script([delay(0.2, then=reply("after a pause", chunk_size=3))])
    started = time.monotonic()
    stream = _client(stub.base_url).chat.completions.create(model="m", messages=MESSAGES, stream=True)
    pieces, _ = _collect(stream)
    assert "".join(pieces) == "after a pause"
    assert time.monotonic() - started >= 0.2


def test_stub_stop_is_prompt_with_a_pending_delay():
    server = StubOpenAI().start()
    server.script([delay(60)])
    client = _client(server.base_url, timeout=30)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(client.chat.completions.create, model="m", messages=MESSAGES)
        while not server.chat_requests:
            time.sleep(0.01)
        started = time.monotonic()
        server.stop()
        with pytest.raises(openai.APIConnectionError):
            future.result(timeout=10)
    assert time.monotonic() - started < 5


# ------------------------------------------------------------------ real LLM server


@pytest.fixture(scope="module")
def llama():
    from tests.support.llama_server import start_llama_server

    with start_llama_server() as server:
        yield server


@pytest.mark.server
def test_llama_server_streams_several_chunks(llama):
    client = _client(llama.base_url, timeout=120)
    assert llama.base_url.startswith("http://127.0.0.1:") and llama.base_url.endswith("/v1")
    stream = client.chat.completions.create(
        model=llama.model,
        messages=[{"role": "user", "content": "Name three facts about Italy."}],
        stream=True,
        max_tokens=24,
        temperature=0,
        stream_options={"include_usage": True},
    )
    pieces, chunks = _collect(stream)
    assert len(pieces) > 1
    assert "".join(pieces).strip()
    usage = [c.usage for c in chunks if c.usage]
    assert usage and 1 < usage[-1].completion_tokens <= 24


@pytest.mark.server
def test_llama_server_models_and_plain_completion(llama):
    client = _client(llama.base_url, timeout=120)
    assert llama.model in [m.id for m in client.models.list()]
    result = client.chat.completions.create(
        model=llama.model,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        temperature=0,
    )
    assert result.choices[0].message.content
    assert result.usage.completion_tokens <= 8


@pytest.mark.server
def test_llama_server_failure_reports_stderr(tmp_path):
    from tests.support.llama_server import LlamaServerError, start_llama_server

    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not gguf")
    with pytest.raises(LlamaServerError, match="exited with code") as info:
        start_llama_server(timeout=60, model_path=bogus)
    assert "stderr tail" in str(info.value)


# --------------------------------------------------------------------- real Chroma


@pytest.mark.server
def test_chroma_server_add_query_and_survives_kill(tmp_path):
    from tests.support.chroma_server import start_chroma_server

    data = tmp_path / "chroma"
    with start_chroma_server(data) as chroma:
        client = chroma.client()
        assert client.heartbeat() > 0
        collection = client.get_or_create_collection(
            "news", embedding_function=None, metadata={"hnsw:space": "cosine"}
        )
        collection.add(
            ids=["rome", "milan"],
            embeddings=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            documents=["Rome story", "Milan story"],
            metadatas=[{"city": "Rome"}, {"city": "Milan"}],
        )
        found = collection.query(query_embeddings=[[0.9, 0.1, 0.0]], n_results=1)
        assert found["ids"] == [["rome"]]
        assert found["metadatas"][0][0]["city"] == "Rome"
        chroma.kill()
        assert not chroma.is_running()

    with start_chroma_server(data) as again:
        collection = again.client().get_collection("news", embedding_function=None)
        assert collection.count() == 2
