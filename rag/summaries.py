"""Summaries of one article, of what the store says about a topic, or of a period (a digest).

Articles are selected (by id, by a retrieval query, or by date range), grouped into stories
(``rag.stories``), and each story is summarised, newest story first:

* extractively (default, offline): the 1-3 most central sentences of the story, by sentence
  embeddings, a position prior (news puts the facts first) and, for a query, closeness to the
  query; MMR keeps them from repeating each other. Every sentence is quoted verbatim and cited.
* by a language model when one is configured: one call per story (map), then one call that
  merges the story summaries into a digest (reduce), all within ``model_context_tokens``.
  Markers are validated like answers are (``rag.citations.validate``).

``stream_summary`` yields text deltas then the final ``Summary``, like ``stream_answer``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rag import claims
from rag.chunking import count_tokens
from rag.citations import citation_for, validate
from rag.config import Config
from rag.dates import spoken, spoken_range
from rag.embeddings import Embedder
from rag.index import Index
from rag.llm import LLM, LLMError
from rag.models import Citation, Conflict, Hit, StoredArticle
from rag.prompts import fence, render
from rag.retrieval import Retriever
from rag.stories import DEFAULT_THRESHOLD, Story, group_stories
from rag.text import fold, sentence_spans, tokenize
from rag.validation import SummaryRequest

MAX_STORIES = 8  # a query or digest summary covers at most this many stories
MAX_SENTENCES_PER_ARTICLE = 30  # embedding every sentence of a long article buys nothing
MMR_LAMBDA = 0.7


@dataclass
class Summary:
    text: str
    mode: str  # "llm" or "extractive"
    model: str
    stories: list[Story] = field(default_factory=list)
    citations: list[Citation] = field(default_factory=list)
    lang: str = "it"
    notice: str = ""
    conflicts: list[Conflict] = field(default_factory=list)  # figures the story's articles state differently

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.text,
            "mode": self.mode,
            "model": self.model,
            "stories": [{"title": s.title, "article_ids": list(s.article_ids)} for s in self.stories],
            "citations": [c.to_dict() for c in self.citations],
            "conflicts": [c.to_dict() for c in self.conflicts],
        }


class SummaryError(ValueError):
    """The request cannot be summarised as asked (no such article, nothing selected)."""


# -- selection -----------------------------------------------------------------------------------


def select_articles(request: SummaryRequest, index: Index, retriever: Retriever
                    ) -> tuple[list[StoredArticle], dict[str, float]]:
    """The articles to summarise, with a relevance per article (higher = more relevant)."""
    if request.kind == "article":
        art = index.article(request.article_id, with_text=True)
        if art is None:
            raise SummaryError(f"no article with id {request.article_id}")
        return [art], {art.id: 1.0}
    if request.kind == "query":
        hits = retriever.search(request.query, k=request.k, filters=request.filters).hits
        relevance: dict[str, float] = {}
        for rank, hit in enumerate(hits):
            relevance.setdefault(hit.article_id, 1.0 / (1 + rank))
        q_tokens = set(tokenize(request.query, "it")) | set(tokenize(request.query, "en"))
        articles = [a for a in (index.article(aid, with_text=True) for aid in relevance) if a]
        # retrieval always returns k chunks; keep the articles that name what was asked, if any do
        if q_tokens:
            def shared(a: StoredArticle) -> int:
                return len(q_tokens & set(tokenize(f"{a.title}\n{a.text}", "it")))

            best = max((shared(a) for a in articles), default=0)
            if best:
                need = max(1, (best + 1) // 2)
                articles = [a for a in articles if shared(a) >= need]
        return articles, {a.id: relevance[a.id] for a in articles}
    articles = index.articles(request.filters, with_text=True)
    return articles, {a.id: 1.0 for a in articles}


def make_stories(index: Index, articles: list[StoredArticle], relevance: dict[str, float],
                 threshold: float = DEFAULT_THRESHOLD, max_stories: int = MAX_STORIES) -> list[Story]:
    if not articles:
        return []
    vectors = index.article_vectors([a.id for a in articles])
    stories = group_stories(articles, vectors, threshold)
    if len(stories) > max_stories:  # keep the most relevant, then show them newest first
        ranked = sorted(stories, key=lambda s: -max(relevance.get(i, 0.0) for i in s.article_ids))
        keep = {id(s) for s in ranked[:max_stories]}
        stories = [s for s in stories if id(s) in keep]
    return stories


# -- extractive ----------------------------------------------------------------------------------


@dataclass
class _Sentence:
    article: StoredArticle
    start: int
    end: int
    text: str
    position: int  # index of the sentence in its article
    score: float = 0.0


def _paragraph(text: str, start: int, end: int) -> tuple[int, int]:
    s = text.rfind("\n\n", 0, start)
    s = 0 if s < 0 else s + 2
    e = text.find("\n\n", end)
    e = len(text) if e < 0 else e
    return s, e


def _sentences(article: StoredArticle) -> list[_Sentence]:
    text = article.text
    out = []
    for s, e in sentence_spans(text, "it"):
        sent = text[s:e]
        # a heading (no final stop, short) or a question is no summary sentence
        if len(sent.split()) < 6 or sent.rstrip().endswith("?") or sent.rstrip()[-1:] not in ".!»\"”'’)":
            continue
        # keep sentence boundaries inside one paragraph (a heading glued to its paragraph)
        if "\n" in sent:
            cut = sent.rfind("\n") + 1
            s, sent = s + cut, sent[cut:]
            if len(sent.split()) < 6:
                continue
        out.append(_Sentence(article, s, e, sent, len(out)))
        if len(out) >= MAX_SENTENCES_PER_ARTICLE:
            break
    return out


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-6) if len(x) > 1 else np.zeros_like(x)


_NAME = re.compile(r"(?<=[\s,;:(])([A-ZÀ-Ý][\w'’-]{2,})")


def _new_names(sentence: str, title: str, query: str) -> set[str]:
    known = fold(f"{title} {query}")
    return {n for n in _NAME.findall(sentence) if fold(n) not in known}


def pick_sentences(story: Story, embedder, query: str | None = None, max_sentences: int = 3,
                   ) -> list[_Sentence]:
    """Central, early, on-topic sentences of the story, not repeating each other (MMR)."""
    cands = [s for a in story.articles for s in _sentences(a)]
    if not cands:
        return []
    vecs = np.asarray(embedder.embed_passages([c.text for c in cands]), dtype=np.float32)
    centroid = vecs.mean(axis=0)
    centroid /= np.linalg.norm(centroid) or 1.0
    score = 0.5 * _zscore(vecs @ centroid)
    score += np.array([0.6 / (1 + c.position) ** 0.5 for c in cands])  # the lead carries the news
    # sentences that bring in new names (who else is involved) carry the story forward
    score += np.array([0.2 * min(3, len(_new_names(c.text, story.title, query or ""))) for c in cands])
    if query:
        q = embedder.embed_query(query)
        score += 0.5 * _zscore(vecs @ q)
        q_tokens = set(tokenize(query, "it"))
        score += np.array([0.4 if q_tokens & set(tokenize(c.text, "it")) else 0.0 for c in cands])
    for c, s in zip(cands, score):
        c.score = float(s)
    chosen: list[int] = []
    remaining = list(range(len(cands)))
    while remaining and len(chosen) < max_sentences:
        def mmr(i: int) -> float:
            redundancy = max((float(vecs[i] @ vecs[j]) for j in chosen), default=0.0)
            return MMR_LAMBDA * cands[i].score - (1 - MMR_LAMBDA) * 4 * redundancy

        best = max(remaining, key=mmr)
        # stop when the next sentence mostly repeats one already chosen, or is far weaker
        if chosen and (max(float(vecs[best] @ vecs[j]) for j in chosen) > 0.93
                       or cands[best].score < cands[chosen[0]].score - 1.0):
            break
        chosen.append(best)
        remaining.remove(best)
    picked = [cands[i] for i in chosen]
    # within a story, read in article order: newest article first, then position
    order = {aid: n for n, aid in enumerate(story.article_ids)}
    picked.sort(key=lambda c: (order.get(c.article.id, 0), c.start))
    return picked


def _hit_for(article: StoredArticle, start: int = 0, end: int | None = None) -> Hit:
    text = article.text
    end = len(text) if end is None else end
    return Hit(
        chunk_id=f"{article.id}::summary", article_id=article.id, text=text[start:end], score=0.0,
        title=article.title, date=article.date, source=article.source, url=article.url, path=article.path,
        start=start, end=end,
    )


def short_title(title: str, limit: int = 90) -> str:
    """An untitled article's title is its first sentence: headings keep its start."""
    if len(title) <= limit:
        return title
    cut = title[:limit].rsplit(" ", 1)[0].rstrip(",;:")
    return f"{cut}…"


def _heading(story: Story, lang: str) -> str:
    n = len(story.article_ids)
    dates = spoken_range(story.first_date, story.last_date, lang) or "?"
    if n == 1:
        return f"{short_title(story.title)} ({dates})"
    word = "articoli" if lang == "it" else "articles"
    return f"{short_title(story.title)} ({dates}; {n} {word})"


class _Citer:
    """One number per article across a summary; a second sentence of an article joins its quote."""

    def __init__(self) -> None:
        self.numbers: dict[str, int] = {}
        self.citations: list[Citation] = []

    def __call__(self, article: StoredArticle, sent: _Sentence | None = None) -> int:
        text = sent.text if sent else _lead_sentence(article)
        if article.id not in self.numbers:
            self.numbers[article.id] = len(self.numbers) + 1
            ps, pe = _paragraph(article.text, sent.start, sent.end) if sent else _paragraph(article.text, 0, 0)
            self.citations.append(citation_for(self.numbers[article.id], _hit_for(article, ps, pe), text))
        elif sent is not None:
            cit = self.citations[self.numbers[article.id] - 1]
            if sent.text not in cit.quote.split(" … "):
                cit.quote = f"{cit.quote} … {sent.text}"
        return self.numbers[article.id]


def _lead_sentence(article: StoredArticle) -> str:
    spans = sentence_spans(article.text, "it")
    return article.text[spans[0][0]:spans[0][1]] if spans else article.title


_ALSO = {"it": "Ne scrivono anche: ", "en": "Also reported by: "}


def story_versions(story: Story, picked: list[_Sentence], cite: _Citer, lang: str,
                   query: str | None = None) -> tuple[list[str], list[Conflict]]:
    """What a story's summary adds so that no report is dropped silently: for each picked
    sentence, the other articles' versions of its figures when they differ ("Le fonti non
    concordano: …", ``rag.claims``), then every article of the story not cited yet, by outlet.
    A story of N articles so carries N citations."""
    lines: list[str] = []
    conflicts: list[Conflict] = []
    told: set[str] = set()
    for sent in picked:
        if sent.article.id in told:
            continue
        a = sent.article
        anchor = claims.Said(sent.text, a.id, a.source, a.date)
        pool = [o for b in story.articles if b.id != a.id for o in _sentences(b)]
        others = [claims.Said(o.text, o.article.id, o.article.source, o.article.date) for o in pool]
        sentence_of = {id(said): o for said, o in zip(others, pool)}
        found: dict[str, claims.Said] = {}
        for said in claims.rivals(anchor, others):
            found.setdefault(said.article_id, said)
        if not found or claims.conflict(anchor, list(found.values()), query or "") is None:
            continue
        anchor.citations = [cite(a, sent)]
        for said in found.values():
            other = sentence_of[id(said)]
            said.citations = [cite(other.article, other)]
        disputed = claims.conflict(anchor, list(found.values()), query or "")
        assert disputed is not None
        conflicts.append(disputed)
        told |= {a.id, *found}
        lines.append(claims.sentence(disputed, lang))
    rest = [b for b in story.articles if b.id not in cite.numbers]
    if rest:
        named = ", ".join(f"{b.source or short_title(b.title)} ({spoken(b.date, lang)}) [{cite(b)}]" if b.date
                          else f"{b.source or short_title(b.title)} [{cite(b)}]" for b in rest)
        lines.append(_ALSO["en" if lang == "en" else "it"] + named + ".")
    return lines, conflicts


_LANGUAGE_NAMES = {"it": {"it": "italiano", "en": "inglese"}, "en": {"it": "Italian", "en": "English"}}


def _original_language(stories: list[Story], quoted: dict[str, int], lang: str) -> str:
    """Without a model the quotes cannot be translated: when some are in another language than
    the one asked for, the notice says so and names it (" Quotes stay in their original
    language (Italian)."); nothing when every quote is already in ``lang``."""
    names = _LANGUAGE_NAMES["en" if lang == "en" else "it"]
    langs = []
    for story in stories:
        for article in story.articles:
            if article.id in quoted and article.lang in names and article.lang != lang and \
                    names[article.lang] not in langs:
                langs.append(names[article.lang])
    if not langs:
        return ""
    if lang == "en":
        return f" Quotes stay in their original language ({', '.join(langs)})."
    return f" Le citazioni restano nella lingua originale ({', '.join(langs)})."


def extractive_summary(config: Config, embedder: Embedder, stories: list[Story], query: str | None, lang: str,
                       single: bool) -> Summary:
    cite = _Citer()
    conflicts: list[Conflict] = []
    blocks = []
    for story in stories:
        picked = pick_sentences(story, embedder, query, max_sentences=3 if single or len(stories) == 1
                                else 2)
        if not picked:
            continue
        parts = [f"{sent.text} [{cite(sent.article, sent)}]" for sent in picked]
        more, found = story_versions(story, picked, cite, lang, query)
        conflicts += found
        body = " ".join(parts + more)
        blocks.append(body if single else f"{_heading(story, lang)}\n{body}")
    notice = render(config.prompts_dir, "summary_notice", lang,
                    original=_original_language(stories, cite.numbers, lang))
    text = "\n\n".join(blocks) if blocks else render(config.prompts_dir, "summary_empty", lang)
    return Summary(text=text, mode="extractive", model="extractive", stories=stories,
                   citations=cite.citations, lang=lang, notice=notice, conflicts=conflicts)


# -- language model ------------------------------------------------------------------------------


def _fit(text: str, budget: int) -> str:
    """The start of ``text`` within ``budget`` tokens, cut at a paragraph or sentence edge."""
    if count_tokens(text) <= budget:
        return text
    from rag.chunking import encoding

    enc = encoding()
    cut = enc.decode(enc.encode(text, disallowed_special=())[: max(0, budget)])
    edge = max(cut.rfind("\n\n"), cut.rfind(". "))
    return cut[: edge + 1] if edge > len(cut) // 2 else cut


def _sources_block(config: Config, lang: str, numbered: list[tuple[int, StoredArticle]], budget: int) -> str:
    per = max(120, budget // max(1, len(numbered)) - 40)
    return "\n\n".join(
        render(config.prompts_dir, "source", lang, n=n, title=html.escape(a.title, quote=True),
               date=spoken(a.date, lang) or "?", source=html.escape(a.source or "?", quote=True),
               text=fence(_fit(a.text, per)))
        for n, a in numbered
    )


def _budget(cfg: Config, *prompts: str) -> int:
    fixed = sum(count_tokens(p) for p in prompts) + 200
    return max(400, cfg.model_context_tokens - cfg.answer_tokens - fixed)


def _messages(config: Config, name: str, lang: str, **values: object) -> list[dict]:
    d = config.prompts_dir
    return [{"role": "system", "content": render(d, f"{name}_system", lang)},
            {"role": "user", "content": render(d, f"{name}_user", lang, **values)}]


def _llm_summary(config: Config, stories: list[Story], query: str | None, lang: str, period: str,
                 ) -> Iterator[str | Summary]:
    llm = LLM(config)
    d = config.prompts_dir
    numbers: dict[str, int] = {}
    by_number: list[StoredArticle] = []
    for story in stories:
        for a in story.articles:
            if a.id not in numbers:
                numbers[a.id] = len(numbers) + 1
                by_number.append(a)
    focus = render(d, "summary_focus", lang, query=query) if query else ""
    overhead = render(d, "summary_system", lang) + render(d, "summary_user", lang, sources="", focus=focus)
    budget = _budget(config, overhead)

    def map_messages(story: Story) -> list[dict]:
        numbered = [(numbers[a.id], a) for a in story.articles]
        return _messages(config, "summary", lang, sources=_sources_block(config, lang, numbered, budget),
                         focus=focus, title=story.title,
                         dates=spoken_range(story.first_date, story.last_date, lang) or "?")

    raw: list[str] = []
    if len(stories) == 1:
        for delta in llm.stream(map_messages(stories[0])):
            raw.append(delta)
            yield delta
    else:
        partials = []
        for story in stories:
            partial = llm.complete(map_messages(story)).strip()
            partials.append(f"<notizia titolo=\"{html.escape(story.title, quote=True)}\" "
                            f"data=\"{spoken_range(story.first_date, story.last_date, lang) or '?'}\">\n"
                            f"{fence(partial)}\n</notizia>")
        dfocus = render(d, "summary_focus", lang, query=query) if query else ""
        reduce_budget = _budget(config, render(d, "digest_system", lang),
                                render(d, "digest_user", lang, summaries="", focus=dfocus, period=period))
        kept, used = [], 0
        for p in partials:  # newest stories first: the oldest are dropped if they do not fit
            cost = count_tokens(p)
            if kept and used + cost > reduce_budget:
                break
            kept.append(p)
            used += cost
        for delta in llm.stream(_messages(config, "digest", lang, summaries="\n\n".join(kept), focus=dfocus,
                                          period=period or "?")):
            raw.append(delta)
            yield delta
    hits = [_hit_for(a) for a in by_number]
    clean, citations = validate("".join(raw), hits, lang)
    # every article of every story is cited: those the model left out are named, by outlet
    cited = {c.article_id for c in citations}
    left = [a for a in by_number if a.id not in cited]
    if left:
        named = []
        for a in left:
            citations.append(citation_for(len(citations) + 1, _hit_for(a), _lead_sentence(a)))
            when = f" ({spoken(a.date, lang)})" if a.date else ""
            named.append(f"{a.source or short_title(a.title)}{when} [{len(citations)}]")
        tail = "\n\n" + _ALSO["en" if lang == "en" else "it"] + ", ".join(named) + "."
        yield tail
        clean += tail
    conflicts = claims.among([claims.Said(c.quote, c.article_id, c.source, c.date, [c.n]) for c in citations])
    yield Summary(text=clean, mode="llm", model=llm.model, stories=stories, citations=citations,
                  lang=lang, conflicts=conflicts)


# -- entry points --------------------------------------------------------------------------------


def stream_summary(request: SummaryRequest, *, config: Config, index: Index, retriever: Retriever,
                   embedder: Embedder, answerer: str = "auto", fallback: str | None = "extractive",
                   ) -> Iterator[str | Summary]:
    articles, relevance = select_articles(request, index, retriever)
    stories = make_stories(index, articles, relevance)
    query = request.query or None
    lang, single = request.lang, request.kind == "article"
    use_llm = config.uses_llm(answerer)
    summary: Summary | None = None
    if stories and use_llm:
        shown = False
        try:
            for item in _llm_summary(config, stories, query, lang, request.period):
                if isinstance(item, Summary):
                    summary = item
                else:
                    shown = True
                    yield item
        except LLMError as exc:
            if fallback != "extractive":
                raise
            summary = extractive_summary(config, embedder, stories, query, lang, single=single)
            summary.notice = f"{exc}. {summary.notice}"
            yield ("\n\n" if shown else "") + summary.text
    else:
        summary = extractive_summary(config, embedder, stories, query, lang, single=single)
        yield from re.split(r"(?<=\n)", summary.text)  # streams line by line, like an answer
    assert summary is not None
    yield summary
