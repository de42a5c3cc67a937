import json
from pathlib import Path

import pytest

from rag.parsing import iter_files, parse_date, parse_file
from tests.conftest import SAMPLE

SEED = SAMPLE / "ancelotti_2024-11.txt"


def test_seed_article_parses_with_date_title_and_language():
    parsed = parse_file(SEED)
    assert parsed.errors == []
    (art,) = parsed.articles
    assert art.date == "2024-11" and art.date_int == 20241101
    assert art.title.startswith("Non sta vivendo un periodo sereno Carlo Ancelotti")
    assert art.lang == "it"
    assert "Roma e Milan" in art.text and not art.text.startswith("date")
    assert art.id.startswith("a-")


def test_same_text_gets_same_id_under_two_names(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    body = "date 2025-01-02\nUn articolo di prova sul calcio italiano, con abbastanza testo."
    a.write_text(body)
    b.write_text(body.replace("  ", " "))
    assert parse_file(a).articles[0].id == parse_file(b).articles[0].id


def test_markdown_front_matter(tmp_path):
    p = tmp_path / "x.md"
    p.write_text("---\ntitle: Titolo\ndate: 2025-05-12\nsource: Il Pallone\nurl: https://e.org/x\n---\n"
                 "# Titolo\n\nCorpo dell'articolo con qualche frase in italiano.")
    art = parse_file(p).articles[0]
    assert (art.title, art.date, art.source, art.id) == ("Titolo", "2025-05-12", "Il Pallone", "https://e.org/x")


def test_jsonl_bad_lines_reported_with_line_numbers(tmp_path):
    p = tmp_path / "x.jsonl"
    good = {"title": "T", "text": "Testo di un articolo abbastanza lungo per passare."}
    p.write_text("\n".join([json.dumps(good), "{broken", json.dumps({"title": "no text"}),
                            json.dumps({**good, "id": "two", "date": "31/12/2024"})]))
    parsed = parse_file(p)
    assert [a.id for a in parsed.articles][1] == "two"
    assert parsed.articles[1].date == "2024-12-31"
    assert [(e.line, e.reason.split(" ")[0]) for e in parsed.errors] == [(2, "malformed"), (3, "no")]
    assert str(parsed.errors[0]).startswith(f"{p}:2: malformed JSON")


@pytest.mark.parametrize(
    "name,content,reason",
    [
        ("empty.txt", b"", "empty file"),
        ("bin.txt", b"\x00\x01\x02\xff" * 50, "binary file"),
        ("bad.json", b"{\"title\": ", "malformed JSON"),
        ("date.md", b"---\ndate: 2024-13-45\n---\nTesto di prova abbastanza lungo.", "unparseable date"),
        ("x.pdf", b"%PDF-1.4", "unsupported file type"),
    ],
)
def test_bad_input_gives_one_clear_reason(tmp_path, name, content, reason):
    p = tmp_path / name
    p.write_bytes(content)
    parsed = parse_file(p)
    assert parsed.articles == []
    assert len(parsed.errors) == 1 and reason in parsed.errors[0].reason
    assert str(p) in str(parsed.errors[0])


def test_oversized_file_refused(tmp_path):
    p = tmp_path / "big.txt"
    p.write_text("parola " * 2000)
    assert "too large" in parse_file(p, max_bytes=1000).errors[0].reason


def test_latin1_text_is_decoded(tmp_path):
    p = tmp_path / "l1.txt"
    p.write_bytes("date 2025-01\nLa Juventus è in difficoltà: perché? Città e società.".encode("cp1252"))
    art = parse_file(p).articles[0]
    assert "è in difficoltà" in art.text and "Città" in art.text


def test_html_main_text_without_scripts(tmp_path):
    p = tmp_path / "a.html"
    p.write_text("<html><head><title>Milan, arriva Allegri</title><script>alert('x')</script></head>"
                 "<body><nav>menu</nav><article><h1>Milan, arriva Allegri</h1><p>"
                 + "Il Milan ha scelto Massimiliano Allegri come nuovo allenatore per la prossima stagione. " * 5
                 + "</p></article></body></html>")
    art = parse_file(p).articles[0]
    assert "Allegri" in art.text and "alert" not in art.text
    assert "Allegri" in art.title


def test_folder_walk_skips_readme_and_hidden(tmp_path):
    (tmp_path / "README.md").write_text("x")
    (tmp_path / ".hidden.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("x")
    (tmp_path / "b.csv").write_text("x")
    assert [p.name for p, _ in iter_files([tmp_path])] == ["a.txt"]
    assert next(iter(iter_files([tmp_path / "missing"])))[1].reason == "no such file or folder"


def test_parse_date_forms():
    assert parse_date("2024-11") == "2024-11"
    assert parse_date("2024-11-05T10:00:00Z") == "2024-11-05"
    assert parse_date(Path("x").stem and "2025") == "2025"
    with pytest.raises(ValueError):
        parse_date("ieri")


# -- issue 10: front matter, byte-order marks, NULs, size message, odd paths -------------------

BODY_IT = "La città di Perché ha già deciso: l'università riaprirà dopo la novità del caffè."


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("nested", ["[" * 500, "{" * 500, "\n  " + "- " * 500 + "x", "{a: " * 500],
                         ids=["flow-lists", "flow-maps", "block-lists", "flow-maps-with-keys"])
def test_deeply_nested_front_matter_is_one_error(tmp_path, nested):
    """Finding 5: 500 nested flow or block collections used to raise RecursionError."""
    p = _write(tmp_path / "deep.md", f"---\ntitle: {nested}\n---\n{BODY_IT}")
    parsed = parse_file(p)
    assert parsed.articles == []
    assert len(parsed.errors) == 1 and "front matter" in parsed.errors[0].reason, parsed.errors
    assert "nested" in parsed.errors[0].reason


def test_front_matter_over_size_limit_is_refused(tmp_path):
    p = _write(tmp_path / "big.md", "---\ntitle: T\n" + "".join(f"k{i}: {'v' * 60}\n" for i in range(1200))
               + f"---\n{BODY_IT}")
    parsed = parse_file(p)
    assert parsed.articles == [] and len(parsed.errors) == 1
    assert "front matter" in parsed.errors[0].reason and "64 KB" in parsed.errors[0].reason


def test_front_matter_brackets_inside_quotes_are_text(tmp_path):
    """The depth limit counts collections, not bracket characters in a quoted title."""
    p = _write(tmp_path / "q.md", f"---\ntitle: \"{'[' * 500} titolo\"\ntags: [a, [b, c]]\n---\n{BODY_IT}")
    (art,) = parse_file(p).articles
    assert art.title.startswith("[[[[") and art.title.endswith("titolo")


def test_deep_front_matter_does_not_stop_the_batch(make_lib, tmp_path):
    """Finding 5, as reported: one hostile file in four used to store none of them."""
    folder = tmp_path / "in"
    folder.mkdir()
    _write(folder / "a-deep.md", f"---\ntitle: {'[' * 500}\n---\n{BODY_IT}")
    _write(folder / "b.md", f"---\ntitle: Bologna\n---\nIl Bologna ha vinto la Coppa Italia a Roma. {BODY_IT}")
    _write(folder / "c.txt", "date 2025-05-14\nIl Milan ha perso la finale di Coppa Italia contro il Bologna.")
    _write(folder / "d.json", json.dumps({"title": "Inter", "text": "L'Inter ha scelto Chivu come allenatore."}))
    report = make_lib().ingest([folder])
    assert (report.added, report.failed) == (3, 1), report.errors
    assert len(report.errors) == 1 and str(report.errors[0]).startswith(str(folder / "a-deep.md"))


BOMS = {
    "utf-8-sig": ("utf-8", b"\xef\xbb\xbf"),
    "utf-16-le": ("utf-16-le", b"\xff\xfe"),
    "utf-16-be": ("utf-16-be", b"\xfe\xff"),
    "utf-32-le": ("utf-32-le", b"\xff\xfe\x00\x00"),
    "utf-32-be": ("utf-32-be", b"\x00\x00\xfe\xff"),
}


@pytest.mark.parametrize("bom", sorted(BOMS))
@pytest.mark.parametrize("suffix", [".txt", ".md", ".json"])
def test_byte_order_marks_are_decoded(tmp_path, bom, suffix):
    """Finding 9: UTF-16/32 files (with a BOM) were refused as binary because of their NULs."""
    codec, mark = BOMS[bom]
    content = {".txt": f"date 2025-03\n{BODY_IT}", ".md": f"---\ntitle: Città\n---\n{BODY_IT}",
               ".json": json.dumps({"title": "Città", "text": BODY_IT}, ensure_ascii=False)}[suffix]
    p = tmp_path / f"bom{suffix}"
    p.write_bytes(mark + content.encode(codec))
    parsed = parse_file(p)
    assert parsed.errors == [], parsed.errors
    (art,) = parsed.articles
    assert art.text == BODY_IT and "\ufeff" not in art.text + art.title


def test_bom_with_undecodable_body_is_one_error(tmp_path):
    p = tmp_path / "odd.txt"
    p.write_bytes(b"\xff\xfe" + b"\x00\xd8" + "testo".encode("utf-16-le"))  # a lone surrogate
    parsed = parse_file(p)
    assert parsed.articles == [] and len(parsed.errors) == 1
    assert "UTF-16" in parsed.errors[0].reason


@pytest.mark.parametrize("where", [10, 9000, 200_000])
def test_nul_anywhere_is_refused_never_stored(tmp_path, where):
    """Finding 9: a NUL past the first 8 KB used to be stored in the article text."""
    text = ("Il consiglio comunale ha approvato il bilancio. " * 5000)
    p = tmp_path / "nul.txt"
    p.write_bytes(text[:where].encode() + b"\x00" + text[where:].encode())
    parsed = parse_file(p)
    assert parsed.articles == [] and len(parsed.errors) == 1
    assert parsed.errors[0].reason == "binary file, not text"


def test_nul_in_utf16_text_is_refused(tmp_path):
    p = tmp_path / "nul16.txt"
    p.write_bytes(b"\xff\xfe" + (BODY_IT + "\x00" + BODY_IT).encode("utf-16-le"))
    parsed = parse_file(p)
    assert parsed.articles == [] and parsed.errors[0].reason == "binary file, not text"


def test_control_characters_from_json_escapes_are_removed(tmp_path):
    """JSON can spell a NUL as \\u0000 in a valid file: the text keeps its words, never the NUL."""
    record = {"title": "T\u0000itolo", "text": "Nul\u0000la " + BODY_IT + "\u0007"}
    p = _write(tmp_path / "esc.json", json.dumps(record))
    (art,) = parse_file(p).articles
    assert art.title == "Titolo" and art.text == "Nulla " + BODY_IT
    assert not any(ord(c) < 32 and c not in "\n\t" for c in art.text)


def test_lone_surrogates_from_json_escapes_are_replaced(tmp_path):
    p = _write(tmp_path / "sur.json", json.dumps({"text": "Citt\ud800 " + BODY_IT}))
    (art,) = parse_file(p).articles
    assert art.text.encode("utf-8")  # storable and printable
    assert "\ufffd" in art.text and BODY_IT in art.text


@pytest.mark.parametrize("mb,shown", [(10.0, "limit 10 MB"), (0.5, "limit 0.5 MB"), (2.25, "limit 2.25 MB")])
def test_size_message_names_the_configured_limit(tmp_path, mb, shown):
    """Finding 10c: the limit reads as configured (it once said 10.5 MB for a 10 MB setting)."""
    from rag.config import Config

    limit = Config().with_(max_file_mb=mb).max_file_bytes
    p = tmp_path / "big.txt"
    with p.open("wb") as fh:
        fh.truncate(limit + 1)
    (error,) = parse_file(p, max_bytes=limit).errors
    assert "too large" in error.reason and shown in error.reason, error.reason


def test_symlinks_followed_dangling_and_looping_reported(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    real = _write(tmp_path / "real.txt", BODY_IT)
    (folder / "link.txt").symlink_to(real)
    (folder / "dangling.txt").symlink_to(tmp_path / "missing.txt")
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    files = list(iter_files([folder]))
    assert [p.name for p, err in files if err is None] == ["link.txt"]
    assert parse_file(folder / "link.txt").articles[0].text == BODY_IT
    (path, error), = iter_files([folder / "dangling.txt"])
    assert error is not None and "no such file" in error.reason


def test_a_named_special_file_is_one_clear_error(tmp_path):
    import os

    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    (path, error), = iter_files([fifo])  # reading a FIFO would block the batch forever
    assert error is not None and "not a regular file" in error.reason


@pytest.mark.parametrize("name", ["spazi e accenti città.txt", "-dash.md", "new\nline.txt", "émoji 📰.json",
                                  "x" * 200 + ".txt"])
def test_odd_file_names(tmp_path, name):
    content = json.dumps({"text": BODY_IT}) if name.endswith(".json") else BODY_IT
    p = _write(tmp_path / name, content)
    parsed = parse_file(p)
    assert parsed.errors == [] and parsed.articles[0].text == BODY_IT
    assert parsed.articles[0].path.startswith(str(p))


def test_undecodable_file_name_error_is_printable(tmp_path):
    import os

    raw = os.fsencode(str(tmp_path)) + b"/bad-\xff-name.txt"
    with open(raw, "wb") as fh:
        fh.write(b"")
    (path, _), = iter_files([tmp_path])
    (error,) = parse_file(path).errors
    assert "empty file" in str(error)
    str(error).encode("utf-8", errors="strict")  # the error line can be printed
