"""Hostile and broken input files: every bad item is reported, nothing crashes, nothing is lost."""

from __future__ import annotations

import itertools
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.cli import main as cli_main
from rag.parsing import parse_file

GOOD = ("Il Napoli ha vinto lo scudetto battendo il Cagliari allo stadio Maradona, "
        "con le reti di McTominay e Lukaku davanti a cinquantamila tifosi.")


def _texts(lib) -> list[str]:
    return [lib.article(a.id).text for a in lib.articles()]


def test_random_bytes_file(make_lib, tmp_path):
    lib = make_lib()
    rng = random.Random(1)
    with_nul = tmp_path / "noise.txt"
    with_nul.write_bytes(bytes(rng.randrange(256) for _ in range(8192)) + b"\x00")
    no_nul = tmp_path / "noise2.md"
    no_nul.write_bytes(bytes(rng.randrange(1, 256) for _ in range(8192)))
    report = lib.ingest([with_nul])
    assert report.failed == 1 and report.added == 0
    assert str(with_nul) in str(report.errors[0])
    report = lib.ingest([no_nul])  # must not raise; whatever it decodes to is either refused or text
    assert report.failed + report.added == 1
    if report.failed:
        assert str(no_nul) in str(report.errors[0])


def test_file_over_size_limit(make_lib, tmp_path):
    lib = make_lib(max_file_mb=0.01)
    big = tmp_path / "big.txt"
    big.write_text((GOOD + "\n") * 200, encoding="utf-8")  # ~30 KB > 10 KB
    report = lib.ingest([big])
    assert report.failed == 1 and report.added == 0
    assert "too large" in str(report.errors[0]) and str(big) in str(report.errors[0])
    assert lib.index.store.count_chunks() == 0


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_deeply_nested_json(make_lib, tmp_path, suffix):
    lib = make_lib()
    path = tmp_path / f"deep{suffix}"
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    report = lib.ingest([path])
    assert report.failed == 1 and report.added == 0
    assert "nested" in str(report.errors[0]) or "JSON" in str(report.errors[0])


def test_html_script_not_stored(make_lib, tmp_path):
    lib = make_lib()
    page = tmp_path / "page.html"
    page.write_text(
        "<html><head><title>Napoli campione</title>"
        "<script>var segreto = 'CODICE_MALEVOLO_123'; alert('xss');</script></head>"
        "<body><article><h1>Napoli campione d'Italia</h1>"
        f"<p>{GOOD}</p><script>document.write('ALTRO_SCRIPT_456')</script>"
        "<p>La festa è proseguita per tutta la notte nelle strade della città, tra caroselli "
        "e fuochi d'artificio sul lungomare.</p></article></body></html>",
        encoding="utf-8",
    )
    report = lib.ingest([page])
    assert report.added == 1, report.errors
    text = _texts(lib)[0]
    assert "McTominay" in text
    for bad in ("CODICE_MALEVOLO_123", "ALTRO_SCRIPT_456", "alert(", "document.write"):
        assert bad not in text
    docs = [d for ids, docs, _ in lib.index.store.iter_chunks() for d in docs]
    assert not any("CODICE_MALEVOLO" in d or "ALTRO_SCRIPT" in d for d in docs)


def test_zero_width_characters_removed(make_lib, tmp_path):
    lib = make_lib()
    path = tmp_path / "zw.txt"
    path.write_text("Il Na\u200bpoli ha vin\u200dto lo scu\u2060detto \ufeffcon Conte in panchina "
                    "e McTo\u200cminay decisivo.", encoding="utf-8")
    report = lib.ingest([path])
    assert report.added == 1, report.errors
    text = _texts(lib)[0]
    assert "Napoli" in text and "scudetto" in text and "McTominay" in text
    assert not any(c in text for c in "\u200b\u200c\u200d\u2060\ufeff")
    hits = lib.retriever.search("Napoli scudetto", mode="bm25").hits
    assert hits and hits[0].article_id == lib.articles()[0].id


@pytest.mark.parametrize("encoding", ["latin-1", "cp1252"])
def test_legacy_encodings_keep_accents(make_lib, tmp_path, encoding):
    lib = make_lib()
    body = ("Perché la città è più bella d'estate? L'università di Napoli ha già risposto: "
            "è così da sempre, però la novità è che il caffè costa di più. "
            "Più di metà degli intervistati ritiene che la qualità della vita sia migliorata, "
            "perché le attività commerciali hanno riaperto e la città è tornata a vivere.")
    if encoding == "cp1252":
        body += " Il biglietto costa 5 \u20ac e l\u2019ingresso \u00e8 \u201cgratuito\u201d per i bambini."
    path = tmp_path / f"legacy-{encoding}.txt"
    path.write_bytes(body.encode(encoding))
    report = lib.ingest([path])
    assert report.added == 1, report.errors
    text = _texts(lib)[0]
    for word in ("Perché", "città", "più", "università", "già", "così", "novità", "caffè", "qualità"):
        assert word in text, (word, text)
    if encoding == "cp1252":
        assert "5 \u20ac" in text and "\u201cgratuito\u201d" in text


_BAD_KINDS = ["{not json", '"just a string"', '{"title": "senza testo"}', '{"text": "breve"}',
              json.dumps({"text": GOOD, "date": "31/31/2024"}), "[1, 2, 3]"]


def _write_jsonl(path, n_lines: int, bad_lines: set[int]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for lineno in range(1, n_lines + 1):
            if lineno in bad_lines:
                fh.write(_BAD_KINDS[sum(b < lineno for b in bad_lines) % len(_BAD_KINDS)] + "\n")
            else:
                fh.write(json.dumps({"id": f"n{lineno}", "title": f"Notizia {lineno}",
                                     "text": f"Cronaca numero {lineno}: il consiglio comunale "
                                             f"ha approvato la delibera {lineno * 7}."}) + "\n")


def test_10k_line_jsonl_with_bad_lines_parsed(tmp_path):
    """Every valid line of a 10k-line file becomes an article; each bad line one error, by number."""
    path = tmp_path / "many.jsonl"
    bad_lines = {7, 500, 1234, 4999, 8888, 10_000}
    _write_jsonl(path, 10_000, bad_lines)
    parsed = parse_file(path)
    assert len(parsed.articles) == 10_000 - len(bad_lines)
    assert sorted(e.line for e in parsed.errors) == sorted(bad_lines)
    for e in parsed.errors:
        assert str(e).startswith(f"{path}:{e.line}: ")


def test_jsonl_with_bad_lines_ingested(make_lib, tmp_path):
    """The same through the whole ingest (400 lines: each article costs two Chroma upserts): all stored."""
    lib = make_lib()
    path = tmp_path / "many.jsonl"
    n_lines, bad_lines = 400, {1, 7, 133, 250, 399, 400}
    _write_jsonl(path, n_lines, bad_lines)
    report = lib.ingest([path])
    assert report.added == n_lines - len(bad_lines)
    assert report.failed == len(bad_lines)
    assert {e.line for e in report.errors} == bad_lines
    for e in report.errors:
        assert str(e).startswith(f"{path}:{e.line}: ")
    assert lib.index.store.count_articles() == n_lines - len(bad_lines)
    assert lib.index.store.count_chunks() == len(lib.index.lexical) == n_lines - len(bad_lines)


def test_cli_folder_with_empty_and_binary_files(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    for key in [k for k in __import__("os").environ if k.startswith(("CRONACA_", "OPENAI_", "CHROMA_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("CRONACA_HOME", str(home))
    monkeypatch.setenv("CRONACA_CONFIG", str(tmp_path / "none.toml"))
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "empty.md").write_bytes(b"")
    (folder / "blob.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 8)
    (folder / "zeros.json").write_bytes(b"\x00" * 100)
    code = cli_main(["ingest", str(folder)])
    assert code != 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 3, err
    for name in ("empty.md", "blob.txt", "zeros.json"):
        assert sum(name in line for line in lines) == 1, (name, err)
    assert "empty" in next(line for line in lines if "empty.md" in line)
    assert "binary" in next(line for line in lines if "blob.txt" in line)


class _FailingEmbedder:
    """HashEmbedder that raises on the n-th embed_passages call (an embedder crash mid-ingest)."""

    def __init__(self, base, fail_on_call: int) -> None:
        self.base, self.name, self.dim = base, base.name, base.dim
        self.calls, self.fail_on_call = 0, fail_on_call

    def embed_passages(self, texts):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("embedder crashed")
        return self.base.embed_passages(texts)

    def embed_query(self, text):
        return self.base.embed_query(text)


def test_failing_batch_loses_nothing_already_stored(make_lib, tmp_path, hash_embedder):
    home = tmp_path / "home"
    first = tmp_path / "first.jsonl"
    first.write_text("\n".join(json.dumps({"id": f"old{i}", "title": f"Vecchia {i}",
                                           "text": f"{GOOD} Episodio {i} della stagione."})
                               for i in range(5)), encoding="utf-8")
    lib = make_lib(home=home)
    assert lib.ingest([first]).added == 5
    before = lib.index.store.count_chunks()

    # a batch of only broken files: reported, nothing stored, nothing removed
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.json").write_text("{broken", encoding="utf-8")
    (bad / "b.txt").write_bytes(b"")
    report = lib.ingest([bad])
    assert report.failed == 2 and lib.index.store.count_chunks() == before

    # a batch whose embedder dies half-way (embed_batch=1 -> one call per chunk)
    second = tmp_path / "second.jsonl"
    second.write_text("\n".join(json.dumps({"id": f"new{i}", "title": f"Nuova {i}",
                                            "text": f"La Roma ha esonerato l'allenatore numero {i} "
                                                    f"dopo la sconfitta {i}."}) for i in range(20)),
                      encoding="utf-8")
    flaky = make_lib(home=home, embed_batch=1, embedder=_FailingEmbedder(hash_embedder, 3))
    with pytest.raises(RuntimeError, match="embedder crashed"):
        flaky.ingest([second])
    del flaky, lib

    lib = make_lib(home=home)
    ids = {a.id for a in lib.articles()}
    assert {f"old{i}" for i in range(5)} <= ids
    for i in range(5):
        assert lib.article(f"old{i}").text.startswith(GOOD)
    assert len(lib.index.lexical) == lib.index.store.count_chunks()
    hits = lib.retriever.search("Napoli scudetto McTominay", mode="bm25", k=5).hits
    assert {h.article_id for h in hits} & {f"old{i}" for i in range(5)}
    report = lib.ingest([second])  # the rerun finishes the job
    assert report.failed == 0
    assert lib.index.store.count_articles() == 25
    assert lib.index.store.count_chunks() == len(lib.index.lexical) == 25


# ---------------------------------------------------------------------------- fuzzing (issue 10)
#
# Batches of hostile files mixed with good ones go through the whole ingest. Whatever the bad
# files are, every good article beside them is stored and found, each bad file gets exactly one
# error naming it, and nothing from a bad file is stored. Examples are few and derandomised so
# CI is stable; CRONACA_FUZZ_EXAMPLES=500 explores further (and randomly).

_FUZZ_EXAMPLES = int(os.environ.get("CRONACA_FUZZ_EXAMPLES", "12"))
_FUZZ = settings(max_examples=_FUZZ_EXAMPLES, derandomize="CRONACA_FUZZ_EXAMPLES" not in os.environ,
                 deadline=None, database=None, print_blob=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                        HealthCheck.function_scoped_fixture])
_WORDS = ["consiglio", "comunale", "approvato", "bilancio", "sindaco", "stadio", "tifosi", "scudetto",
          "allenatore", "squadra", "ospedale", "università", "tram", "cantiere", "festa", "piazza", "mercato",
          "porto", "ferrovia", "scuola"]
_BOMS = {"utf-8": b"\xef\xbb\xbf", "utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff",
         "utf-32-le": b"\xff\xfe\x00\x00", "utf-32-be": b"\x00\x00\xfe\xff"}
_serial = itertools.count()


def _keyword() -> str:
    """A word no other file contains (letters only, so every tokenizer keeps it whole)."""
    n, letters = next(_serial), ""
    for _ in range(5):
        n, d = divmod(n, 26)
        letters += chr(97 + d)
    return "zqk" + letters


@dataclass
class FileSpec:
    kind: str
    outcome: str  # "good": stored and found; "bad": one error, nothing stored; "either": one of them
    seed: int
    size: int = 0
    depth: int = 0
    variant: str = ""


def _prose(rng: random.Random, keyword: str, n_words: int) -> str:
    words = [rng.choice(_WORDS) for _ in range(n_words)]
    words.insert(rng.randrange(len(words) + 1), keyword)
    sentences = ["Oggi " + " ".join(words[i:i + 12]) + "." for i in range(0, len(words), 12)]
    return "Cronaca cittadina: " + " ".join(sentences)


def _render(spec: FileSpec) -> tuple[str, bytes, str]:
    """(file name, content, keyword) for one spec; the keyword is only looked for in good files."""
    rng, key = random.Random(spec.seed), _keyword()
    text = _prose(rng, key, 30)
    kind = spec.kind
    if kind == "plain":
        return "plain città.txt", f"date 2025-0{rng.randrange(1, 10)}\n{text}".encode(), key
    if kind == "markdown":
        return "nota.md", f"---\ntitle: Nota {key}\nsource: Fuzz\n---\n# Titolo\n\n{text}".encode(), key
    if kind == "json":
        return "record.json", json.dumps({"title": f"R {key}", "text": text}, ensure_ascii=False).encode(), key
    if kind == "bom":
        codec = spec.variant
        body = json.dumps({"text": text}, ensure_ascii=False) if spec.size % 2 else text
        name = "bom.json" if spec.size % 2 else "bom.txt"
        return name, _BOMS[codec] + body.encode(codec), key
    if kind == "mixed-encodings":  # UTF-8 and Windows-1252 in one file: decoded as one of them
        return "misto.txt", "Perché la città".encode() + f" {text} ".encode() + "è già così".encode("cp1252"), key
    if kind == "long-line":  # one paragraph, no newline, the keyword somewhere inside
        body = _prose(rng, key, spec.size // 7)
        return "lunga.txt", body.encode(), key
    if kind == "random-bytes-nul":
        noise = bytearray(rng.randrange(256) for _ in range(spec.size))
        noise.insert(rng.randrange(len(noise) + 1), 0)
        return "rumore.txt", bytes(noise), key
    if kind == "random-bytes":
        return "rumore.md", bytes(rng.randrange(1, 256) for _ in range(spec.size)), key
    if kind == "nul-in-text":
        raw = text.encode() * (1 + spec.size // 400)
        at = rng.randrange(len(raw))
        return "nul.txt", raw[:at] + b"\x00" + raw[at:], key
    if kind == "deep-yaml":
        nested = {"flow": "[" * spec.depth, "map": "{a: " * spec.depth,
                  "block": "\n  " + "- " * spec.depth + "x"}[spec.variant]
        return "profonda.md", f"---\ntitle: {nested}\n---\n{text}".encode(), key
    if kind == "huge-yaml":
        keys = "".join(f"k{i}: {'v' * 70}\n" for i in range(1000))  # 75 KB of front matter
        return "grande.md", f"---\n{keys}---\n{text}".encode(), key
    if kind == "deep-json":
        suffix = ".jsonl" if spec.variant == "jsonl" else ".json"
        return "profondo" + suffix, ("[" * spec.depth + "]" * spec.depth).encode(), key
    if kind == "bom-bad-body":
        return "bom-rotto.txt", b"\xff\xfe" + b"\x00\xd8" + text.encode("utf-16-le"), key
    if kind == "empty":
        return "vuoto.md", b"", key
    raise AssertionError(kind)


_seeds = st.integers(0, 2**32 - 1)
_good = st.one_of(
    st.builds(FileSpec, kind=st.sampled_from(["plain", "markdown", "json", "mixed-encodings"]),
              outcome=st.just("good"), seed=_seeds),
    st.builds(FileSpec, kind=st.just("bom"), outcome=st.just("good"), seed=_seeds,
              size=st.integers(0, 1), variant=st.sampled_from(sorted(_BOMS))),
    st.builds(FileSpec, kind=st.just("long-line"), outcome=st.just("good"), seed=_seeds,
              size=st.integers(20_000, 60_000)),
)
_bad = st.one_of(
    st.builds(FileSpec, kind=st.just("random-bytes-nul"), outcome=st.just("bad"), seed=_seeds,
              size=st.integers(1, 20_000)),
    st.builds(FileSpec, kind=st.just("nul-in-text"), outcome=st.just("bad"), seed=_seeds,
              size=st.integers(0, 40_000)),
    st.builds(FileSpec, kind=st.just("deep-yaml"), outcome=st.just("bad"), seed=_seeds,
              depth=st.integers(6, 5000), variant=st.sampled_from(["flow", "map", "block"])),
    st.builds(FileSpec, kind=st.sampled_from(["huge-yaml", "bom-bad-body", "empty"]), outcome=st.just("bad"),
              seed=_seeds),
    st.builds(FileSpec, kind=st.just("deep-json"), outcome=st.just("bad"), seed=_seeds,
              depth=st.integers(2_000, 200_000), variant=st.sampled_from(["json", "jsonl"])),
)
_either = st.builds(FileSpec, kind=st.just("random-bytes"), outcome=st.just("either"), seed=_seeds,
                    size=st.integers(1, 5_000))
_batches = st.tuples(st.lists(_good, min_size=1, max_size=3), st.lists(_bad, min_size=1, max_size=3),
                     st.lists(_either, max_size=1))


def _write_batch(folder: Path, specs: list[FileSpec]) -> list[tuple[FileSpec, Path, str]]:
    folder.mkdir(parents=True)
    written = []
    for i, spec in enumerate(specs):
        name, content, key = _render(spec)
        path = folder / f"{i:02d}-{name}"
        path.write_bytes(content)
        written.append((spec, path, key))
    return written


def _errors_for(report, path: Path) -> list[str]:
    return [str(e) for e in report.errors if str(e).startswith(f"{path}:")]


def test_fuzzed_batches_lose_nothing_good(make_lib, tmp_path):
    lib = make_lib()
    stored_keys: list[tuple[str, FileSpec, Path]] = []
    batch_no = itertools.count()

    @_FUZZ
    @given(batch=_batches)
    def run(batch):
        goods, bads, eithers = batch
        specs = [*goods, *bads, *eithers]
        random.Random(len(specs)).shuffle(specs)
        written = _write_batch(tmp_path / f"batch{next(batch_no)}", specs)
        before = lib.index.store.count_articles()
        report = lib.ingest([p.parent for _s, p, _k in written[:1]])
        accepted = 0
        for spec, path, key in written:
            errors = _errors_for(report, path)
            if spec.outcome == "good":
                assert errors == [], (spec, errors)
                stored_keys.append((key, spec, path))
            elif spec.outcome == "bad":
                assert len(errors) == 1, (spec, report.errors)
            else:
                assert len(errors) <= 1, (spec, errors)
                accepted += not errors
        assert len(report.errors) == sum(len(_errors_for(report, p)) for _s, p, _k in written)
        assert lib.index.store.count_articles() == before + len(goods) + accepted, (specs, report.errors)
        # every good article so far, this batch's and all earlier ones, is stored and found
        for key, spec, path in stored_keys:
            hits = lib.retriever.search(key, mode="bm25", k=3, collapse_duplicates=False).hits
            assert any(key in lib.article(h.article_id).text for h in hits), (key, spec, path, [
                (a.id, a.path) for a in lib.articles() if str(a.path).startswith(str(path))])

    run()
    assert lib.index.store.count_chunks() == len(lib.index.lexical)


def test_every_kind_through_the_command_line(make_lib, tmp_path, monkeypatch, capsys):
    """One file of each kind in one folder, through `cronaca ingest`: one error line per bad file."""
    from rag import cli

    lib = make_lib()
    monkeypatch.setattr(cli, "_library", lambda _args, **_: lib)
    specs = [FileSpec("plain", "good", 1), FileSpec("markdown", "good", 2), FileSpec("json", "good", 3),
             FileSpec("mixed-encodings", "good", 4), FileSpec("long-line", "good", 5, size=50_000),
             *(FileSpec("bom", "good", 6 + i, size=i, variant=v) for i, v in enumerate(sorted(_BOMS))),
             FileSpec("random-bytes-nul", "bad", 20, size=3000), FileSpec("nul-in-text", "bad", 21, size=20_000),
             FileSpec("deep-yaml", "bad", 22, depth=500, variant="flow"),
             FileSpec("deep-yaml", "bad", 23, depth=500, variant="block"), FileSpec("huge-yaml", "bad", 24),
             FileSpec("deep-json", "bad", 25, depth=100_000, variant="json"),
             FileSpec("deep-json", "bad", 26, depth=100_000, variant="jsonl"),
             FileSpec("bom-bad-body", "bad", 27), FileSpec("empty", "bad", 28)]
    written = _write_batch(tmp_path / "in", specs)
    code = cli.main(["ingest", str(tmp_path / "in")])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1
    bad = [(s, p) for s, p, _k in written if s.outcome == "bad"]
    assert len(lines) == len(bad), err
    for spec, path in bad:
        assert sum(line.startswith(f"error: {path}:") for line in lines) == 1, (spec.kind, err)
    goods = [k for s, _p, k in written if s.outcome == "good"]
    assert lib.index.store.count_articles() == len(goods)
    for key in goods:
        hits = lib.retriever.search(key, mode="bm25", k=3, collapse_duplicates=False).hits
        assert any(key in lib.article(h.article_id).text for h in hits), key
