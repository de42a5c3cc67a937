"""Question → retrieved chunks → answer with validated citations, by LLM or extractively.

``stream_answer`` yields text deltas (str) as they come and ends with the final ``Answer``,
so the page streams, the CLI prints and the eval harness collects from the same code. It takes
the parts it uses (configuration, retriever, embedder), not the whole library.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from rag import extractive
from rag.citations import citation_for, validate
from rag.config import Config
from rag.embeddings import Embedder
from rag.llm import LLM, LLMError, Usage
from rag.models import Answer, Filters, Hit
from rag.prompts import build_messages, pack, render
from rag.retrieval import Retriever
from rag.text import detect_lang, fold
from rag.validation import ANSWERERS, RequestError

MIN_CONFIDENCE = 0.3


def _declined(question: str, lang: str, mode: str, model: str, config: Config, hits: list[Hit]) -> Answer:
    return Answer(question=question, text=render(config.prompts_dir, "refusal", lang),
                  mode=mode, model=model, hits=hits, lang=lang, declined=True)


def extractive_answer(config: Config, embedder: Embedder, vocabulary: dict[str, int], question: str,
                      hits: list[Hit], lang: str) -> Answer:
    notice = render(config.prompts_dir, "extractive_notice", lang)
    chosen = extractive.select(question, hits, embedder, lang)
    same_lang = chosen and detect_lang(" ".join(c.text for c in chosen)) == lang
    covered = extractive.confidence(question, chosen, lang) if same_lang else 1.0
    # word overlap only means something within one language; across languages we trust retrieval
    if (
        not chosen
        or extractive.lacks_asked_type(question, chosen)
        # a name no article knows, with little else matching: the question is about something else
        or (same_lang and extractive.unknown_names(question, vocabulary)
            and covered < 2 * MIN_CONFIDENCE)
        or (not same_lang and extractive.foreign_names_missing(question, hits, vocabulary))
        or covered < MIN_CONFIDENCE
    ):
        answer = _declined(question, lang, "extractive", "extractive", config, hits)
        answer.notice = notice
        return answer
    # one source number per article, sentences in the article's own order
    first_rank = {}
    for c in chosen:
        aid = hits[c.hit_index].article_id
        first_rank[aid] = min(first_rank.get(aid, c.hit_index), c.hit_index)
    chosen.sort(key=lambda c: (first_rank[hits[c.hit_index].article_id],
                               hits[c.hit_index].start + c.start))
    numbers: dict[str, int] = {}
    parts, citations = [], []
    for c in chosen:
        aid = hits[c.hit_index].article_id
        if aid not in numbers:
            numbers[aid] = len(numbers) + 1
            citations.append(citation_for(numbers[aid], hits[c.hit_index], c.text))
        else:
            cit = citations[numbers[aid] - 1]
            cit.quote = f"{cit.quote} … {c.text}"
        parts.append(f"{c.text} [{numbers[aid]}]")
    return Answer(question=question, text=" ".join(parts), mode="extractive", model="extractive",
                  citations=citations, hits=hits, lang=lang, notice=notice)


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
) -> Iterator[str | Answer]:
    if answerer not in ANSWERERS:
        raise RequestError("answerer", f"'{answerer}' is not one of {', '.join(ANSWERERS)}", code="choice")
    use_llm = answerer == "llm" or (answerer == "auto" and config.llm_configured)
    t0 = time.perf_counter()
    retrieval = retriever.search(question, k=k, filters=filters, mode=retrieval_mode)
    hits, lang = retrieval.hits, detect_lang(question)
    t_retrieved = time.perf_counter()
    answer: Answer | None = None
    usage = Usage()
    if not hits:
        answer = _declined(question, lang, "llm" if use_llm else "extractive",
                           config.llm_model if use_llm else "extractive", config, hits)
        yield answer.text
    elif use_llm:
        llm = LLM(config)
        packed = pack(hits, config.context_tokens)
        messages = build_messages(config.prompts_dir, question, packed, lang)
        raw: list[str] = []
        try:
            for delta in llm.stream(messages, usage=usage):
                raw.append(delta)
                yield delta
            text = "".join(raw)
            refusal = render(config.prompts_dir, "refusal", lang)
            if _is_refusal(text, refusal):
                answer = _declined(question, lang, "llm", llm.model, config, hits)
            else:
                clean, citations = validate(text, packed, lang)
                answer = Answer(question=question, text=clean, mode="llm", model=llm.model,
                                citations=citations, hits=hits, lang=lang)
        except LLMError as exc:
            if fallback != "extractive":
                raise
            answer = extractive_answer(config, embedder, retriever.vocabulary, question, hits, lang)
            answer.notice = f"{exc}. {answer.notice}"
            yield "\n\n" if raw else ""
            yield answer.text
    else:
        answer = extractive_answer(config, embedder, retriever.vocabulary, question, hits, lang)
        for word in answer.text.split(" "):  # the extractive answer streams too
            yield word + " "
    t_done = time.perf_counter()
    answer.timings_ms = {
        **{f"retrieve_{k}": v for k, v in retrieval.timings_ms.items()},
        "retrieve": (t_retrieved - t0) * 1000,
        "generate": (t_done - t_retrieved) * 1000,
        "total": (t_done - t0) * 1000,
    }
    answer.usage = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
    yield answer
