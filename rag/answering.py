"""Question → retrieved chunks → answer with validated citations, by LLM or extractively.

``stream_answer`` yields text deltas (str) as they come and ends with the final ``Answer``,
so the page streams, the CLI prints and the eval harness collects from the same code. It takes
the parts it uses (configuration, retriever, embedder), not the whole library.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Generator, Iterator

from rag import claims, extractive
from rag.chunking import count_tokens
from rag.citations import citation_for, validate
from rag.config import Config
from rag.dates import end_of, spoken
from rag.embeddings import Embedder
from rag.llm import LLM, LLMError, Usage
from rag.models import Answer, Citation, Conflict, Filters, Hit
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
    """The offline answer, whole (see ``extractive_stream``)."""
    return _drained(extractive_stream(config, embedder, vocabulary, question, hits, lang, query_vector=query_vector,
                                      bounded=bounded, later=later, vectors=vectors))


def _drained(stream: Generator[str, None, Answer]) -> Answer:
    """What a generator of deltas returns, once it has run to the end."""
    while True:
        try:
            next(stream)
        except StopIteration as done:
            return done.value


def extractive_stream(config: Config, embedder: Embedder, vocabulary: dict[str, int], question: str,
                      hits: list[Hit], lang: str, query_vector=None, bounded: bool = False,
                      later: Callable[[str], list[Hit]] | None = None, vectors=None) -> Generator[str, None, Answer]:
    """The offline answer as its sentences are chosen: each claim is yielded (with the space
    before it) as soon as it is final, the answering ones before the "since then" search runs;
    the deltas joined are the ``Answer``'s text, which is the generator's return value."""
    notice = render(config.prompts_dir, "extractive_notice", lang)
    asked = analyse(question, lang)
    hits = list(hits)  # "since then" sources are appended to a copy
    reader = shared_reader() if config.reader else None
    parts_of = extractive.answer_parts(asked, hits, embedder, vocabulary, query_vector=query_vector,
                                       bounded=bounded, later=later, vectors=vectors, reader=reader,
                                       reader_threshold=config.reader_threshold or None)
    first = next(parts_of)
    if first.declined:
        answer = _declined(question, lang, "extractive", "extractive", config, hits)
        answer.notice = notice
        answer.confidence = first.best
        if first.related:
            answer.text, answer.citations = _related(answer.text, first.related, hits, lang)
        yield answer.text
        return answer
    numbers: dict[str, int] = {}
    citations: list[Citation] = []

    def cite(hit: Hit, text: str) -> int:
        if hit.article_id not in numbers:
            numbers[hit.article_id] = len(numbers) + 1
            citations.append(citation_for(numbers[hit.article_id], hit, text))
        else:
            cit = citations[numbers[hit.article_id] - 1]
            if text not in cit.quote.split(" … "):
                cit.quote = f"{cit.quote} … {text}"
        return numbers[hit.article_id]

    parts: list[str] = []
    conflicts: list[Conflict] = []
    told: set[str] = set()  # articles whose version is told in a disagreement sentence already
    since_told = False
    for part in itertools.chain([first], parts_of):  # the next part is searched for only when asked
        pool = extractive.candidates(hits, lang)  # every sentence retrieved so far: where other versions hide
        for pick in part.picks:
            if pick.role == "answer" and hits[pick.candidate.hit_index].article_id in told:
                continue  # another answer from a rival article: its version is in the disagreement sentence
            rivals = _rivals(pick.candidate, hits, pool, question)
            # an article that agrees in one sentence (its headline) but states other figures in
            # another is a rival version, not a second source for this one
            also = [c for c in pick.also if hits[c.hit_index].article_id not in rivals]
            marks = []
            for cand in [pick.candidate, *also]:
                mark = f"[{cite(hits[cand.hit_index], cand.text)}]"
                if mark not in marks:
                    marks.append(mark)
            role = "then" if pick.role == "since" and since_told else pick.role
            since_told = since_told or pick.role == "since"
            prefix = _ROLE_PREFIX["en" if lang == "en" else "it"].get(role, "")
            said = [prefix + _claim(pick.candidate.text, hits[pick.candidate.hit_index].date, "".join(marks), lang)]
            if rivals:
                lead = hits[pick.candidate.hit_index]
                anchor = claims.Said(pick.candidate.text, lead.article_id, lead.source, lead.date,
                                     sorted({cite(hits[c.hit_index], c.text) for c in [pick.candidate, *also]}))
                by_article = {h.article_id: h for h in hits}
                for version in rivals.values():
                    version.citations = [cite(by_article[version.article_id], version.text)]
                disputed = claims.conflict(anchor, list(rivals.values()), question)
                assert disputed is not None  # _rivals checked it
                conflicts.append(disputed)
                told |= set(rivals) | {hits[c.hit_index].article_id for c in [pick.candidate, *also]}
                said.append(claims.sentence(disputed, lang))
            for claim in said:
                yield (" " if parts else "") + claim
                parts.append(claim)
    return Answer(question=question, text=" ".join(parts), mode="extractive", model="extractive",
                  citations=citations, hits=hits, lang=lang, notice=notice, conflicts=conflicts,
                  confidence=first.best)


def _rivals(lead: extractive.Candidate, hits: list[Hit], pool: list[extractive.Candidate],
            question: str) -> dict[str, claims.Said]:
    """Other articles, of about the same time, telling the picked sentence's fact with other
    figures, scores, dates or names (``rag.claims.rivals``): per article, its closest such
    sentence; empty when none, or when no version differs on a fact ``claims.conflict`` can
    name. Nothing is cited here: an answer never lists a source it does not use."""
    lead_hit = hits[lead.hit_index]
    anchor = claims.Said(lead.text, lead_hit.article_id, lead_hit.source, lead_hit.date)
    others = [claims.Said(c.text, hits[c.hit_index].article_id, hits[c.hit_index].source, hits[c.hit_index].date)
              for c in pool if hits[c.hit_index].article_id != lead_hit.article_id]
    mine = claims.words(lead.text)
    found: dict[str, claims.Said] = {}
    for said in sorted(claims.rivals(anchor, others), key=lambda s: -claims.overlap(mine, claims.words(s.text))):
        found.setdefault(said.article_id, said)
    if not found or claims.conflict(anchor, list(found.values()), question) is None:
        return {}
    return found


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

    def offline() -> Generator[str, None, Answer]:  # the offline answer, first choice (streamed) or fallback (whole)
        return extractive_stream(config, embedder, retriever.vocabulary, question, hits, lang,
                                 query_vector=retrieval.vector, bounded=bool(filters and filters.until),
                                 later=_later(retriever, question, filters, retrieval.vector), vectors=vectors)

    def extract() -> Answer:
        return _drained(offline())

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
                                uncited=not citations, conflicts=claims.among(
                                    [claims.Said(c.quote, c.article_id, c.source, c.date, [c.n]) for c in citations],
                                    question))
                answer.notice = " ".join(n for n in (cut, "" if citations else notice("uncited", lang)) if n)
        except LLMError as exc:
            if fallback != "extractive":
                raise
            answer = extract()
            answer.notice = f"{exc}. {answer.notice}"
            yield "\n\n" if raw else ""
            yield answer.text
    else:  # claim by claim, each as soon as it is chosen
        answer = yield from offline()
    t_done = time.perf_counter()
    answer.timings_ms = {
        **{f"retrieve_{k}": v for k, v in retrieval.timings_ms.items()},
        "retrieve": (t_retrieved - t0) * 1000,
        "generate": (t_done - t_retrieved) * 1000,
        "total": (t_done - t0) * 1000,
    }
    answer.usage = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
    yield answer
