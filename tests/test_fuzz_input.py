"""Hostile and broken input files: every bad item is reported, nothing crashes, nothing is lost."""

from __future__ import annotations

import json
import random

import pytest

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
