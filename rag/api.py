"""The HTTP API over one ``Library``: REST under ``/api/v1`` and an OpenAI-compatible ``/v1``.

This module only translates: JSON and multipart in, library calls, ``to_dict()`` out, and the
library's boundary errors into one error shape, ``{"error": {"message", "type", "param",
"code", "field"?}}`` (OpenAI's shape plus ``field``, so an OpenAI client reads it too). Values
are checked by ``rag.validation``, not here, so the API refuses exactly what the CLI refuses.

Routes are plain ``def`` functions: FastAPI runs them in its thread pool, so blocking library
calls never stall the event loop and requests are served in parallel; streamed bodies are sync
generators that Starlette also iterates in the pool. The first piece of a stream is produced
before the response starts, so a failure known early (the LLM endpoint down, the store gone)
still gets its status code rather than a 200 with an error event.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Query, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag import access, validation
from rag.dates import spoken
from rag.index import IndexBusy
from rag.library import Library
from rag.llm import LLMError
from rag.models import Answer, StoredArticle
from rag.store import StoreError
from rag.streams import Stream
from rag.summaries import SummaryError
from rag.uploads import Upload
from rag.validation import RequestError

log = logging.getLogger("cronaca.api")

PREFIX = "/api/v1"
HEALTH = f"{PREFIX}/health"
JSON_LIMIT = 1024 * 1024  # bytes of a JSON request body
UPLOAD_FILES = 20  # files per upload request; the body may hold this many files of the size limit
MAX_PAGE = 500  # articles per page
HEALTH_TIMEOUT = 2.0  # seconds for each health probe (store, LLM endpoint)
HEALTH_CACHE = 5.0  # seconds a health result is reused: the probe is unauthenticated
BUSY_RETRY_AFTER = 10  # seconds, for clients to wait when another write holds the index
API_LOCK_TIMEOUT = 30.0  # seconds an upload or delete waits for another write before answering 503
MODEL = "cronaca"
UPLOAD_DOC = f"up to {UPLOAD_FILES} files: .txt .md .json .jsonl .html"

SSE_DOC = (
    "With `\"stream\": true` the response is `text/event-stream`: `event: delta` events "
    "(`data: {\"text\": \"…\"}`, a draft of the text as it is written), then one `event: {final}` "
    "whose data is the same object as without `stream` (markers validated and renumbered: show "
    "it in place of the draft), or `event: error` (`data: {\"error\": {…}, \"status\": 502}`) "
    "when something fails after the stream started."
)


# -- errors ----------------------------------------------------------------------------------------


class ApiError(Exception):
    """An HTTP error, rendered in the one error shape of this API."""

    def __init__(self, status: int, message: str, type_: str, field: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.field, self.code = status, message, type_, field, code
        self.headers = headers or {}

    def payload(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type, "param": self.field,
                                 "code": self.code}
        if self.field:
            error["field"] = self.field
        return {"error": error}

    def response(self) -> JSONResponse:
        return JSONResponse(self.payload(), status_code=self.status, headers=self.headers)


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


_HTTP_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               405: "method_not_allowed", 413: "request_too_large", 415: "unsupported_media_type"}


def as_api_error(exc: BaseException) -> ApiError:
    """The status and words for each boundary error of the library (see ARCHITECTURE.md)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RequestError):
        status = 409 if exc.code == "llm_not_configured" else 400  # the request is fine; the server lacks it
        return ApiError(status, str(exc), "invalid_request_error", exc.field, exc.code)
    if isinstance(exc, SummaryError):
        return ApiError(404, str(exc), "not_found_error", "article_id", "not_found")
    if isinstance(exc, IndexBusy):
        return ApiError(503, f"{exc}; try again shortly", "busy", code="index_busy",
                        headers={"Retry-After": str(BUSY_RETRY_AFTER)})
    if isinstance(exc, StoreError):
        log.warning("store unavailable: %s", exc)
        return ApiError(503, without_paths(str(exc)), "store_unavailable", code="store_unavailable")
    if isinstance(exc, LLMError):
        return ApiError(502, f"{exc} (send \"fallback\": \"extractive\" to answer without the language model)",
                        "llm_error", code="llm_failed")
    if isinstance(exc, HTTPException):
        return ApiError(exc.status_code, str(exc.detail), _HTTP_TYPES.get(exc.status_code, "http_error"),
                        headers=dict(exc.headers or {}))
    log.error("unexpected error", exc_info=exc)
    return ApiError(500, "internal error (the server log has the details)", "server_error")


_PATH = re.compile(r"(?<![\w.:/])(?:~|[A-Za-z]:)?[/\\](?:[^\s/\\'\"]+[/\\])+([^\s/\\'\"]*)")


def without_paths(message: str) -> str:
    """A message for clients: each filesystem path cut to its last name (``…/chroma.sqlite3``),
    so an error does not map the server's folders for a stranger (the log keeps the whole)."""
    return _PATH.sub(lambda m: "…/" + m.group(1), message)


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Pydantic's complaint about the body or the query, in our shape, naming the field."""
    first = (exc.errors() or [{}])[0]
    loc = [str(p) for p in first.get("loc", ()) if not isinstance(p, int)]
    field = next((p for p in loc if p not in ("body", "query", "path")), "body")
    if field == "files" and "multipart/form-data" not in request.headers.get("content-type", ""):
        return ApiError(415, "send the files as multipart/form-data, one or more parts named 'files'",
                        "unsupported_media_type", "files", "multipart_required").response()
    message = first.get("msg", "invalid value")
    if first.get("type") == "json_invalid":
        message = f"the body is not valid JSON ({first.get('ctx', {}).get('error', 'decode error')})"
    return ApiError(400, f"{field}: {message}", "invalid_request_error", field, first.get("type")).response()


def install_error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return as_api_error(exc).response()

    for kind in (ApiError, RequestError, SummaryError, IndexBusy, StoreError, LLMError, HTTPException, Exception):
        app.add_exception_handler(kind, handle)
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]


# -- middleware ------------------------------------------------------------------------------------


def _is_api(path: str) -> bool:
    return path.startswith((PREFIX + "/", "/v1/")) or path in (PREFIX, "/v1")


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit / 2**20:g} MB")


class BodyLimit:
    """Refuses API request bodies over their limit (413), by Content-Length before reading and by
    counting bytes as they arrive (a chunked body has no length). The page has its own limits."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str, str], int | None]) -> None:
        self.app, self.limit_for = app, limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit_for(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if limit is None:
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            return await as_api_error(BodyTooLarge(limit)).response()(scope, receive, send)
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


class RequestLog:
    """One INFO line per API request, when it is done: method, path, status, milliseconds."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_api(scope["path"]):
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [0]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = scope.get("raw_path", b"").decode("latin-1") or scope["path"]  # still %-encoded: one line
            log.info("%s %s %d %.0f ms", scope["method"], path, status[0] or 500, (time.perf_counter() - t0) * 1000)


# -- request bodies --------------------------------------------------------------------------------


class Body(BaseModel):
    """Unknown fields are refused, so a misspelt filter is an error rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


_PERIOD = "YYYY-MM-DD or YYYY-MM"


class AskBody(Body):
    question: str = Field(description=f"at most {validation.MAX_QUESTION_CHARS} characters")
    k: int | None = Field(None, description=f"chunks to retrieve, 1..{validation.MAX_K} (default 5)")
    since: str | None = Field(None, description=f"only articles dated on or after ({_PERIOD})")
    until: str | None = Field(None, description="only articles dated on or before")
    source: str | None = Field(None, description="only articles from this source")
    as_of: str | None = Field(None, description="answer as of this date, from articles up to it")
    answerer: str | None = Field("auto", description=" | ".join(validation.ANSWERERS))
    fallback: str | None = Field("none", description="none | extractive: what to do when the LLM fails")
    history: list[Any] | None = Field(None, description="earlier turns, oldest first: [question, answer] "
                                      "pairs or {role, content} messages; a follow-up is rewritten")
    stream: bool = Field(False, description="server-sent events instead of one JSON object")


class SummariseBody(Body):
    article_id: str | None = Field(None, description="summarise this article, or")
    query: str | None = Field(None, description="what the articles say about this, or a period alone")
    since: str | None = None
    until: str | None = None
    source: str | None = None
    lang: str | None = Field("it", description="it | en")
    k: int | None = Field(None, description="chunks to retrieve for a query (default 30)")
    answerer: str | None = "auto"
    fallback: str | None = "extractive"
    stream: bool = False


class DigestBody(Body):
    since: str = Field(description=f"first day of the period ({_PERIOD})")
    until: str | None = None
    source: str | None = None
    lang: str | None = "it"
    answerer: str | None = "auto"
    fallback: str | None = "extractive"
    stream: bool = False


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatBody(BaseModel):
    """OpenAI's request; sampling options are accepted and ignored (the library sets its own).
    cronaca's filters may come along as extra fields (``extra_body`` in the openai client)."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage]
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    k: int | None = None
    since: str | None = None
    until: str | None = None
    source: str | None = None
    as_of: str | None = None
    answerer: str | None = "auto"
    fallback: str | None = "none"


# -- streaming -------------------------------------------------------------------------------------


def sse(data: Any, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def _event_stream(body: Iterator[str]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


_DONE = object()


def events(stream: Stream, final: str) -> StreamingResponse:
    """``delta`` events, then ``final`` with the result's dict, or ``error``."""
    pieces = iter(stream)
    first = next(pieces, _DONE)  # raises here, before the response starts, when it fails early

    def body() -> Iterator[str]:
        try:
            if first is not _DONE:
                for delta in _chain(first, pieces):
                    if delta:
                        yield sse({"text": delta}, "delta")
            yield sse(stream.result.to_dict(), final)
        except Exception as exc:  # the response has started: the error becomes the last event
            error = as_api_error(exc)
            yield sse({**error.payload(), "status": error.status}, "error")

    return _event_stream(body())


def _chain(first: Any, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


# -- the OpenAI-compatible part --------------------------------------------------------------------


def model_id(lib: Library) -> str:
    return f"{MODEL}-{lib.config.llm_model}" if lib.config.llm_configured else MODEL


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if p.get("type") in ("text", "input_text"))
    return content or ""


_SOURCES_HEADINGS = {"it": "Fonti:", "en": "Sources:"}


def sources_text(answer: Answer) -> str:
    """The sources an answer cites, one line each, for clients that only show text."""
    lines = [_SOURCES_HEADINGS.get(answer.lang, "Fonti:")]
    for c in answer.citations:
        date = spoken(c.date, answer.lang) if c.date else ""
        lines.append(" — ".join([f"[{c.n}] {c.title}", *(v for v in (date, c.source, c.url) if v)]))
    return "\n".join(lines)


def _suffix(answer: Answer) -> str:
    parts = [sources_text(answer)] if answer.citations else []
    if answer.notice:
        parts.append(answer.notice)
    return "".join("\n\n" + p for p in parts)


def _without_sources(text: str) -> str:
    """An assistant turn we wrote, without the sources list we appended to it."""
    cut = min((i for h in _SOURCES_HEADINGS.values() if (i := text.find(f"\n\n{h}\n")) >= 0), default=len(text))
    return text[:cut]


def split_messages(messages: list[ChatMessage]) -> tuple[str, list[dict[str, str]]]:
    """The last user message is the question; earlier user and assistant turns are the history.
    System and tool messages are ignored: answers come from the articles, on our prompt."""
    if not messages or messages[-1].role != "user":
        raise RequestError("messages", "the last message must be the user's question", code="last_message")
    history = [{"role": m.role, "content": _without_sources(_text(m.content)) if m.role == "assistant"
                else _text(m.content)} for m in messages[:-1] if m.role in ("user", "assistant")]
    return _text(messages[-1].content), history


def _uses_llm(lib: Library, answerer: str | None) -> bool:
    return lib.config.uses_llm(validation.answerer(answerer))


class Chat:
    """One ``/v1/chat/completions`` request: the answer as OpenAI's completion or chunks."""

    def __init__(self, model: str) -> None:
        self.id, self.created, self.model = f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), model

    def _base(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def completion(self, answer: Answer) -> dict[str, Any]:
        prompt, completion = answer.usage.get("prompt_tokens", 0), answer.usage.get("completion_tokens", 0)
        return {**self._base("chat.completion"),
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": answer.text.strip() + _suffix(answer)}}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion},
                "citations": [c.to_dict() for c in answer.citations],
                "conflicts": [c.to_dict() for c in answer.conflicts]}

    def chunk(self, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> str:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
        return sse({**self._base("chat.completion.chunk"), "choices": choices, **extra})

    def chunks(self, stream: Stream[Answer], drafts: Iterator[str], usage: bool) -> Iterator[str]:
        """Role, content deltas (trailing blanks held back, so the text is the answer's), the
        sources, the finish; ``citations`` and ``conflicts`` ride on the last chunk before ``[DONE]``."""
        yield self.chunk({"role": "assistant", "content": ""})
        sent: list[str] = []
        try:
            held, started = "", False
            for delta in drafts:
                text = held + delta
                kept = text.rstrip()
                held = text[len(kept):]
                if not started:
                    kept, started = kept.lstrip(), bool(kept.strip())
                if kept:
                    sent.append(kept)
                    yield self.chunk({"content": kept})
            answer = stream.result
        except Exception as exc:
            yield sse(as_api_error(exc).payload())
            return
        if "".join(sent) != answer.text.strip():  # the live path relies on the draft being the answer
            log.warning("chat stream %s: the streamed text differs from the final answer", self.id)
        if suffix := _suffix(answer):
            yield self.chunk({"content": suffix})
        cited = {"citations": [c.to_dict() for c in answer.citations],
                 "conflicts": [c.to_dict() for c in answer.conflicts]}
        yield self.chunk({}, "stop", **({} if usage else cited))
        if usage:
            done = self.completion(answer)["usage"]
            yield self.chunk(None, usage=done, **cited)
        yield sse("[DONE]")


# -- health ----------------------------------------------------------------------------------------


class Health:
    """Whether the store and the LLM endpoint answer, with short timeouts and no contents.

    Health is open to anyone (monitors have no key), so it says only whether each part answers:
    why the store failed (a path, a host) goes to the server log, never into the body."""

    def __init__(self, lib: Library) -> None:
        self.lib = lib
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cronaca-health")
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None

    def _probe(self, check: Callable[[], None]) -> dict[str, Any]:
        try:
            self._pool.submit(check).result(timeout=HEALTH_TIMEOUT)
        except FutureTimeout:
            return {"ok": False, "error": f"did not answer within {HEALTH_TIMEOUT:g} s"}
        except LLMError as exc:  # our own fixed words, no address in them
            return {"ok": False, "error": str(exc)}
        except Exception as exc:
            log.warning("health: %s", exc)
            return {"ok": False, "error": "does not answer (the server log says why)"}
        return {"ok": True}

    def _llm(self) -> None:
        import openai

        cfg = self.lib.config
        client = openai.OpenAI(base_url=cfg.openai_base_url or None, api_key=cfg.openai_api_key or "not-needed",
                               timeout=HEALTH_TIMEOUT, max_retries=0)
        try:
            client.models.list()
        except openai.NotFoundError:
            return  # it answered; some servers have no /models
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            raise LLMError(f"the LLM endpoint refused the API key ({exc.status_code})") from None
        except openai.APIStatusError as exc:
            raise LLMError(f"the LLM endpoint answered {exc.status_code}") from None
        except openai.APIConnectionError:
            raise LLMError("cannot reach the LLM endpoint") from None

    def report(self) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < HEALTH_CACHE:
                result = self._cached[1]
            else:
                cfg = self.lib.config
                llm: dict[str, Any] = {"configured": cfg.llm_configured}
                if cfg.llm_configured:
                    llm.update(self._probe(self._llm))
                store = self._probe(self.lib.ping)
                status = "ok" if store["ok"] and llm.get("ok", True) else ("degraded" if store["ok"] else "down")
                result = {"status": status, "store": store, "llm": llm}
                self._cached = (time.monotonic(), result)
        return (200 if result["store"]["ok"] else 503), result


# -- the app ---------------------------------------------------------------------------------------


def _article(a: StoredArticle, with_text: bool = False) -> dict[str, Any]:
    """An article record; its ``path`` keeps only the file name (server folders stay private)."""
    d = a.to_dict(with_text=with_text)
    d["path"] = Path(a.path).name if a.path else ""
    return d


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "a value cannot be used (`field` names it)"},
    401: {"model": ErrorBody, "description": "missing or wrong credentials"},
    429: {"model": ErrorBody, "description": "too many wrong credentials from this address (Retry-After)"},
    503: {"model": ErrorBody, "description": "the store is unreachable, or busy with a write (Retry-After)"},
}
_LLM_ERRORS = {**_ERRORS, 502: {"model": ErrorBody, "description": "the language model failed"},
               409: {"model": ErrorBody, "description": "answerer llm, and no language model is configured"}}


def _sse_doc() -> dict[int | str, dict[str, Any]]:
    return {200: {"description": "the result, or with `stream` server-sent events",
                  "content": {"application/json": {}, "text/event-stream": {}}}}


def create_app(lib: Library, *, api_key: str = "", lifespan: Any = None,
               policy: access.Policy | None = None) -> FastAPI:
    """The API as a FastAPI app; ``rag.server`` mounts the page on it. Access is ``policy``'s
    (``rag.access``), by default one with ``api_key`` alone: when set, every route but health
    needs ``Authorization: Bearer <api_key>``. The gate wraps the whole app, mounts included."""
    app = FastAPI(
        title="cronaca", version="1", lifespan=lifespan, docs_url="/docs", redoc_url=None,
        description=("Cited answers and summaries over news articles. Answers come only from the stored "
                     "articles, with validated `[n]` citations. Errors: `{\"error\": {\"message\", \"type\", "
                     "\"param\", \"code\", \"field\"}}`. " + SSE_DOC.replace("{final}", "answer")),
    )
    install_error_handlers(app)
    upload_limit = UPLOAD_FILES * lib.config.max_file_bytes + JSON_LIMIT

    def limit_for(method: str, path: str) -> int | None:
        if method not in ("POST", "PUT", "PATCH") or not _is_api(path):
            return None
        return upload_limit if path.rstrip("/") == f"{PREFIX}/articles" else JSON_LIMIT

    app.add_middleware(BodyLimit, limit_for=limit_for)
    policy = policy or access.Policy(key=api_key)
    app.state.policy = policy
    app.add_middleware(access.AccessGate, policy=policy)
    app.add_middleware(RequestLog)

    # the key is checked by the access gate, before the body is read; this declares it for /docs
    guarded = [Security(HTTPBearer(auto_error=False, description="CRONACA_API_KEY, when the server has one"))]
    health = Health(lib)
    rest = APIRouter(prefix=PREFIX, dependencies=guarded, responses=_ERRORS)
    openai_routes = APIRouter(prefix="/v1", dependencies=guarded, tags=["OpenAI-compatible"], responses=_LLM_ERRORS)

    @app.get(HEALTH, tags=["service"])
    def get_health() -> JSONResponse:
        """Open without a key: whether the store and the LLM endpoint (when one is configured)
        answer; 503 when the store does not."""
        status, body = health.report()
        return JSONResponse(body, status_code=status)

    # questions and summaries ----------------------------------------------------------------------

    @rest.post("/ask", tags=["questions"], responses={**_LLM_ERRORS, **_sse_doc()},
               description="The same object as `cronaca ask --json`. " + SSE_DOC.replace("{final}", "answer"))
    def ask(body: AskBody) -> Any:
        stream = lib.stream(body.question, history=body.history, k=body.k, since=body.since or "",
                            until=body.until or "", source=body.source or "", as_of=body.as_of or "",
                            answerer=body.answerer, fallback=body.fallback)
        return events(stream, "answer") if body.stream else stream.finish().to_dict()

    def summary(body: SummariseBody | DigestBody, **selection: Any) -> Any:
        stream = lib.stream_summary(since=body.since or "", until=body.until or "", source=body.source or "",
                                    lang=body.lang, answerer=body.answerer, fallback=body.fallback, **selection)
        return events(stream, "summary") if body.stream else stream.finish().to_dict()

    @rest.post("/summarise", tags=["summaries"], responses={**_LLM_ERRORS, **_sse_doc()},
               description="One article (`article_id`), a topic (`query`) or a period; the same object as "
                           "`cronaca summarise --json`. " + SSE_DOC.replace("{final}", "summary"))
    def summarise(body: SummariseBody) -> Any:
        return summary(body, article_id=body.article_id, query=body.query, k=body.k)

    @rest.post("/digest", tags=["summaries"], responses={**_LLM_ERRORS, **_sse_doc()},
               description="The stories of a period, newest first; the same object as `cronaca digest --json`. "
                           + SSE_DOC.replace("{final}", "summary"))
    def digest(body: DigestBody) -> Any:
        return summary(body, digest=True)

    # the archive ----------------------------------------------------------------------------------

    @rest.get("/articles", tags=["articles"])
    def list_articles(offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
                      since: str = "", until: str = "", source: str = "") -> dict[str, Any]:
        """Stored articles, newest first, without their text; ``total`` counts all that match."""
        rows = lib.articles(since=since, until=until, source=source)
        return {"total": len(rows), "offset": offset, "limit": limit,
                "articles": [_article(a) for a in rows[offset:offset + limit]]}

    @rest.post("/articles", tags=["articles"], responses={413: {"model": ErrorBody}, 415: {"model": ErrorBody}})
    def upload(files: Annotated[list[UploadFile], File(description=UPLOAD_DOC)]) -> dict[str, Any]:
        """Ingest uploaded files like `cronaca ingest --json`: a refused or broken file gets its
        line in `errors` (and counts in `failed`) while the others are stored."""
        if len(files) > UPLOAD_FILES:
            raise ApiError(400, f"files: at most {UPLOAD_FILES} files per request", "invalid_request_error",
                           "files", "too_many")
        with tempfile.TemporaryDirectory(prefix="cronaca-upload-") as tmp:
            uploads = []
            for i, f in enumerate(files):
                spooled = Path(tmp) / str(i)  # the library stages it under its own safe name
                with spooled.open("wb") as out:
                    shutil.copyfileobj(f.file, out)
                uploads.append(Upload(name=f.filename or "file", path=spooled))
            return lib.ingest_uploads(uploads, lock_timeout=API_LOCK_TIMEOUT).to_dict()

    def _missing(article_id: str) -> ApiError:
        return ApiError(404, f"no article with id {article_id}", "not_found_error", "id", "not_found")

    @rest.get("/articles/{article_id:path}", tags=["articles"])
    def get_article(article_id: str) -> dict[str, Any]:
        """One article with its text. Ids may be URLs: percent-encode `?` and `#` in them."""
        found = lib.article(article_id)
        if found is None:
            raise _missing(article_id)
        return _article(found, with_text=True)

    @rest.delete("/articles/{article_id:path}", tags=["articles"])
    def delete_article(article_id: str) -> dict[str, Any]:
        if not lib.delete(article_id, lock_timeout=API_LOCK_TIMEOUT):
            raise _missing(article_id)
        return {"deleted": True, "id": article_id}

    @rest.get("/stats", tags=["service"])
    def stats() -> dict[str, Any]:
        """What the store holds and how cronaca is configured (as `cronaca stats --json`)."""
        return lib.stats()

    # OpenAI-compatible ----------------------------------------------------------------------------

    started = int(time.time())

    def _model_card() -> dict[str, Any]:
        return {"id": model_id(lib), "object": "model", "created": started, "owned_by": "cronaca"}

    def _check_model(name: str) -> str:
        if name not in (MODEL, model_id(lib)):
            raise ApiError(404, f"the model '{name}' does not exist: use '{model_id(lib)}'",
                           "invalid_request_error", "model", "model_not_found")
        return name

    @openai_routes.get("/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card()]}

    @openai_routes.get("/models/{name}")
    def model(name: str) -> dict[str, Any]:
        _check_model(name)
        return _model_card()

    @openai_routes.post("/chat/completions")
    def chat_completions(body: ChatBody) -> Any:
        """The last user message is the question, earlier turns the history. The content is the
        cited answer followed by its sources; `citations` (as in `/api/v1/ask`) is an extra field,
        in a stream on the last chunk before `[DONE]`. With a language model the stream starts
        once the answer's markers are validated (a client cannot take back text it has shown)."""
        chat = Chat(_check_model(body.model))
        question, history = split_messages(body.messages)
        stream = lib.stream(question, history=history, k=body.k, since=body.since or "",
                            until=body.until or "", source=body.source or "", as_of=body.as_of or "",
                            answerer=body.answerer, fallback=body.fallback)
        if not body.stream:
            return chat.completion(stream.finish())
        if _uses_llm(lib, body.answerer):
            answer = stream.finish()  # markers may be renumbered: send only the checked text
            drafts: Iterator[str] = iter([answer.text])
        else:  # the extractive draft is the answer itself: stream it as it comes
            pieces = iter(stream)
            first = next(pieces, _DONE)
            drafts = _chain(first, pieces) if first is not _DONE else iter(())
        usage = bool((body.stream_options or {}).get("include_usage"))
        return _event_stream(chat.chunks(stream, drafts, usage))

    app.include_router(rest)
    app.include_router(openai_routes)

    @app.api_route(PREFIX + "/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                   include_in_schema=False)
    @app.api_route("/v1/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    def unknown(request: Request) -> None:
        """Unknown API paths answer in the API's shape (the page, mounted at /, would take them)."""
        path = request.scope["path"]
        allowed = sorted({m for r in [*rest.routes, *openai_routes.routes]
                          if isinstance(r, APIRoute) and r.path_regex.match(path) for m in r.methods})
        if allowed:
            raise ApiError(405, f"this route takes {', '.join(allowed)}", "method_not_allowed",
                           headers={"Allow": ", ".join(allowed)})
        raise ApiError(404, "no such API route (see /docs)", "not_found_error", code="unknown_route")

    return app
