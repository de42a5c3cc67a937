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
