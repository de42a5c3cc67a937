"""Files in, Articles out: one parser per format, and one clear error per bad item.

Errors never raise out of ``parse_file``: a batch of a thousand files should not stop at the
first broken one, and the user needs the file, the line and the reason to fix it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rag.dates import DateError
from rag.dates import parse_date as _parse_date
from rag.models import Article
from rag.text import clean, detect_lang, fold, sentence_spans

SUFFIXES = (".txt", ".md", ".markdown", ".json", ".jsonl", ".html", ".htm")
_SKIP_NAMES = re.compile(r"^(readme|license|licence|changelog)(\.|$)", re.I)
TITLE_MAX = 160


@dataclass
class IngestError:
    path: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        path = display_path(self.path)
        where = f"{path}:{self.line}" if self.line else path
        return f"{where}: {self.reason}"


@dataclass
class Parsed:
    articles: list[Article] = field(default_factory=list)
    errors: list[IngestError] = field(default_factory=list)


class ItemError(ValueError):
    """A reason why one item (a file, a JSON line) cannot become an article."""


def iter_files(paths: Iterable[str | Path]) -> Iterator[tuple[Path, IngestError | None]]:
    """Expand folders recursively. Inside folders, skip hidden files, READMEs and other types;
    a file named explicitly is always tried, so the user hears why it was refused."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                rel = child.relative_to(path).parts
                if any(p.startswith(".") for p in rel) or not child.is_file():
                    continue
                if child.suffix.lower() in SUFFIXES and not _SKIP_NAMES.match(child.name):
                    yield child, None
        elif path.is_file():
            yield path, None
        elif path.exists():  # a FIFO or a device: reading it could block the batch forever
            yield path, IngestError(str(path), "not a regular file")
        else:
            yield path, IngestError(str(path), "no such file or folder")


def display_path(path: str | Path) -> str:
    """A file name that can always be printed and stored.

    A name that is not valid UTF-8 reaches Python with surrogate escapes, which no UTF-8 stream
    (a terminal, JSON output, Chroma metadata) accepts. Its odd bytes become ``\\xNN`` instead: still
    recognisable, and still one name per file, so re-ingesting the file finds its earlier version.
    """
    text = str(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no file system produced
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def check_file(name: str, size: int, max_bytes: int) -> None:
    """The checks that need only a name and a size: the page runs them on uploads before copying."""
    suffix = Path(name).suffix.lower()
    if suffix not in SUFFIXES:
        raise ItemError(f"unsupported file type '{suffix or Path(name).name}' (use {', '.join(SUFFIXES)})")
    if size == 0:
        raise ItemError("empty file")
    if size > max_bytes:
        raise ItemError(f"file too large ({size / 2**20:.1f} MB, limit {max_bytes / 2**20:g} MB)")


def parse_file(path: Path, max_bytes: int = 10 * 1024 * 1024) -> Parsed:
    out = Parsed()
    name = str(path)
    suffix = path.suffix.lower()
    try:
        check_file(path.name, path.stat().st_size, max_bytes)
        raw = path.read_bytes()
        text = decode(raw)
    except ItemError as exc:
        out.errors.append(IngestError(name, str(exc)))
        return out
    except OSError as exc:
        out.errors.append(IngestError(name, f"cannot read: {exc.strerror or exc}"))
        return out

    if suffix == ".jsonl":
        for lineno, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                obj = _load_json(line)
                out.articles.append(from_record(obj, path, f"{name}:{lineno}"))
            except ItemError as exc:
                out.errors.append(IngestError(name, str(exc), lineno))
        if not out.articles and not out.errors:
            out.errors.append(IngestError(name, "no articles in file"))
        return out
    try:
        if suffix == ".json":
            data = _load_json(text)
            records = data.get("articles", data) if isinstance(data, dict) else data
            records = [records] if isinstance(records, dict) else records
            if not isinstance(records, list):
                raise ItemError("expected an object, a list of objects or {\"articles\": [...]}")
            for i, obj in enumerate(records):
                try:
                    out.articles.append(from_record(obj, path, f"{name}#{i}"))
                except ItemError as exc:
                    out.errors.append(IngestError(name, f"item {i}: {exc}"))
        elif suffix in (".html", ".htm"):
            out.articles.append(from_html(text, path))
        elif suffix in (".md", ".markdown"):
            out.articles.append(from_markdown(text, path))
        else:
            out.articles.append(from_txt(text, path))
    except ItemError as exc:
        out.errors.append(IngestError(name, str(exc)))
    except RecursionError:  # a parser we do not own (trafilatura, lxml) on pathological nesting
        out.errors.append(IngestError(name, "nested too deeply to read"))
    return out


# Byte-order marks, longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
_BOMS = (
    (b"\x00\x00\xfe\xff", "utf-32-be", "UTF-32"),
    (b"\xff\xfe\x00\x00", "utf-32-le", "UTF-32"),
    (b"\xef\xbb\xbf", "utf-8", "UTF-8"),
    (b"\xff\xfe", "utf-16-le", "UTF-16"),
    (b"\xfe\xff", "utf-16-be", "UTF-16"),
)
MIN_PRINTABLE = 0.95
BINARY = "binary file, not text"  # one wording, whatever gave it away (front-ends and tests match it)


def decode(raw: bytes) -> str:
    """Bytes to text, or an ``ItemError`` saying why the file is not text.

    A byte-order mark decides the encoding before anything else: UTF-16 and UTF-32 text is full of
    NUL bytes, so the binary check must come after it. Without a mark, a NUL byte anywhere means
    the file is not text (no text encoding we accept produces one), and after any decoding a NUL
    character does too: such a file is refused whole, never stored with the NUL removed, because a
    file that holds one usually holds other binary data as well.
    """
    for mark, codec, name in _BOMS:
        if raw.startswith(mark):
            try:
                text = raw[len(mark):].decode(codec)
            except UnicodeDecodeError as exc:
                raise ItemError(f"cannot decode: the file starts with a {name} byte-order mark but is not "
                                f"valid {name} (at byte {exc.start + len(mark)})") from None
            _refuse_binary(text)
            return text
    if b"\x00" in raw:
        raise ItemError(BINARY)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:  # legacy Italian and English files are nearly always Windows-1252
        text = raw.decode("cp1252")
        if _printable_ratio(text, "\n\t\r") > 0.99:
            return text
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(raw).best()
    if best is None or best.encoding is None:
        raise ItemError("cannot decode: not UTF-8 and no other text encoding fits")
    text = str(best)
    _refuse_binary(text)
    return text


def _refuse_binary(text: str) -> None:
    if "\x00" in text or _printable_ratio(text, "\n\t\r") < MIN_PRINTABLE:
        raise ItemError(BINARY)


def _printable_ratio(text: str, allowed: str) -> float:
    return sum(c.isprintable() or c in allowed for c in text) / max(1, len(text))


def _load_json(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise ItemError("JSON nested too deeply") from exc
    except json.JSONDecodeError as exc:
        raise ItemError(f"malformed JSON ({exc.msg} at column {exc.colno})") from exc


_DATE_LINE = re.compile(r"^\s*date\s*[:=]?\s*(\S+)\s*(.*)$", re.I | re.S)


def from_txt(text: str, path: Path) -> Article:
    """The seed's format: a first line ``date YYYY-MM[-DD]``, the body after it."""
    date = ""
    match = _DATE_LINE.match(text.lstrip("\ufeff"))
    if match and text.lstrip().lower().startswith("date"):
        date = parse_date(match.group(1))
        text = match.group(2)
    return make_article(body=text, path=path, date=date)


_FRONT_MATTER = re.compile(r"^\s*---\s*\n(.*?)\n---\s*(?:\n|$)", re.S)
FRONT_MATTER_MAX_CHARS = 64 * 1024
FRONT_MATTER_MAX_DEPTH = 5


def front_matter(block: str) -> dict[str, Any]:
    """The YAML between the ``---`` fences, as text values, within limits checked before loading.

    PyYAML's parser is a state machine but its composer recurses once per nesting level, so a
    title of 500 ``[`` used to raise RecursionError out of the parser and abort a whole batch.
    The events are walked first (no recursion) to refuse anything nested deeper than a few
    levels; front matter holds a title, a date and a source, not a document.
    """
    if len(block) > FRONT_MATTER_MAX_CHARS:
        raise ItemError(f"front matter too large (more than {FRONT_MATTER_MAX_CHARS // 1024} KB)")
    too_deep = ItemError(f"front matter nested too deeply (more than {FRONT_MATTER_MAX_DEPTH} levels)")
    try:
        depth = 0
        for event in yaml.parse(block, Loader=yaml.BaseLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > FRONT_MATTER_MAX_DEPTH:
                    raise too_deep
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
        meta = yaml.load(block, Loader=yaml.BaseLoader) or {}  # values stay text
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise ItemError(f"malformed front matter{f' (line {line + 2})' if line is not None else ''}") from exc
    except RecursionError:  # the walk above should make this unreachable; a batch must not stop
        raise too_deep from None
    if not isinstance(meta, dict):
        raise ItemError("front matter is not a mapping of keys to values")
    return meta


def from_markdown(text: str, path: Path) -> Article:
    meta: dict[str, Any] = {}
    match = _FRONT_MATTER.match(text)
    if match:
        meta = front_matter(match.group(1))
        text = text[match.end():]
    title = meta.get("title")
    lines = text.strip().split("\n")
    if not title and lines and lines[0].startswith("#"):
        title, text = lines[0].lstrip("#").strip(), "\n".join(lines[1:])
    text = re.sub(r"^#{1,6}\s+", "", text, flags=re.M)
    return make_article(
        body=text,
        path=path,
        title=_str(meta.get("title") or title, "title"),
        date=parse_date(meta["date"]) if meta.get("date") else "",
        source=_str(meta.get("source"), "source"),
        url=_str(meta.get("url"), "url"),
        explicit_id=_str(meta.get("id"), "id"),
    )


def from_record(obj: Any, path: Path, where: str) -> Article:
    if not isinstance(obj, dict):
        raise ItemError(f"expected a JSON object, got {type(obj).__name__}")
    body = next((obj[k] for k in ("text", "body", "content") if obj.get(k)), None)
    if body is None:
        raise ItemError("no text, body or content field")
    return make_article(
        body=_str(body, "text"),
        path=path,
        title=_str(obj.get("title"), "title"),
        date=parse_date(obj["date"]) if obj.get("date") else "",
        source=_str(obj.get("source"), "source"),
        url=_str(obj.get("url"), "url"),
        explicit_id=_str(obj.get("id"), "id"),
        where=where,
    )


def from_html(html: str, path: Path) -> Article:
    import trafilatura

    doc = trafilatura.bare_extraction(html, with_metadata=True, include_comments=False)
    if doc is None or not getattr(doc, "text", None):
        raise ItemError("no article text found in the HTML")
    date = ""
    if getattr(doc, "date", None):
        try:
            date = parse_date(doc.date)
        except ItemError:
            date = ""
    return make_article(
        body=doc.text,
        path=path,
        title=doc.title or "",
        date=date,
        source=doc.sitename or "",
        url=doc.url or "",
    )


def _str(value: Any, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value).strip()
    raise ItemError(f"field '{name}' must be text, got {type(value).__name__}")


def parse_date(value: Any) -> str:
    """The shared date parser, its error turned into this file's item error."""
    try:
        return _parse_date(value)
    except DateError as exc:
        raise ItemError(str(exc)) from None


def make_article(
    *,
    body: str,
    path: Path,
    title: str = "",
    date: str = "",
    source: str = "",
    url: str = "",
    explicit_id: str = "",
    where: str = "",
) -> Article:
    text = clean(body)
    if len(text) < 20 or not any(c.isalpha() for c in text):
        raise ItemError("no article text (empty or too short)")
    lang = detect_lang(text)
    title = clean(title) or derive_title(text, lang)
    article_id = url or explicit_id or f"a-{_text_hash(text)[:16]}"
    content_hash = hashlib.sha1(
        "\x1f".join([title, text, date, source, url]).encode()
    ).hexdigest()
    return Article(
        id=article_id,
        title=title,
        text=text,
        date=date,
        source=source,
        url=url,
        lang=lang,
        path=display_path(where or str(path)),
        content_hash=content_hash,
    )


def _text_hash(text: str) -> str:
    """Same words, same hash: case, accents and spacing don't make a new article."""
    return hashlib.sha1(fold(" ".join(text.split())).encode()).hexdigest()


def text_hash(article: Article) -> str:
    return _text_hash(article.text)


def derive_title(text: str, lang: str) -> str:
    """First line when it reads as a headline, else the first sentence, cut at a word."""
    first_line = text[: TITLE_MAX * 8].split("\n", 1)[0].strip()  # a 10 MB one-line file has no title line
    spans = sentence_spans(first_line, lang)
    candidate = first_line if len(first_line) <= TITLE_MAX and len(spans) <= 1 else (
        first_line[spans[0][0]:spans[0][1]] if spans else first_line
    )
    if len(candidate) > TITLE_MAX:
        candidate = candidate[:TITLE_MAX].rsplit(" ", 1)[0] + "…"
    return candidate.rstrip(" .")
