"""The plain records that travel between stages: ingest → store → retrieve → answer → present."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from rag.dates import date_to_int


@dataclass
class Article:
    id: str
    title: str
    text: str
    date: str = ""  # ISO, as precise as the source: "2024-11" or "2024-11-05"
    source: str = ""
    url: str = ""
    lang: str = ""
    path: str = ""
    content_hash: str = ""

    @property
    def date_int(self) -> int:
        """YYYYMMDD (missing month/day = 01) so Chroma can range-filter on an integer."""
        return date_to_int(self.date)

    def meta(self) -> dict[str, Any]:
        return {
            "article_id": self.id,
            "title": self.title,
            "date": self.date,
            "date_int": self.date_int,
            "source": self.source,
            "url": self.url,
            "lang": self.lang,
            "path": self.path,
            "content_hash": self.content_hash,
        }


@dataclass
class StoredArticle:
    """An article as the store holds it: what lists, summaries, stories and the API read.

    ``text`` is filled only when asked for (listing 10,000 articles must not load their text)."""

    id: str
    title: str = ""
    date: str = ""
    source: str = ""
    url: str = ""
    lang: str = ""
    path: str = ""
    content_hash: str = ""
    text_hash: str = ""
    chunks: int = 0
    text: str = ""

    @property
    def date_int(self) -> int:
        return date_to_int(self.date)

    @classmethod
    def from_record(cls, article_id: str, meta: dict[str, Any] | None, text: str = "") -> StoredArticle:
        meta = meta or {}
        known = {f.name for f in fields(cls)} - {"id", "text", "chunks"}
        values = {k: str(meta.get(k) or "") for k in known}
        return cls(id=article_id, text=text or "", chunks=int(meta.get("chunks") or 0), **values)

    def to_article(self) -> Article:
        return Article(id=self.id, title=self.title, text=self.text, date=self.date, source=self.source,
                       url=self.url, lang=self.lang, path=self.path, content_hash=self.content_hash)

    def to_dict(self, with_text: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not with_text:
            d.pop("text")
        return d


@dataclass(frozen=True)
class Filters:
    """What a question or summary may draw on; dates as YYYYMMDD, inclusive, 0 = open."""

    since: int = 0
    until: int = 0
    source: str = ""

    def __bool__(self) -> bool:
        return bool(self.since or self.until or self.source)


@dataclass
class Chunk:
    id: str
    article_id: str
    index: int
    text: str
    start: int  # character span in Article.text, so a quote can be shown in place
    end: int
    tokens: int = 0


@dataclass
class Hit:
    chunk_id: str
    article_id: str
    text: str
    score: float
    title: str = ""
    date: str = ""
    source: str = ""
    url: str = ""
    path: str = ""
    start: int = 0
    end: int = 0
    ranks: dict[str, int] = field(default_factory=dict)  # rank in each retriever, 1-based

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Citation:
    n: int
    article_id: str
    title: str
    date: str
    source: str
    url: str
    chunk_id: str
    quote: str  # exact text of the article, the passage the answer relies on
    path: str = ""
    chunk_text: str = ""  # the chunk around the quote, for highlighting in the page

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("chunk_text")
        d.pop("path")
        return d


@dataclass
class Version:
    """One source's version of a disputed fact: the value it states, with its outlet and date."""

    value: str  # as the source states it, normalised ("3", "2-1", "20 luglio")
    source: str  # the outlet (the article's ``source`` field)
    date: str
    citations: list[int] = field(default_factory=list)  # the answer's [n] for this version
    quote: str = ""  # the sentence stating it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Conflict:
    """Sources that state one fact differently (rag.claims): every version kept, oldest first."""

    claim: str  # what is disputed: the noun counted ("morti"), or the kind ("score", "date", "name")
    kind: str  # number | score | date | time | year | name
    versions: list[Version] = field(default_factory=list)

    @property
    def citations(self) -> list[int]:
        return sorted({n for v in self.versions for n in v.citations})

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "kind": self.kind, "versions": [v.to_dict() for v in self.versions],
                "citations": self.citations}


@dataclass
class Answer:
    question: str
    text: str
    mode: str  # "llm" or "extractive"
    model: str
    citations: list[Citation] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    lang: str = "it"
    declined: bool = False
    notice: str = ""  # e.g. "assembled without a language model", or why we fell back
    usage: dict[str, int] = field(default_factory=dict)
    standalone_question: str = ""
    truncated: bool = False  # the model did not finish the answer (length limit, cut stream, deadline)
    uncited: bool = False  # an LLM answer, not declined, with no valid citation at all
    conflicts: list[Conflict] = field(default_factory=list)  # sources that disagree, every version cited
    confidence: float | None = None  # the offline answerer's probability that its best sentence answers

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "standalone_question": self.standalone_question or self.question,
            "answer": self.text,
            "mode": self.mode,
            "model": self.model,
            "citations": [c.to_dict() for c in self.citations],
            # each chunk once, with the score of the search that found it first (the "since
            # then" search appends its own hits, which may repeat the question's)
            "retrieved": [
                {"chunk_id": h.chunk_id, "article_id": h.article_id, "score": round(h.score, 6)}
                for i, h in enumerate(self.hits) if all(o.chunk_id != h.chunk_id for o in self.hits[:i])
            ],
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "declined": self.declined,
            "truncated": self.truncated,
            "uncited": self.uncited,
            "notice": self.notice,
            "usage": self.usage,
            "conflicts": [c.to_dict() for c in self.conflicts],
        }
