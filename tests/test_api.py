"""The HTTP API against live servers on 127.0.0.1: in-process uvicorn over the fast sample
library, the real ``cronaca serve`` command (``server``), and the sample with the real embedder
through ``cronaca serve`` with an API key (``slow``: the Done criterion of issue 14)."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import httpx
import openai
import pytest

from rag import access, api, server
from rag.dates import spoken
from rag.index import IndexBusy
from rag.llm import LLMError
from rag.store import StoreError
from rag.validation import RequestError
from tests.conftest import ROOT, HashEmbedder
from tests.support.api_server import ServeProcess, ServerThread
from tests.support.stub_openai import StubOpenAI, reply, status

ANCELOTTI = "Quali club vogliono Ancelotti?"
ROMA = "Chi allena la Roma?"
KEY = "chiave-di-prova"


# ---- helpers -------------------------------------------------------------------------------------


def events(text: str) -> list[tuple[str, dict]]:
    """Server-sent events as (event name, data)."""
    out = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        out.append((fields.get("event", ""), json.loads(fields["data"])))
    return out


def client(srv: ServerThread, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=srv.url, headers=headers, timeout=60)


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"] and body["error"]["type"], body
    return body["error"]


@pytest.fixture
def served(hash_sample):
    """served(api_key="", **config) -> (library, running server) over the fast sample library."""
    running: list[ServerThread] = []

    def factory(api_key: str = "", **overrides):
        lib = hash_sample(**overrides)
        srv = ServerThread(api.create_app(lib, api_key=api_key)).__enter__()
        running.append(srv)
        return lib, srv

    yield factory
    for srv in running:
        srv.stop()


@pytest.fixture
def stub():
    with StubOpenAI() as s:
        yield s


@pytest.fixture
def llm_served(served, stub):
    """A server whose answers come from the scripted stub: deterministic markers, real validation."""

    def factory(text: str, **overrides):
        stub.set_default(reply(text, chunk_size=6))
        return served(openai_base_url=stub.base_url, openai_api_key="x", llm_model="stub", llm_retries=0,
                      **overrides)

    return factory


GASPERINI = "La Roma è allenata da Gasperini [2], arrivato dopo Ranieri [1]."


# ---- questions -----------------------------------------------------------------------------------


def test_ask_is_the_cli_json(served):
    lib, srv = served()
    with client(srv) as c:
        got = c.post("/api/v1/ask", json={"question": ROMA, "k": 4, "since": "2025-01"}).json()
    expected = lib.ask(ROMA, k=4, since="2025-01").to_dict()
    assert set(got) == set(expected)
    assert (got["question"], got["answer"], got["citations"]) == (ROMA, expected["answer"], expected["citations"])
    assert got["retrieved"] and all(c["date"] >= "2025-01" for c in got["citations"])


@pytest.mark.parametrize("body,field", [
    ({"question": "   "}, "question"),
    ({"question": "Chi allena la Roma?", "since": "2024-13-45"}, "since"),
    ({"question": "Chi allena la Roma?", "since": "2025-03", "until": "2024-01"}, "until"),
    ({"question": "Chi allena la Roma?", "answerer": "gpt-5"}, "answerer"),
    ({"question": "Chi allena la Roma?", "fallback": "sempre"}, "fallback"),
    ({"question": "Chi allena la Roma?", "k": 0}, "k"),
    ({"question": "Chi allena la Roma?", "history": "non una lista"}, "history"),
    ({"question": "Chi allena la Roma?", "sinse": "2024-01"}, "sinse"),
    ({"domanda": "Chi allena la Roma?"}, "question"),
])
def test_bad_input_is_400_naming_the_field(served, body, field):
    _, srv = served()
    with client(srv) as c:
        r = c.post("/api/v1/ask", json=body)
    assert r.status_code == 400, r.text
    error = error_of(r)
    assert (error["field"], error["param"], error["type"]) == (field, field, "invalid_request_error")
    assert error["message"].startswith(field)


def test_malformed_json_and_oversized_bodies(served):
    _, srv = served(max_file_mb=0.01)
    with client(srv) as c:
        r = c.post("/api/v1/ask", content=b'{"question": ', headers={"content-type": "application/json"})
        assert r.status_code == 400 and error_of(r)["field"] == "body" and "JSON" in error_of(r)["message"]
        r = c.post("/api/v1/ask", json={"question": "x" * (api.JSON_LIMIT + 10)})
        assert r.status_code == 413 and error_of(r)["type"] == "request_too_large"

        def chunked():  # no Content-Length: the limit is counted as the bytes arrive
            yield b'{"question": "'
            for _ in range(40):
                yield b"y" * 32768
            yield b'"}'

        r = c.post("/api/v1/ask", content=chunked(), headers={"content-type": "application/json"})
        assert r.status_code == 413, r.text
        many = [("files", (f"f{i}.md", b"z" * 9000)) for i in range(api.UPLOAD_FILES + 130)]
        r = c.post("/api/v1/articles", files=many)
        assert r.status_code == 413, r.text
        # the service still answers afterwards
        assert c.post("/api/v1/ask", json={"question": "Chi allena la Roma?"}).status_code == 200


def test_sse_stream_deltas_then_the_answer(served):
    lib, srv = served()
    with client(srv) as c:
        r = c.post("/api/v1/ask", json={"question": ROMA, "stream": True})
        plain = c.post("/api/v1/ask", json={"question": ROMA}).json()
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    got = events(r.text)
    names = [name for name, _ in got]
    assert names[-1] == "answer" and set(names[:-1]) == {"delta"}
    final = got[-1][1]
    assert "".join(d["text"] for _, d in got[:-1]).strip() == final["answer"] == plain["answer"]
    assert final["citations"] == plain["citations"] and final["question"] == ROMA


def test_a_cited_answer_through_every_door(llm_served):
    """The same validated answer and citations from the JSON route, its stream and the OpenAI route."""
    lib, srv = llm_served(GASPERINI)
    expected = lib.ask(ROMA)
    assert expected.text == "La Roma è allenata da Gasperini [1], arrivato dopo Ranieri [2]."
    cited = [c.to_dict() for c in expected.citations]
    assert [c["n"] for c in cited] == [1, 2] and cited[0]["chunk_id"] == expected.hits[1].chunk_id
    with client(srv) as c:
        plain = c.post("/api/v1/ask", json={"question": ROMA}).json()
        streamed = events(c.post("/api/v1/ask", json={"question": ROMA, "stream": True}).text)
    assert (plain["answer"], plain["citations"], plain["mode"]) == (expected.text, cited, "llm")
    assert len(streamed) > 5 and streamed[-1] == ("answer", {**streamed[-1][1], "citations": cited})
    assert "".join(d["text"] for n, d in streamed if n == "delta") == GASPERINI  # the draft, as written
    oc = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
    done = oc.chat.completions.create(model="cronaca", messages=[{"role": "user", "content": ROMA}])
    content = done.choices[0].message.content
    lines = [f"[{c['n']}] " + " — ".join(v for v in (c["title"], spoken(c["date"], "it"), c["source"], c["url"]) if v)
             for c in cited]  # dates in words in the text, ISO in the JSON
    assert content == expected.text + "\n\nFonti:\n" + "\n".join(lines)
    assert done.citations == cited and done.usage.completion_tokens > 0


def test_summaries_and_digest(served):
    lib, srv = served()
    with client(srv) as c:
        got = c.post("/api/v1/summarise", json={"query": "Ancelotti", "lang": "it"}).json()
        assert got == {**lib.summarise(query="Ancelotti").to_dict()}
        assert got["citations"] and got["stories"]
        missing = c.post("/api/v1/summarise", json={"article_id": "non-esiste"})
        assert missing.status_code == 404 and error_of(missing)["type"] == "not_found_error"
        nothing = c.post("/api/v1/summarise", json={})
        assert nothing.status_code == 400 and error_of(nothing)["field"] == "selection"
        no_since = c.post("/api/v1/digest", json={"until": "2025-01"})
        assert no_since.status_code == 400 and error_of(no_since)["field"] == "since"
        streamed = events(c.post("/api/v1/digest", json={"since": "2025-05", "stream": True}).text)
    assert streamed[-1][0] == "summary" and streamed[-1][1]["stories"]
    assert all(a for s in streamed[-1][1]["stories"] for a in s["article_ids"])


# ---- the archive ---------------------------------------------------------------------------------


def test_articles_paged_filtered_shown_and_deleted(served):
    lib, srv = served()
    stored = lib.articles()
    with client(srv) as c:
        pages = [c.get("/api/v1/articles", params={"offset": o, "limit": 10}).json() for o in (0, 10, 20)]
        assert {p["total"] for p in pages} == {len(stored)}
        ids = [a["id"] for p in pages for a in p["articles"]]
        assert ids == [a.id for a in stored]  # newest first, no overlap, nothing missing
        assert all("text" not in a and "/" not in a["path"] for p in pages for a in p["articles"])
        recent = c.get("/api/v1/articles", params={"since": "2025-05", "limit": 500}).json()
        assert recent["total"] == len(lib.articles(since="2025-05")) < len(stored)
        assert all(a["date"] >= "2025-05" for a in recent["articles"])
        too_many = c.get("/api/v1/articles", params={"limit": api.MAX_PAGE + 1})
        assert too_many.status_code == 400 and error_of(too_many)["field"] == "limit"
        bad_date = c.get("/api/v1/articles", params={"until": "ieri"})
        assert bad_date.status_code == 400 and error_of(bad_date)["field"] == "until"

        one = c.get(f"/api/v1/articles/{ids[0]}").json()
        assert one["id"] == ids[0] and len(one["text"]) > 200
        assert c.delete(f"/api/v1/articles/{ids[0]}").json() == {"deleted": True, "id": ids[0]}
        gone = c.get(f"/api/v1/articles/{ids[0]}")
        assert gone.status_code == 404 and error_of(gone)["type"] == "not_found_error"
        assert c.delete(f"/api/v1/articles/{ids[0]}").status_code == 404
        assert c.get("/api/v1/articles").json()["total"] == len(stored) - 1
        stats = c.get("/api/v1/stats").json()
        assert stats["articles"] == len(stored) - 1 and stats["embedder"] == HashEmbedder.name


def test_uploads_with_per_file_errors_and_url_ids(served):
    lib, srv = served(max_file_mb=0.01)
    url = "https://esempio.it/sport/2025/06/bologna-coppa?utm=1#top"
    record = {"title": "Il Bologna vince la Coppa Italia", "date": "2025-05-14", "source": "Cronaca Sport",
              "url": url, "text": "Il Bologna ha battuto il Milan in finale e ha vinto la Coppa Italia dopo 51 anni."}
    files = [
        ("files", ("../../etc/coppa.jsonl", json.dumps(record).encode())),
        ("files", ("virus.exe", b"MZ\x90\x00")),
        ("files", ("vuoto.md", b"")),
        ("files", ("enorme.md", b"parola " * 4000)),
        ("files", ("rotto.json", b"{non json")),
    ]
    with client(srv) as c:
        report = c.post("/api/v1/articles", files=files).json()
        assert (report["added"], report["failed"]) == (1, 4), report
        reasons = "\n".join(report["errors"])
        for name, why in [("virus.exe", "unsupported file type"), ("vuoto.md", "empty"),
                          ("enorme.md", "too large"), ("rotto.json", "")]:
            assert re.search(rf"^{re.escape(name)}:.*{why}", reasons, re.M), reasons
        assert "/tmp" not in reasons and str(lib.home) not in reasons
        # an id that is a URL, with "?" and "#" percent-encoded, through the path converter
        article = c.get("/api/v1/articles/" + quote(url, safe=":/")).json()
        assert (article["id"], article["title"], article["path"]) == (url, record["title"], "coppa.jsonl:1")
        answer = c.post("/api/v1/ask", json={"question": "Chi ha vinto la Coppa Italia nel 2025?"}).json()
        assert url in [hit["article_id"] for hit in answer["retrieved"]]
        wrong = c.post("/api/v1/articles", json={"files": ["coppa.md"]})
        assert wrong.status_code == 415 and error_of(wrong)["field"] == "files"
    assert "/uploads/" in lib.article(url).path


class SlowUploadEmbedder(HashEmbedder):
    """Embedding the uploaded articles takes seconds, as the real model does on a big upload;
    everything else (questions, the extractive answerer's sentences) stays instant."""

    def __init__(self) -> None:
        self.slowed = threading.Event()

    def embed_passages(self, texts):
        if not self.slowed.is_set() and any("tartufo" in t for t in texts):
            self.slowed.set()
            time.sleep(5)
        return super().embed_passages(texts)


def test_parallel_questions_are_answered_while_an_upload_ingests(hash_sample):
    questions = ["Chi allena la Roma?", ANCELOTTI, "Chi ha vinto lo scudetto 2024-25?",
                 "Chi è il nuovo ct dell'Italia?", "Dove va Kvaratskhelia?", "Chi ha vinto la Supercoppa italiana?",
                 "Cosa è successo al Real Madrid?", "Chi ha sostituito Fonseca al Milan?"]
    lib = hash_sample()
    lib.embedder = slow = SlowUploadEmbedder()
    before = {q: lib.ask(q).text for q in questions}
    upload = [("files", (f"sagra-{i}.md", f"---\ntitle: Sagra {i}\n---\nLa sagra del tartufo numero {i} "
                         f"ad Alba richiama migliaia di visitatori da tutta Europa.\n".encode())) for i in range(3)]
    timings: dict[str, float] = {}
    with ServerThread(api.create_app(lib)) as srv, client(srv) as c:
        def do_upload():
            report = c.post("/api/v1/articles", files=upload, timeout=120).json()
            timings["upload_done"] = time.monotonic()
            return report

        def do_ask(q):
            r = c.post("/api/v1/ask", json={"question": q}, timeout=120)
            timings[q] = time.monotonic()
            return r

        with ThreadPoolExecutor(9) as pool:
            ingest = pool.submit(do_upload)
            # the upload is in its (slow) embedding, holding the write lock, and the readers are due
            # to check the store's generation again
            time.sleep(lib.index.CHECK_EVERY + 0.5)
            answers = list(pool.map(do_ask, questions))
            report = ingest.result()
    after = {q: lib.ask(q).text for q in questions}
    assert report["added"] == 3 and slow.slowed.is_set(), report
    for q, r in zip(questions, answers):
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["question"] == q and got["answer"] in (before[q], after[q])
    assert max(timings[q] for q in questions) < timings["upload_done"], "questions waited for the ingest"


# ---- auth ----------------------------------------------------------------------------------------


def test_api_key_guards_everything_but_health(served):
    _, srv = served(api_key=KEY, max_file_mb=0.01)
    routes = [("POST", "/api/v1/ask", {"question": "Chi allena la Roma?"}), ("GET", "/api/v1/articles", None),
              ("GET", "/api/v1/stats", None), ("GET", "/v1/models", None), ("DELETE", "/api/v1/articles/x", None),
              ("POST", "/v1/chat/completions", {"model": "cronaca", "messages": [{"role": "user", "content": "Ciao"}]})]
    policy = srv.server.config.app.state.policy
    for header in (None, "Bearer sbagliata", f"Bearer {KEY[:-1]}", f"Bearer {KEY}x", KEY, f"Basic {KEY}"):
        with httpx.Client(base_url=srv.url, headers={"Authorization": header} if header else {}) as c:
            for method, path, body in routes:
                policy.throttle = access.Throttle()  # each wrong key is judged as a first try
                r = c.request(method, path, json=body)
                assert r.status_code == 401, (header, path, r.text)
                assert error_of(r)["type"] == "authentication_error" and r.headers["www-authenticate"] == "Bearer"
    policy.throttle = access.Throttle()
    with client(srv) as c:
        health = c.get("/api/v1/health")
        assert health.status_code == 200 and health.json()["store"] == {"ok": True}
        assert not re.search(r"Ancelotti|Roma|articles|chunks", health.text)  # nothing of the store's contents
    with client(srv, KEY) as c:
        assert c.post("/api/v1/ask", json={"question": "Chi allena la Roma?"}).status_code == 200
        assert c.get("/v1/models").json()["data"][0]["id"] == "cronaca"
        assert c.get("/api/v1/nessuna").status_code == 404 and error_of(c.get("/v1/nessuna"))["code"] == "unknown_route"
        wrong_method = c.get("/api/v1/ask")
        assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    # refused before the body is read: a caller without the key cannot make the server take in an upload
    huge = [("files", ("grande.md", b"x" * 2 * 2**20))]  # over this server's upload limit
    assert httpx.post(srv.url + "/api/v1/articles", files=huge, timeout=60).status_code == 401
    assert httpx.post(srv.url + "/api/v1/articles", files=huge, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"}).status_code == 413
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=srv.url + "/v1", api_key="sbagliata", max_retries=0).models.list()


# ---- OpenAI-compatible ---------------------------------------------------------------------------


def test_openai_client_with_and_without_stream(llm_served):
    lib, srv = llm_served(GASPERINI, api_key=KEY)
    oc = openai.OpenAI(base_url=srv.url + "/v1", api_key=KEY, max_retries=0)
    assert [m.id for m in oc.models.list()] == ["cronaca-stub"]
    messages = [{"role": "system", "content": "Rispondi in rima."}, {"role": "user", "content": ROMA}]
    done = oc.chat.completions.create(model="cronaca", messages=messages)
    content = done.choices[0].message.content
    answer = lib.ask(ROMA)
    assert content.startswith(answer.text + "\n\nFonti:\n[1] ")
    assert done.choices[0].finish_reason == "stop" and done.model == "cronaca"
    assert done.citations == [c.to_dict() for c in answer.citations] and len(done.citations) == 2

    chunks = list(oc.chat.completions.create(model="cronaca-stub", messages=messages, stream=True))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == content
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].citations == done.citations
    assert all(getattr(ch, "citations", None) is None for ch in chunks[:-1])

    with_usage = list(oc.chat.completions.create(model="cronaca", messages=messages, stream=True,
                                                 stream_options={"include_usage": True}))
    assert with_usage[-1].choices == [] and with_usage[-1].usage.total_tokens == done.usage.total_tokens > 0
    assert with_usage[-1].citations == done.citations

    filtered = oc.chat.completions.create(model="cronaca", messages=messages, extra_body={"until": "2024-12"})
    assert filtered.citations == [c.to_dict() for c in lib.ask(ROMA, until="2024-12").citations]
    assert all(c["date"] <= "2024-12" for c in filtered.citations) and filtered.citations != done.citations
    with pytest.raises(openai.BadRequestError) as bad:
        oc.chat.completions.create(model="cronaca", messages=messages, extra_body={"since": "domani"})
    assert bad.value.body["field"] == "since"
    with pytest.raises(openai.NotFoundError) as unknown:
        oc.chat.completions.create(model="gpt-4o", messages=messages)
    assert unknown.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as last:
        oc.chat.completions.create(model="cronaca", messages=[*messages, {"role": "assistant", "content": "Ok"}])
    assert last.value.body["field"] == "messages"


def test_chat_stream_of_an_extractive_answer_is_live_and_is_the_answer(served, caplog):
    caplog.set_level(logging.WARNING, logger="cronaca.api")
    lib, srv = served()
    oc = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
    for question in (ROMA, "Chi ha vinto la Supercoppa italiana?", "Quanti anni ha il presidente della Luna?"):
        messages = [{"role": "user", "content": question}]
        done = oc.chat.completions.create(model="cronaca", messages=messages)
        answer = lib.ask(question)
        content = done.choices[0].message.content
        assert content.startswith(answer.text) and content.endswith("\n\n" + answer.notice)
        assert done.citations == [c.to_dict() for c in answer.citations]
        chunks = list(oc.chat.completions.create(model="cronaca", messages=messages, stream=True))
        pieces = [ch.choices[0].delta.content for ch in chunks if ch.choices and ch.choices[0].delta.content]
        assert "".join(pieces) == content and chunks[-1].citations == done.citations
        if not answer.declined:
            assert len(pieces) > 3  # word by word, as the extractive answerer writes it
    assert "differs from the final answer" not in caplog.text  # the live draft was the answer


def test_chat_follow_up_uses_the_history(served):
    lib, srv = served()
    oc = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)

    def ask(*messages):
        return oc.chat.completions.create(model="cronaca", messages=list(messages)).choices[0].message.content

    first = ask({"role": "user", "content": ROMA})
    # the REST route takes the same history and says how it read the follow-up
    with client(srv) as c:
        got = c.post("/api/v1/ask", json={"question": "e il Milan?", "history": [[ROMA, first]]}).json()
    standalone = got["standalone_question"]
    assert "Milan" in standalone and standalone != "e il Milan?"
    assert standalone == lib.ask("e il Milan?", history=[(ROMA, first)]).standalone_question
    follow = ask({"role": "user", "content": ROMA}, {"role": "assistant", "content": first},
                 {"role": "user", "content": [{"type": "text", "text": "e il Milan?"}]})
    assert follow == ask({"role": "user", "content": standalone})
    assert got["answer"] == lib.ask(standalone).text and follow.startswith(got["answer"] + "\n\n")


def test_assistant_turns_lose_the_sources_we_appended():
    question, history = api.split_messages([
        api.ChatMessage(role="system", content="sii breve"),
        api.ChatMessage(role="user", content="Chi allena la Roma?"),
        api.ChatMessage(role="assistant", content="Ranieri [1].\n\nFonti:\n[1] Roma, torna Ranieri — 2024-11"),
        api.ChatMessage(role="user", content="e il Milan?"),
    ])
    assert question == "e il Milan?"
    assert history == [{"role": "user", "content": "Chi allena la Roma?"},
                       {"role": "assistant", "content": "Ranieri [1]."}]


# ---- the language model failing, and answering -------------------------------------------------


def test_llm_failure_falls_back_or_is_a_502(served, stub):
    lib, srv = served(openai_base_url=stub.base_url, openai_api_key="x", llm_model="stub", llm_retries=0,
                      llm_timeout=5)
    stub.set_default(status(500))
    with client(srv) as c:
        r = c.post("/api/v1/ask", json={"question": ROMA, "fallback": "extractive"})
        assert r.status_code == 200, r.text
        got = r.json()
        extractive = lib.ask(ROMA, answerer="extractive")
        assert (got["mode"], got["answer"]) == ("extractive", extractive.text)
        assert got["citations"] == [c.to_dict() for c in extractive.citations]
        assert got["notice"].startswith(f"the LLM endpoint {stub.base_url.split('//')[1].split('/')[0]} failed (500)")
        r = c.post("/api/v1/ask", json={"question": ANCELOTTI})
        assert r.status_code == 502
        error = error_of(r)
        assert error["type"] == "llm_error" and "failed (500)" in error["message"] and "fallback" in error["message"]
        streamed = c.post("/api/v1/ask", json={"question": ANCELOTTI, "stream": True})
        assert streamed.status_code == 502 and error_of(streamed)["type"] == "llm_error"
        health = c.get("/api/v1/health").json()
        assert health["llm"] == {"configured": True, "ok": True} and health["status"] == "ok"

    oc = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
    messages = [{"role": "user", "content": ANCELOTTI}]
    with pytest.raises(openai.InternalServerError) as failed:
        oc.chat.completions.create(model="cronaca", messages=messages)
    assert failed.value.status_code == 502 and "failed (500)" in failed.value.message
    with pytest.raises(openai.InternalServerError):
        list(oc.chat.completions.create(model="cronaca-stub", messages=messages, stream=True))
    fallback = oc.chat.completions.create(model="cronaca-stub", messages=messages,
                                          extra_body={"fallback": "extractive"})
    assert "failed (500)" in fallback.choices[0].message.content


def test_llm_answer_markers_are_checked_before_the_chat_stream_shows_them(served, stub):
    lib, srv = served(openai_base_url=stub.base_url, openai_api_key="x", llm_model="stub", llm_retries=0)
    stub.set_default(reply("La Roma [3] e il Milan [1] pensano ad Ancelotti [9].", chunk_size=5))
    oc = openai.OpenAI(base_url=srv.url + "/v1", api_key="x", max_retries=0)
    assert [m.id for m in oc.models.list()] == ["cronaca-stub"]
    messages = [{"role": "user", "content": ANCELOTTI}]
    done = oc.chat.completions.create(model="cronaca-stub", messages=messages)
    chunks = list(oc.chat.completions.create(model="cronaca", messages=messages, stream=True))
    streamed = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    content = done.choices[0].message.content
    assert content.startswith("La Roma [1] e il Milan [2] pensano ad Ancelotti.\n\nFonti:\n[1] ")
    assert streamed == content and [c["n"] for c in done.citations] == [1, 2]
    assert chunks[-1].citations == done.citations
    # the REST stream shows the draft as it comes, then the checked answer
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        got = events(c.post("/api/v1/ask", json={"question": ANCELOTTI, "stream": True}).text)
    assert "".join(d["text"] for n, d in got if n == "delta") == "La Roma [3] e il Milan [1] pensano ad Ancelotti [9]."
    assert got[-1][1]["answer"] == "La Roma [1] e il Milan [2] pensano ad Ancelotti."


def test_health_says_when_the_llm_endpoint_is_down(served):
    from tests.support.api_server import free_port

    _, srv = served(openai_base_url=f"http://127.0.0.1:{free_port()}/v1", openai_api_key="x")
    with client(srv) as c:
        health = c.get("/api/v1/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "degraded" and body["store"]["ok"]
    assert body["llm"]["ok"] is False and "cannot reach" in body["llm"]["error"]


# ---- issue 19: the smaller failures ---------------------------------------------------------------


def test_a_lone_surrogate_is_a_400_naming_the_field(served):
    _, srv = served()
    with client(srv) as c:
        for path, body, field in [
            ("/api/v1/ask", {"question": "x \ud800"}, "question"),
            ("/api/v1/ask", {"question": "Chi allena la Roma?", "source": "\udfff"}, "source"),
            ("/api/v1/ask", {"question": "e poi?", "history": [["x \ud800", "y"]]}, "history"),
            ("/api/v1/summarise", {"query": "\ud800 Roma"}, "query"),
            ("/v1/chat/completions", {"model": "cronaca", "messages": [{"role": "user", "content": "x \ud800"}]},
             "question"),
        ]:
            raw = json.dumps(body)  # ensure_ascii keeps the lone surrogate as \ud800 in the JSON text
            r = c.post(path, content=raw, headers={"Content-Type": "application/json"})
            assert r.status_code == 400, (path, r.text)
            assert error_of(r)["field"] == field and error_of(r)["code"] == "encoding"


def test_llm_answerer_without_an_llm_is_a_409_and_nothing_is_called(served, monkeypatch):
    _, srv = served()
    import openai as openai_module

    def no_client(*args, **kwargs):
        raise AssertionError("an OpenAI client was built")

    monkeypatch.setattr(openai_module, "OpenAI", no_client)
    with client(srv) as c:
        asked = c.post("/api/v1/ask", json={"question": "Chi allena la Roma?", "answerer": "llm"})
        chat = c.post("/v1/chat/completions", json={"model": "cronaca", "answerer": "llm",
                                                    "messages": [{"role": "user", "content": "Chi allena la Roma?"}]})
        summary = c.post("/api/v1/summarise", json={"query": "Roma", "answerer": "llm"})
    for r in (asked, chat, summary):
        assert r.status_code == 409, r.text
        assert error_of(r)["code"] == "llm_not_configured" and "OPENAI_BASE_URL" in error_of(r)["message"]


@pytest.mark.parametrize("value", ["12/05/2025", "05.12.2025", "2025/05/12", "ieri"])
def test_request_dates_are_iso_only(served, value):
    _, srv = served()
    with client(srv) as c:
        r = c.post("/api/v1/ask", json={"question": "Chi allena la Roma?", "since": value})
    assert r.status_code == 400 and error_of(r)["field"] == "since" and "YYYY-MM-DD" in error_of(r)["message"]
    with pytest.raises(RequestError):
        from rag import validation

        validation.date_value("until", value)


def test_a_503_does_not_show_the_servers_paths(served, monkeypatch, caplog):
    lib, srv = served()
    home = str(lib.home)

    def broken(*args, **kwargs):
        raise StoreError(f"embedded Chroma at {home}/chroma failed during query: disk I/O error "
                         f"('{home}/chroma/chroma.sqlite3')")

    monkeypatch.setattr(lib, "articles", broken)
    monkeypatch.setattr(lib, "ping", broken)
    with client(srv) as c, caplog.at_level(logging.WARNING, logger="cronaca"):
        listed = c.get("/api/v1/articles")
        health = c.get("/api/v1/health")
    assert listed.status_code == 503 and "disk I/O error" in error_of(listed)["message"]
    assert "chroma.sqlite3" in listed.text
    for r in (listed, health):
        assert home not in r.text and "/tmp" not in r.text, r.text
    assert health.status_code == 503 and health.json()["store"]["ok"] is False
    assert any(home in rec.getMessage() for rec in caplog.records)  # the operator still sees it whole


def test_boundary_errors_map_to_status_codes():
    busy = api.as_api_error(IndexBusy("another ingest is still running"))
    assert (busy.status, busy.headers["Retry-After"]) == (503, str(api.BUSY_RETRY_AFTER))
    assert api.as_api_error(StoreError("Chroma at 10.0.0.1:8000 is unreachable")).status == 503
    assert api.as_api_error(LLMError("boom")).status == 502
    request = api.as_api_error(RequestError("since", "bad", code="date"))
    assert (request.status, request.payload()["error"]["field"]) == (400, "since")
    assert api.as_api_error(ZeroDivisionError("secret detail")).payload()["error"]["message"].startswith("internal")


# ---- the server: page + API in one app, feeds on a schedule --------------------------------------


def test_page_and_api_in_one_app(hash_sample, monkeypatch):
    """One access rule for page and API: the key opens both; a page login opens the API for that browser."""
    monkeypatch.setenv("CRONACA_AUTH", "redazione:segreta")
    lib = hash_sample()
    with ServerThread(server.build_app(lib, api_key=KEY)) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        page = c.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert c.get("/config").status_code == 401  # the page's data needs the page's login
        assert c.get("/api/v1/health").status_code == 200
        assert c.get("/api/v1/stats").status_code == 401
        keyed = {"Authorization": f"Bearer {KEY}"}
        assert c.get("/api/v1/stats", headers=keyed).json()["articles"] == len(lib.articles())
        assert c.post("/login", data={"username": "redazione", "password": "segreta"}).status_code == 200
        assert c.get("/config").json()["mode"] == "blocks"
        assert c.get("/api/v1/stats").json()["articles"] == len(lib.articles())  # the login opens the API too
        docs = c.get("/openapi.json").json()
        assert {"/api/v1/ask", "/api/v1/articles", "/v1/chat/completions", "/v1/models"} <= set(docs["paths"])
        assert "event: delta" in json.dumps(docs)


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("15m", 900), ("1h", 3600), ("45", 45), ("", None),
                                          ("off", None), ("1.5m", 90)])
def test_refresh_intervals(text, seconds):
    assert server.parse_every(text) == seconds


@pytest.mark.parametrize("text", ["ogni ora", "15 minuti", "-5m", "2s"])
def test_bad_refresh_intervals_name_the_option(text):
    with pytest.raises(RequestError) as info:
        server.parse_every(text)
    assert info.value.field == "refresh_every"


def test_refresher_survives_errors_and_stops(caplog):
    calls: list[float] = []

    class Report:
        errors = ["http://x/feed: 404"]

        def summary(self):
            return "1 feed: added 2, updated 0, unchanged 0, skipped 0, failed 1"

    def run():
        calls.append(time.monotonic())
        if len(calls) == 2:
            raise OSError("disco pieno")
        return Report()

    caplog.set_level(logging.INFO, logger="cronaca.server")
    refresher = server.FeedRefresher(None, every=0.1, run=run)  # type: ignore[arg-type]
    refresher.start()
    deadline = time.monotonic() + 10
    while len(calls) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    refresher.stop()
    count = len(calls)
    time.sleep(0.3)
    assert count >= 4 and len(calls) == count  # kept going after the failure, then stopped
    assert all(b - a >= 0.09 for a, b in zip(calls, calls[1:]))
    lines = [r.getMessage() for r in caplog.records if r.name == "cronaca.server"]
    assert any("refresh failed" in line and "disco pieno" in line for line in lines)
    assert any(line.startswith("feeds: 1 feed: added 2") and "first error: http://x/feed: 404" in line
               for line in lines)


def test_server_refreshes_feeds_in_the_background(hash_sample):
    from tests.support.news_site import NewsSite
    from tests.test_feeds import GAZZETTA, serve_gazzetta

    lib = hash_sample(fetch_delay=0.05, fetch_timeout=5, fetch_allow_private=True)
    with NewsSite() as site:
        lib.feeds.add(serve_gazzetta(site))
        app = server.build_app(lib, api_key="", refresh_every=3600, page=False)
        with ServerThread(app) as srv, client(srv) as c:
            urls = [site.url(p) for p in GAZZETTA]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                found = [c.get("/api/v1/articles/" + quote(u, safe=":/")).status_code for u in urls]
                if found == [200] * len(urls):
                    break
                assert c.post("/api/v1/ask", json={"question": "Chi allena la Roma?"}).status_code == 200
                time.sleep(0.2)
            assert found == [200] * len(urls)
            refresher = app.state.refresher
            assert refresher.runs == 1 and refresher.failures == 0
        assert not refresher._thread.is_alive()  # stopped with the server


# ---- the real command ----------------------------------------------------------------------------


@pytest.mark.server
def test_cronaca_serve_command(tmp_path):
    home = tmp_path / "home"
    proc = ServeProcess(home, tmp_path / "serve.log", env={"CRONACA_API_KEY": KEY,
                                                           "CRONACA_SAMPLE": str(tmp_path / "no-sample")},
                        args=["--refresh-every", "1h"]).start()
    try:
        with httpx.Client(base_url=proc.url, timeout=120) as c:
            assert c.get("/api/v1/health").json()["status"] == "ok"
            assert c.get("/api/v1/articles").status_code == 401
            assert "<html" in c.get("/").text.lower()
            keyed = {"Authorization": f"Bearer {KEY}"}
            note = b"---\ntitle: Il derby della Mole\ndate: 2025-03-02\nsource: Cronaca Sport\n---\n" \
                   b"Il Torino ha battuto la Juventus nel derby della Mole per due a uno, con doppietta di Adams.\n"
            report = c.post("/api/v1/articles", files=[("files", ("derby.md", note))], headers=keyed).json()
            assert report["added"] == 1, report
            answer = c.post("/api/v1/ask", json={"question": "Chi ha vinto il derby della Mole?"}, headers=keyed).json()
            assert answer["citations"][0]["title"] == "Il derby della Mole" and "Torino" in answer["answer"]
    finally:
        code = proc.stop()
    log = proc.log()
    assert code in (0, -15), log  # uvicorn stops gracefully, then lets SIGTERM end the process as usual
    assert "feeds: refreshing every 1h" in log and re.search(r"feeds: 0 feeds: added 0", log)
    assert re.search(r"cronaca\.api: POST /api/v1/ask 200 \d+ ms", log)
    assert "DEBUG" not in log and "Traceback" not in log
    assert "Application shutdown complete" in log


@pytest.mark.server
def test_app_py_is_cronaca_serve():
    out = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--refresh-every" in out.stdout and "--port" in out.stdout
    bad = subprocess.run([sys.executable, "app.py", "--refresh-every", "presto"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "refresh_every" in bad.stderr


@pytest.mark.server
def test_store_gone_is_a_503_with_the_reason(make_lib, tmp_path):
    from tests.support.chroma_server import start_chroma_server

    chroma = start_chroma_server(tmp_path / "chroma-data")
    try:
        lib = make_lib(chroma_host="127.0.0.1", chroma_port=chroma.port)
        lib.ingest([ROOT / "data" / "sample"])
        with ServerThread(api.create_app(lib)) as srv, client(srv) as c:
            assert c.get("/api/v1/health").status_code == 200
            chroma.kill()
            time.sleep(api.HEALTH_CACHE)
            health = c.get("/api/v1/health")
            assert health.status_code == 503 and health.json()["store"]["ok"] is False
            r = c.post("/api/v1/ask", json={"question": ANCELOTTI})
            assert r.status_code == 503 and error_of(r)["type"] == "store_unavailable"
            assert "127.0.0.1" in error_of(r)["message"]
    finally:
        chroma.stop()


# ---- the Done criterion: the real embedder, through the real command, with a key ---------------


@pytest.mark.slow
@pytest.mark.server
def test_done_ancelotti_over_http_and_the_openai_client(sample_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(sample_home, home)
    proc = ServeProcess(home, tmp_path / "serve.log", env={"CRONACA_API_KEY": KEY}).start()
    try:
        with httpx.Client(base_url=proc.url, timeout=180) as c:
            refused = c.post("/api/v1/ask", json={"question": ANCELOTTI})
            assert refused.status_code == 401
            got = c.post("/api/v1/ask", json={"question": ANCELOTTI},
                         headers={"Authorization": f"Bearer {KEY}"}).json()
        assert "Roma" in got["answer"] and "Milan" in got["answer"], got["answer"]
        assert got["citations"] and re.search(r"\[\d+\]", got["answer"])
        oc = openai.OpenAI(base_url=proc.url + "/v1", api_key=KEY, timeout=180)
        messages = [{"role": "user", "content": ANCELOTTI}]
        done = oc.chat.completions.create(model="cronaca", messages=messages)
        content = done.choices[0].message.content
        assert "Roma" in content and "Milan" in content and "\n\nFonti:\n[1] " in content and done.citations
        chunks = list(oc.chat.completions.create(model="cronaca", messages=messages, stream=True))
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == content
        assert chunks[-1].citations == done.citations
    finally:
        assert proc.stop() in (0, -15), proc.log()

