"""A scripted OpenAI-compatible HTTP stub for tests (standard library only).

::

    from tests.support.stub_openai import StubOpenAI, reply, status, delay, cut_stream

    with StubOpenAI() as stub:
        stub.script([status(429, headers={"Retry-After": "1"}), reply("Hello [1].")])
        client = OpenAI(base_url=stub.base_url, api_key="x", max_retries=1)
        ...
        assert len(stub.chat_requests) == 2

Each request to ``/v1/chat/completions`` consumes one scripted step; when the
script is empty the default step (``reply(default_reply)``) answers.  Steps:

- :func:`reply` - a chat completion; SSE-streamed when the request has
  ``"stream": true`` (usage in a last chunk if ``stream_options.include_usage``),
  else one ``chat.completion`` JSON with ``usage``.  ``finish_reason="length"``
  or ``None`` (a stream that ends without saying why) script a cut answer;
  ``interval`` waits between streamed pieces (:func:`trickle`).
- :func:`hang_stream` - stream a prefix, then send only SSE keep-alive comments
  (bytes, but no event) for a while: an HTTP read timeout never fires.
- :func:`status` - an error status with an OpenAI-style ``{"error": {...}}`` body.
- :func:`delay` - sleep, then answer with another step (for client timeouts).
- :func:`cut_stream` - start a stream, send a few chunks, drop the connection
  without the terminating chunk or ``[DONE]``.
- :func:`malformed_stream` - a 200 stream whose events are not JSON.

A plain ``str`` in a script is shorthand for ``reply(str)``.  ``/v1/models`` and
``/v1/embeddings`` (deterministic hash vectors, dim 64, L2-normalised) are served
too.  Every request is recorded in :attr:`StubOpenAI.requests`.

Responses use HTTP/1.1 with ``Content-Length`` or chunked transfer encoding, so a
cut stream is a protocol error the client can detect (not a silent short body).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import math
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

EMBEDDING_DIM = 64
DEFAULT_MODEL = "stub-model"
DEFAULT_EMBEDDING_MODEL = "stub-embedding"
DEFAULT_REPLY = "This is the stub's default answer."

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_denied", None),
    404: ("invalid_request_error", "model_not_found"),
    408: ("timeout", None),
    409: ("conflict", None),
    422: ("invalid_request_error", None),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", None),
}


# ----------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Reply:
    text: str
    chunk_size: int = 8
    finish_reason: str | None = "stop"  # None: the last chunk carries no reason
    model: str | None = None  # default: the model named in the request
    interval: float = 0.0  # seconds between streamed pieces


@dataclass(frozen=True)
class HangStream:
    text_prefix: str = ""
    seconds: float = 30.0
    keepalive: float = 0.2  # an SSE comment this often: bytes that carry no event
    chunk_size: int = 4


@dataclass(frozen=True)
class Status:
    code: int
    body: Any = None  # dict -> JSON, str/bytes -> sent as is, None -> OpenAI error JSON
    headers: dict[str, str] = field(default_factory=dict)
    message: str | None = None


@dataclass(frozen=True)
class Delay:
    seconds: float
    then: Step | None = None  # None -> the default reply


@dataclass(frozen=True)
class CutStream:
    text_prefix: str = "The answer is"
    chunk_size: int = 4


@dataclass(frozen=True)
class MalformedStream:
    lines: tuple[str, ...] = ("{not json", '{"choices": [')


Step = Reply | Status | Delay | CutStream | MalformedStream | HangStream


def reply(text: str, chunk_size: int = 8, *, finish_reason: str | None = "stop", model: str | None = None,
          interval: float = 0.0) -> Reply:
    """Answer ``text`` (streamed in pieces of ``chunk_size`` characters if asked to)."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    return Reply(text, chunk_size, finish_reason, model, interval)


def trickle(text: str, interval: float, chunk_size: int = 4) -> Reply:
    """Stream ``text`` slowly: a piece of ``chunk_size`` characters every ``interval`` seconds."""
    return reply(text, chunk_size, interval=interval)


def hang_stream(text_prefix: str = "", seconds: float = 30.0, keepalive: float = 0.2) -> HangStream:
    """Stream ``text_prefix``, then keep the connection busy with comments only for ``seconds``
    (then finish normally); interrupted by server shutdown."""
    return HangStream(text_prefix, seconds, keepalive)


def status(
    code: int,
    body: Any = None,
    headers: dict[str, str] | None = None,
    *,
    message: str | None = None,
) -> Status:
    """Answer HTTP ``code``; the default body is ``{"error": {message, type, code}}``."""
    return Status(code, body, dict(headers or {}), message)


def delay(seconds: float, then: Step | str | None = None) -> Delay:
    """Sleep ``seconds`` (interrupted by server shutdown), then answer with ``then``."""
    return Delay(seconds, _as_step(then) if then is not None else None)


def cut_stream(text_prefix: str = "The answer is", chunk_size: int = 4) -> CutStream:
    """Stream ``text_prefix`` in chunks, then close the socket mid-response."""
    return CutStream(text_prefix, chunk_size)


def malformed_stream(*lines: str) -> MalformedStream:
    """A 200 SSE response whose ``data:`` payloads are not valid JSON."""
    return MalformedStream(tuple(lines) if lines else MalformedStream.lines)


def _as_step(step: Step | str) -> Step:
    if isinstance(step, str):
        return reply(step)
    if isinstance(step, (Reply, Status, Delay, CutStream, MalformedStream, HangStream)):
        return step
    raise TypeError(f"not a stub step: {step!r}")


# ------------------------------------------------------------------------- recording


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    json: Any  # parsed body, or None if there was none / it was not JSON
    raw: bytes = b""
    time: float = 0.0

    @property
    def body(self) -> Any:
        return self.json


def rough_token_count(text: str) -> int:
    """About one token per four characters, at least one for non-empty text."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def _prompt_tokens(body: Any) -> int:
    if not isinstance(body, dict):
        return 0
    total = 0
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):  # content parts
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        total += rough_token_count(str(content or "")) + 4
    return total


def hash_embedding(text: str, dim: int = EMBEDDING_DIM) -> list[float]:
    """Deterministic L2-normalised vector from SHA-256 of ``text`` (same as the stub)."""
    values: list[float] = []
    for counter in itertools.count():
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        for (word,) in struct.iter_unpack(">I", digest):
            values.append(word / 0xFFFFFFFF * 2.0 - 1.0)
        if len(values) >= dim:
            break
    values = values[:dim]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


# ---------------------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    stub: StubOpenAI


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence
        pass

    # ---- plumbing

    def _read_body(self) -> tuple[bytes, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return raw, parsed

    def _send_json(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self._send_bytes(code, data, "application/json", headers)

    def _send_bytes(
        self, code: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, str(value))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _start_sse(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _sse(self, payload: Any) -> None:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        self._chunk(f"data: {data}\n\n".encode())

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _drop_connection(self) -> None:
        """Close the socket abruptly, mid-response."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # ---- routing

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        raw, body = self._read_body() if method == "POST" else (b"", None)
        path = self.path.split("?", 1)[0].rstrip("/")
        route = path[3:] if path.startswith("/v1/") else path
        stub = self.server.stub
        stub._record(
            RecordedRequest(
                method=method,
                path=path,
                headers={k.lower(): v for k, v in self.headers.items()},
                json=body,
                raw=raw,
                time=time.time(),
            )
        )
        try:
            if method == "GET" and route in ("/models", ""):
                self._send_json(200, stub._models_payload())
            elif method == "GET" and route == "/health":
                self._send_json(200, {"status": "ok"})
            elif method == "POST" and route == "/chat/completions":
                self._play(stub._next_step(), body if isinstance(body, dict) else {})
            elif method == "POST" and route == "/embeddings":
                self._embeddings(body)
            else:
                self._error(404, f"Unknown route {method} {self.path}")
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True  # the client hung up (e.g. its timeout fired)

    def _error(self, code: int, message: str, headers: dict[str, str] | None = None) -> None:
        err_type, err_code = _ERROR_TYPES.get(code, ("api_error", None))
        payload = {"error": {"message": message, "type": err_type, "param": None, "code": err_code}}
        self._send_json(code, payload, headers)

    # ---- chat completions

    def _play(self, step: Step, body: dict) -> None:
        stub = self.server.stub
        if isinstance(step, Delay):
            if stub._stopping.wait(step.seconds):
                self._drop_connection()
                return
            step = step.then or stub._default_step
            if isinstance(step, Delay):  # nested delays are fine
                self._play(step, body)
                return
        if isinstance(step, Status):
            if step.body is None:
                message = step.message or f"stub error {step.code} ({HTTPStatus(step.code).phrase})"
                self._error(step.code, message, step.headers)
            elif isinstance(step.body, (str, bytes)):
                data = step.body.encode() if isinstance(step.body, str) else step.body
                self._send_bytes(step.code, data, "application/json", step.headers)
            else:
                self._send_json(step.code, step.body, step.headers)
        elif isinstance(step, Reply):
            if body.get("stream"):
                self._stream_reply(step, body)
            else:
                self._send_json(200, self._completion(step, body))
        elif isinstance(step, CutStream):
            self._cut(step, body)
        elif isinstance(step, HangStream):
            self._hang(step, body)
        elif isinstance(step, MalformedStream):
            if body.get("stream"):
                self._start_sse()
                for line in step.lines:
                    self._chunk(f"data: {line}\n\n".encode())
                self._chunk(b"data: [DONE]\n\n")
                self._end_chunks()
            else:
                self._send_bytes(200, step.lines[0].encode(), "application/json")
        else:  # pragma: no cover - _as_step guards this
            raise TypeError(step)

    def _base(self, step: Reply, body: dict, obj: str) -> dict:
        stub = self.server.stub
        return {
            "id": f"chatcmpl-stub-{stub._next_id()}",
            "object": obj,
            "created": int(time.time()),
            "model": step.model or body.get("model") or stub.model,
            "system_fingerprint": "stub",
        }

    def _usage(self, step: Reply, body: dict) -> dict:
        prompt = _prompt_tokens(body)
        completion = rough_token_count(step.text)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _completion(self, step: Reply, body: dict) -> dict:
        payload = self._base(step, body, "chat.completion")
        payload["choices"] = [
            {
                "index": 0,
                "message": {"role": "assistant", "content": step.text, "refusal": None},
                "logprobs": None,
                "finish_reason": step.finish_reason,
            }
        ]
        payload["usage"] = self._usage(step, body)
        return payload

    def _chunk_payload(self, base: dict, delta: dict, finish: str | None, usage: bool) -> dict:
        payload = dict(base)
        payload["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        if usage:
            payload["usage"] = None
        return payload

    def _stream_reply(self, step: Reply, body: dict) -> None:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = self._base(step, body, "chat.completion.chunk")
        self._start_sse()
        self._sse(self._chunk_payload(base, {"role": "assistant", "content": ""}, None, include_usage))
        for i, piece in enumerate(_pieces(step.text, step.chunk_size)):
            if i and step.interval and self.server.stub._stopping.wait(step.interval):
                self._drop_connection()
                return
            self._sse(self._chunk_payload(base, {"content": piece}, None, include_usage))
        self._sse(self._chunk_payload(base, {}, step.finish_reason, include_usage))
        if include_usage:
            self._sse({**base, "choices": [], "usage": self._usage(step, body)})
        self._sse("[DONE]")
        self._end_chunks()

    def _cut(self, step: CutStream, body: dict) -> None:
        fake = Reply(step.text_prefix, step.chunk_size)
        if body.get("stream"):
            base = self._base(fake, body, "chat.completion.chunk")
            self._start_sse()
            self._sse(self._chunk_payload(base, {"role": "assistant", "content": ""}, None, False))
            for piece in _pieces(step.text_prefix, step.chunk_size):
                self._sse(self._chunk_payload(base, {"content": piece}, None, False))
            time.sleep(0.05)  # let the client see the partial stream first
        else:  # promise a longer body than is sent
            data = json.dumps(self._completion(fake, body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data) + 100))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
        self._drop_connection()

    def _hang(self, step: HangStream, body: dict) -> None:
        fake = Reply(step.text_prefix, step.chunk_size)
        base = self._base(fake, body, "chat.completion.chunk")
        self._start_sse()
        self._sse(self._chunk_payload(base, {"role": "assistant", "content": ""}, None, False))
        for piece in _pieces(step.text_prefix, step.chunk_size):
            self._sse(self._chunk_payload(base, {"content": piece}, None, False))
        until = time.monotonic() + step.seconds
        while time.monotonic() < until:
            if self.server.stub._stopping.wait(step.keepalive):
                self._drop_connection()
                return
            self._chunk(b": keep-alive\n\n")
        self._sse(self._chunk_payload(base, {}, "stop", False))
        self._sse("[DONE]")
        self._end_chunks()

    # ---- embeddings

    def _embeddings(self, body: Any) -> None:
        if not isinstance(body, dict) or "input" not in body:
            self._error(400, "'input' is a required property")
            return
        inputs = body["input"]
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
            inputs = [inputs]  # one string, or one list of token ids
        dim = int(body.get("dimensions") or EMBEDDING_DIM)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        tokens = 0
        for index, item in enumerate(inputs):
            text = item if isinstance(item, str) else json.dumps(item)
            tokens += rough_token_count(text)
            vector = hash_embedding(text, dim)
            encoded: Any = vector
            if as_base64:
                encoded = base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        payload = {
            "object": "list",
            "data": data,
            "model": body.get("model") or DEFAULT_EMBEDDING_MODEL,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        self._send_json(200, payload)


def _pieces(text: str, size: int) -> Iterable[str]:
    return (text[i : i + size] for i in range(0, len(text), size))


class StubOpenAI:
    """Scripted OpenAI-compatible server on ``127.0.0.1`` (a free port by default)."""

    def __init__(
        self,
        *,
        port: int = 0,
        model: str = DEFAULT_MODEL,
        default_reply: str | Step = DEFAULT_REPLY,
    ) -> None:
        self.model = model
        self._default_step = _as_step(default_reply)
        self._lock = threading.Lock()
        self._script: deque[Step] = deque()
        self._requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.stub = self
        self.host, self.port = self._httpd.server_address[:2]
        self.root_url = f"http://{self.host}:{self.port}"
        self.base_url = f"{self.root_url}/v1"
        self._thread: threading.Thread | None = None

    # ---- lifecycle

    def start(self) -> StubOpenAI:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"stub-openai-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; pending delays are cut short. Idempotent."""
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()

    close = stop

    def __enter__(self) -> StubOpenAI:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ---- scripting

    def script(self, steps: Iterable[Step | str]) -> StubOpenAI:
        """Append steps; each ``/v1/chat/completions`` request consumes one."""
        converted = [_as_step(s) for s in steps]
        with self._lock:
            self._script.extend(converted)
        return self

    def set_default(self, step: Step | str) -> None:
        """The step used once the script is exhausted."""
        self._default_step = _as_step(step)

    @property
    def pending(self) -> int:
        """Scripted steps not consumed yet."""
        with self._lock:
            return len(self._script)

    def _next_step(self) -> Step:
        with self._lock:
            return self._script.popleft() if self._script else self._default_step

    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    # ---- recording

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def embedding_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/embeddings")]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def _models_payload(self) -> dict:
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "stub"}
                for m in (self.model, DEFAULT_EMBEDDING_MODEL)
            ],
        }

    def __repr__(self) -> str:
        return f"StubOpenAI(base_url={self.base_url!r})"
