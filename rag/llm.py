"""The language model, reached only through the openai client at a configured endpoint.

Streaming with bounded retries: a failure before the first token is retried with backoff
(honouring Retry-After); after tokens have been shown, retrying would repeat text, so we stop
and report. Every failure becomes an ``LLMError`` whose message a person can act on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlparse

import httpx
import openai

from rag.config import Config


class LLMError(RuntimeError):
    """Readable reason the model could not answer; ``retryable`` tells if trying later may help."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: dict = field(default_factory=dict)


def endpoint_host(config: Config) -> str:
    return urlparse(config.openai_base_url).netloc or "api.openai.com"


class LLM:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.model = config.llm_model
        self.client = openai.OpenAI(
            base_url=config.openai_base_url or None,
            api_key=config.openai_api_key or "not-needed",
            timeout=config.llm_timeout,
            max_retries=0,  # retries are ours: we must not retry once tokens were streamed
        )

    def describe(self) -> str:
        return f"{self.model} @ {endpoint_host(self.config)}"

    def stream(self, messages: list[dict], max_tokens: int | None = None,
               usage: Usage | None = None) -> Iterator[str]:
        attempts = self.config.llm_retries + 1
        for attempt in range(attempts):
            emitted = False
            try:
                stream = self.client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    stream=True,
                    temperature=self.config.llm_temperature,
                    max_tokens=max_tokens or self.config.answer_tokens,
                    stream_options={"include_usage": True},
                )
                finished = False
                for event in stream:
                    if getattr(event, "usage", None) and usage is not None:
                        usage.prompt_tokens = event.usage.prompt_tokens or 0
                        usage.completion_tokens = event.usage.completion_tokens or 0
                    for choice in event.choices or []:
                        delta = choice.delta.content if choice.delta else None
                        if delta:
                            emitted = True
                            yield delta
                        if choice.finish_reason:
                            finished = True
                if not finished and not emitted:
                    raise LLMError("the model's stream ended without an answer", retryable=True)
                return
            except LLMError as exc:
                if emitted or attempt + 1 == attempts or not exc.retryable:
                    raise
                time.sleep(self._backoff(attempt, None))
            except openai.APIError as exc:
                err = self._explain(exc)
                if emitted:
                    raise LLMError(f"the answer was cut off: {err}") from exc
                if not err.retryable or attempt + 1 == attempts:
                    raise err from exc
                time.sleep(self._backoff(attempt, exc))
            except (ValueError, httpx.HTTPError) as exc:  # malformed or cut-off stream
                where = endpoint_host(self.config)
                if emitted or attempt + 1 == attempts:
                    raise LLMError(f"the LLM endpoint {where} sent a broken response ({exc})") from exc
                time.sleep(self._backoff(attempt, None))

    def complete(self, messages: list[dict], max_tokens: int | None = None,
                 usage: Usage | None = None) -> str:
        return "".join(self.stream(messages, max_tokens=max_tokens, usage=usage))

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
