"""The language model, reached only through the openai client at a configured endpoint.

Streaming with bounded retries: a failure before the first token is retried with backoff
(honouring Retry-After); after tokens have been shown, retrying would repeat text, so we stop
and report. Every failure becomes an ``LLMError`` whose message a person can act on.

One deadline (``Config.llm_deadline``) bounds a whole request: every attempt, the waits between
them and the stream. The per-request timeout of the HTTP client cannot do that, since it restarts
with every byte received, so a server that trickles keep-alive bytes would hold a caller for ever.
Each attempt therefore runs in a worker thread and the caller waits on its queue only until the
deadline. How the stream ended is recorded in ``Usage.finish_reason``: an answer the model did
not finish (``length``, no reason at all, or our deadline after some text) is ``truncated``.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import httpx

from rag.config import Config

if TYPE_CHECKING:
    import openai


def _openai():
    """Imported when a model is first used: the client library costs seconds at start-up, and an
    offline answer never needs it."""
    import openai

    return openai

# what servers of the OpenAI dialect say when the model ended its answer itself
COMPLETE_REASONS = frozenset({"stop", "eos", "end_turn"})
DEADLINE = "deadline"  # our own finish reason: the deadline passed after some text
_GRACE = 1.0  # the worker's HTTP timeout outlives the deadline by this much, so the deadline speaks first


class LLMError(RuntimeError):
    """Readable reason the model could not answer; ``retryable`` tells if trying later may help."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class _DeadlinePassed(Exception):
    """Internal: the request's deadline passed while waiting for the worker."""


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: dict = field(default_factory=dict)
    finish_reason: str = ""  # as the server said ("stop", "length", ...), "" if it said nothing, or DEADLINE

    @property
    def truncated(self) -> bool:
        """The model did not end the answer itself: what was streamed is a cut answer."""
        return self.finish_reason not in COMPLETE_REASONS


def endpoint_host(config: Config) -> str:
    return urlparse(config.openai_base_url).netloc or "api.openai.com"


class LLM:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.model = config.llm_model
        self.client = _openai().OpenAI(
            base_url=config.openai_base_url or None,
            api_key=config.openai_api_key or "not-needed",
            timeout=config.llm_timeout,
            max_retries=0,  # retries are ours: we must not retry once tokens were streamed
        )

    def describe(self) -> str:
        return f"{self.model} @ {endpoint_host(self.config)}"

    def stream(self, messages: list[dict], max_tokens: int | None = None,
               usage: Usage | None = None) -> Iterator[str]:
        """Text deltas. Raises ``LLMError`` when nothing usable came; once text was shown, a
        deadline ends the stream quietly with ``usage.finish_reason == DEADLINE`` instead."""
        usage = usage if usage is not None else Usage()
        deadline = time.monotonic() + self.config.llm_deadline
        attempts = self.config.llm_retries + 1
        api_error = _openai().APIError
        for attempt in range(attempts):
            emitted = False
            usage.finish_reason = ""
            try:
                for delta in self._attempt(messages, max_tokens, usage, deadline):
                    emitted = True
                    yield delta
                if not usage.finish_reason and not emitted:
                    raise LLMError("the model's stream ended without an answer", retryable=True)
                return
            except _DeadlinePassed:
                if emitted:
                    usage.finish_reason = DEADLINE
                    return
                raise self._deadline_error() from None
            except LLMError as exc:
                if emitted or attempt + 1 == attempts or not exc.retryable:
                    raise
                self._wait(self._backoff(attempt, None), deadline, exc)
            except api_error as exc:
                err = self._explain(exc)
                if emitted:
                    raise LLMError(f"the answer was cut off: {err}") from exc
                if not err.retryable or attempt + 1 == attempts:
                    raise err from exc
                self._wait(self._backoff(attempt, exc), deadline, err)
            except (ValueError, httpx.HTTPError) as exc:  # malformed or cut-off stream
                where = endpoint_host(self.config)
                err = LLMError(f"the LLM endpoint {where} sent a broken response ({exc})")
                if emitted or attempt + 1 == attempts:
                    raise err from exc
                self._wait(self._backoff(attempt, None), deadline, err)

    def complete(self, messages: list[dict], max_tokens: int | None = None,
                 usage: Usage | None = None) -> str:
        return "".join(self.stream(messages, max_tokens=max_tokens, usage=usage))

    def _attempt(self, messages: list[dict], max_tokens: int | None, usage: Usage,
                 deadline: float) -> Iterator[str]:
        """One request, read by a worker thread; this side waits no longer than the deadline.

        A worker left behind (the deadline passed, or the caller stopped reading) stops at its next
        event or at its HTTP timeout, whichever comes first; it is a daemon and holds no lock."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _DeadlinePassed
        inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        stop = threading.Event()
        opened: list[Any] = []  # the worker's open stream, so this side can close it when giving up
        timeout = min(self.config.llm_timeout, remaining + _GRACE)
        worker = threading.Thread(target=self._pump, args=(inbox, stop, opened, messages, max_tokens, timeout),
                                  name="cronaca-llm", daemon=True)
        worker.start()
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _DeadlinePassed
                try:
                    kind, value = inbox.get(timeout=remaining)
                except queue.Empty:
                    raise _DeadlinePassed from None
                if kind == "delta":
                    yield value
                elif kind == "finish":
                    usage.finish_reason = value
                elif kind == "usage":
                    usage.prompt_tokens, usage.completion_tokens = value
                elif kind == "error":
                    raise value
                else:
                    return
        finally:
            stop.set()
            if worker.is_alive() and opened:
                # closing the connection under a worker blocked in a read makes that read fail now
                # rather than at its timeout (which keep-alive bytes would postpone for ever)
                with contextlib.suppress(Exception):
                    opened[0].close()

    def _pump(self, inbox: queue.Queue, stop: threading.Event, opened: list[Any], messages: list[dict],
              max_tokens: int | None, timeout: float) -> None:
        """The worker: everything the server sends, in order, as ``(kind, value)`` on the queue."""
        try:
            stream = self.client.chat.completions.create(
                model=self.model,
                messages=messages,
                stream=True,
                temperature=self.config.llm_temperature,
                max_tokens=max_tokens or self.config.answer_tokens,
                stream_options={"include_usage": True},
                timeout=timeout,
            )
            opened.append(stream)
            with stream:
                for event in stream:
                    if stop.is_set():
                        return
                    if getattr(event, "usage", None):
                        inbox.put(("usage", (event.usage.prompt_tokens or 0, event.usage.completion_tokens or 0)))
                    for choice in event.choices or []:
                        delta = choice.delta.content if choice.delta else None
                        if delta:
                            inbox.put(("delta", delta))
                        if choice.finish_reason:
                            inbox.put(("finish", str(choice.finish_reason)))
            inbox.put(("end", None))
        except Exception as exc:  # noqa: BLE001 - handed over to the caller's thread, which sorts it out
            inbox.put(("error", exc))

    def _wait(self, seconds: float, deadline: float, err: LLMError) -> None:
        """Sleep before the next attempt, unless that would end after the deadline: then the last
        error is the answer (a Retry-After of 30 s with 10 s left is not worth waiting for)."""
        if time.monotonic() + seconds >= deadline:
            raise err
        time.sleep(seconds)

    def _deadline_error(self) -> LLMError:
        return LLMError(f"the LLM endpoint {endpoint_host(self.config)} did not answer within the "
                        f"{self.config.llm_deadline:g} s deadline (CRONACA_LLM_DEADLINE)", retryable=True)

    @staticmethod
    def _backoff(attempt: int, exc: Exception | None) -> float:
        response = getattr(exc, "response", None)
        if response is not None:
            retry_after = response.headers.get("retry-after")
            try:
                if retry_after is not None:
                    return min(float(retry_after), 30.0)
            except ValueError:
                pass
        return min(0.5 * 2**attempt, 8.0)

    def _explain(self, exc: openai.APIError) -> LLMError:
        openai = _openai()
        where = endpoint_host(self.config)
        if isinstance(exc, openai.AuthenticationError):
            return LLMError(f"the LLM endpoint {where} refused the API key (401): check OPENAI_API_KEY")
        if isinstance(exc, openai.PermissionDeniedError):
            return LLMError(f"the LLM endpoint {where} denied access (403)")
        if isinstance(exc, openai.NotFoundError):
            return LLMError(f"model '{self.model}' not found at {where}: check CRONACA_LLM_MODEL")
        if isinstance(exc, openai.RateLimitError):
            return LLMError(f"the LLM endpoint {where} is rate-limiting requests (429); try again shortly",
                            retryable=True)
        if isinstance(exc, openai.APITimeoutError):
            return LLMError(f"the LLM endpoint {where} did not answer within {self.config.llm_timeout:g} s",
                            retryable=True)
        if isinstance(exc, openai.APIConnectionError):
            return LLMError(f"cannot reach the LLM endpoint {where}: is it running? ({exc.__cause__ or exc})",
                            retryable=True)
        if isinstance(exc, openai.InternalServerError):
            return LLMError(f"the LLM endpoint {where} failed ({getattr(exc, 'status_code', 500)})",
                            retryable=True)
        if isinstance(exc, openai.BadRequestError):
            return LLMError(f"the LLM endpoint {where} rejected the request: {exc.message}")
        return LLMError(f"the LLM endpoint {where} failed: {exc}", retryable=True)
