"""Question → retrieved chunks → answer with validated citations, by LLM or extractively.

``stream_answer`` yields text deltas (str) as they come and ends with the final ``Answer``,
so the page streams, the CLI prints and the eval harness collects from the same code. It takes
the parts it uses (configuration, retriever, embedder), not the whole library.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator

from rag import extractive
from rag.chunking import count_tokens
from rag.citations import citation_for, validate
from rag.config import Config
from rag.dates import end_of, spoken
from rag.embeddings import Embedder
from rag.llm import LLM, LLMError, Usage
from rag.models import Answer, Citation, Filters, Hit
from rag.prompts import build_messages, notice, pack, render, truncation_notice
from rag.question import analyse
from rag.reader import shared_reader
from rag.retrieval import Retriever
from rag.text import detect_lang, fold
from rag.validation import ANSWERERS, RequestError


def _declined(question: str, lang: str, mode: str, model: str, config: Config, hits: list[Hit]) -> Answer:
    return Answer(question=question, text=render(config.prompts_dir, "refusal", lang),
                  mode=mode, model=model, hits=hits, lang=lang, declined=True)


_ROLE_PREFIX = {"it": {"earlier": "In precedenza: ", "since": "Da allora: ", "then": "Poi: "},
                "en": {"earlier": "Earlier: ", "since": "Since then: ", "then": "Then: "}}


def _claim(text: str, date: str, markers: str, lang: str) -> str:
    """A quoted sentence with its source's date and markers: "… Real Madrid (novembre 2024) [1]."."""
    body = extractive.neutralise_markers(text.strip())
    end = "."  # a headline has no full stop of its own; the claim still ends with one
    if body.endswith("."):
        body = body[:-1]
    elif body.endswith(("!", "?", "»", "\"", "”")):
        end = ""
    when = f" ({spoken(date, lang)})" if date else ""
    return f"{body}{when} {markers}{end}"


def extractive_answer(config: Config, embedder: Embedder, vocabulary: dict[str, int], question: str,
                      hits: list[Hit], lang: str, query_vector=None, bounded: bool = False,
                      later: Callable[[str], list[Hit]] | None = None, vectors=None) -> Answer:
    notice = render(config.prompts_dir, "extractive_notice", lang)
    asked = analyse(question, lang)
    hits = list(hits)  # "since then" sources are appended to a copy
    reader = shared_reader() if config.reader else None
    result = extractive.answer(asked, hits, embedder, vocabulary, query_vector=query_vector, bounded=bounded,
                               later=later, vectors=vectors, reader=reader,
                               reader_threshold=config.reader_threshold or None)
    if result.declined:
        answer = _declined(question, lang, "extractive", "extractive", config, hits)
        answer.notice = notice
        answer.confidence = result.best
        if result.related:
            answer.text, answer.citations = _related(answer.text, result.related, hits, lang)
        return answer
    numbers: dict[str, int] = {}
    citations: list[Citation] = []
    parts = []
    for i, pick in enumerate(result.picks):
        marks = []
        for cand in [pick.candidate, *pick.also]:
            hit = hits[cand.hit_index]
            if hit.article_id not in numbers:
                numbers[hit.article_id] = len(numbers) + 1
                citations.append(citation_for(numbers[hit.article_id], hit, cand.text))
            else:
                cit = citations[numbers[hit.article_id] - 1]
                if cand.text not in cit.quote.split(" … "):
                    cit.quote = f"{cit.quote} … {cand.text}"
            mark = f"[{numbers[hit.article_id]}]"
            if mark not in marks:
                marks.append(mark)
        role = "then" if pick.role == "since" and any(p.role == "since" for p in result.picks[:i]) else pick.role
        prefix = _ROLE_PREFIX["en" if lang == "en" else "it"].get(role, "")
        parts.append(prefix + _claim(pick.candidate.text, hits[pick.candidate.hit_index].date, "".join(marks), lang))
    return Answer(question=question, text=" ".join(parts), mode="extractive", model="extractive",
                  citations=citations, hits=hits, lang=lang, notice=notice, confidence=result.best)


_RELATED = {"it": ("Gli articoli parlano di ", ", ma non dicono quello che chiedi."),
            "en": ("The articles talk about ", ", but they do not say what you asked.")}


def _related(refusal: str, related: list, hits: list[Hit], lang: str) -> tuple[str, list[Citation]]:
    """Under a decline, the closest passages, cited and said to be related, not an answer:
    "Gli articoli parlano di «…» [1], ma non dicono quello che chiedi."."""
    head, tail = _RELATED["en" if lang == "en" else "it"]
    citations, parts = [], []
    for n, cand in enumerate(related, 1):
        hit = hits[cand.hit_index]
        citations.append(citation_for(n, hit, cand.text))
        body = extractive.neutralise_markers(cand.text.strip()).rstrip(".")
        when = f" ({spoken(hit.date, lang)})" if hit.date else ""
        parts.append(f"«{body}»{when} [{n}]")
    joiner = " e " if lang != "en" else " and "
    return f"{refusal}\n\n{head}{joiner.join(parts)}{tail}", citations


def _later(retriever: Retriever, question: str, filters: Filters | None,
           vector=None) -> Callable[[str], list[Hit]]:
    """The same question, among articles published after a date: what may have changed since.
    ``vector``: the question's embedding from the first search, reused."""
    def search(after: str) -> list[Hit]:
        base = filters or Filters()
        since = max(base.since, end_of(after) + 1)
        return retriever.search(question, k=6, filters=Filters(since=since, until=base.until, source=base.source),
                                vector=vector).hits

    return search


def _is_refusal(text: str, refusal: str) -> bool:
    a, b = fold(text).strip(" .\"'"), fold(refusal).strip(" .\"'")
    return a == b or (b in a and len(a) < len(b) + 40)


def stream_answer(
    question: str,
    *,
    config: Config,
    retriever: Retriever,
    embedder: Embedder,
    k: int | None = None,
    filters: Filters | None = None,
    answerer: str = "auto",
    fallback: str | None = None,
    retrieval_mode: str = "hybrid",
    vectors=None,
) -> Iterator[str | Answer]:
    if answerer not in ANSWERERS:
        raise RequestError("answerer", f"'{answerer}' is not one of {', '.join(ANSWERERS)}", code="choice")
    use_llm = config.uses_llm(answerer)
    t0 = time.perf_counter()
    retrieval = retriever.search(question, k=k, filters=filters, mode=retrieval_mode)
    hits, lang = retrieval.hits, detect_lang(question)

    def extract() -> Answer:  # the offline answer, first choice or fallback
        return extractive_answer(config, embedder, retriever.vocabulary, question, hits, lang,
                                 query_vector=retrieval.vector, bounded=bool(filters and filters.until),
                                 later=_later(retriever, question, filters, retrieval.vector), vectors=vectors)

    t_retrieved = time.perf_counter()
    answer: Answer | None = None
    usage = Usage()
    if not hits:
        answer = _declined(question, lang, "llm" if use_llm else "extractive",
                           config.llm_model if use_llm else "extractive", config, hits)
        yield answer.text
    elif use_llm:
        llm = LLM(config)
        # the sources get what the model's window leaves after the instructions and the answer
        fixed = sum(count_tokens(m["content"]) for m in build_messages(config.prompts_dir, question, [], lang))
        room = config.model_context_tokens - config.answer_tokens - fixed - 64
        packed = pack(hits, max(200, min(config.context_tokens, room)))
        messages = build_messages(config.prompts_dir, question, packed, lang)
        raw: list[str] = []
        try:
            for delta in llm.stream(messages, usage=usage):
                raw.append(delta)
                yield delta
            text = "".join(raw)
            refusal = render(config.prompts_dir, "refusal", lang)
            # a cut answer is never passed off as whole: marked and said, or replaced when asked
            cut = truncation_notice(usage.finish_reason, lang, config.llm_deadline) if usage.truncated else ""
            if cut and fallback == "extractive":
                raise LLMError(cut.rstrip("."))  # the fallback below answers and says why
            if not cut and _is_refusal(text, refusal):
                answer = _declined(question, lang, "llm", llm.model, config, hits)
            else:
                clean, citations = validate(text, packed, lang)
                answer = Answer(question=question, text=clean, mode="llm", model=llm.model,
                                citations=citations, hits=hits, lang=lang, truncated=bool(cut),
                                uncited=not citations)
                answer.notice = " ".join(n for n in (cut, "" if citations else notice("uncited", lang)) if n)
        except LLMError as exc:
            if fallback != "extractive":
                raise
            answer = extract()
            answer.notice = f"{exc}. {answer.notice}"
            yield "\n\n" if raw else ""
            yield answer.text
    else:
        answer = extract()
        yield from re.split(r"(?<=\]\. )|(?<=\] )", answer.text)  # streams claim by claim
    t_done = time.perf_counter()
    answer.timings_ms = {
        **{f"retrieve_{k}": v for k, v in retrieval.timings_ms.items()},
        "retrieve": (t_retrieved - t0) * 1000,
        "generate": (t_done - t_retrieved) * 1000,
        "total": (t_done - t0) * 1000,
    }
    answer.usage = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
    yield answer
