"""The CLI as a newcomer meets it: where the archive is, whole ids, id prefixes, one line per chunk."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from rag import cli
from rag.models import Answer, Hit


@pytest.fixture
def narrow(monkeypatch):
    """The CLI's stdout as an 80-column terminal; returns the buffer."""
    buf = io.StringIO()
    monkeypatch.setattr(cli, "out", Console(file=buf, width=80, soft_wrap=True))
    return buf


@pytest.fixture
def env(monkeypatch, tmp_path):
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "CHROMA_HOST", "CRONACA_HOME", "CRONACA_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("argv", [["ask", "Chi allena la Roma?"], ["list"], ["show", "x"], ["stats"],
                                  ["summarise", "--query", "Roma"]])
def test_a_read_command_away_from_the_archive_says_where_it_looked_and_creates_nothing(env, capsys, argv):
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert str((env / ".cronaca").resolve()) in err and "CRONACA_HOME" in err and "cronaca ingest" in err
    assert len(err.strip().splitlines()) == 1
    assert not (env / ".cronaca").exists()


def test_asking_an_empty_archive_names_the_home_and_says_it_is_empty(env, capsys, make_lib, monkeypatch):
    lib = make_lib(home=env / "home")
    monkeypatch.setattr(cli, "_library", lambda _args, **_: lib)
    assert cli.main(["ask", "Chi allena la Roma?"]) == 0
    err = capsys.readouterr().err
    assert "empty" in err and str((env / "home").resolve()) in err


def test_no_note_when_the_archive_holds_articles(hash_sample, capsys, monkeypatch):
    lib = hash_sample()
    monkeypatch.setattr(cli, "_library", lambda _args, **_: lib)
    assert cli.main(["ask", "Chi allena la Roma?"]) == 0
    assert "empty" not in capsys.readouterr().err


def test_list_shows_whole_ids_in_an_80_column_terminal_and_show_takes_a_prefix(hash_sample, narrow, capsys,
                                                                                monkeypatch):
    lib = hash_sample()
    monkeypatch.setattr(cli, "_library", lambda _args, **_: lib)
    assert cli.main(["list"]) == 0
    listed = narrow.getvalue()
    ids = [a.id for a in lib.articles()]
    assert all(len(line) <= 80 for line in listed.splitlines()[:-1]), listed  # the last names the home
    for article_id in ids:
        assert article_id in listed.split(), article_id
    assert "2025-06-10" in listed  # dates whole too
    narrow.seek(0)
    narrow.truncate()
    assert cli.main(["list", "--wide"]) == 0
    assert lib.article("sample-2025-06-inter-inzaghi-chivu").title in narrow.getvalue()

    narrow.seek(0)
    narrow.truncate()
    assert cli.main(["show", "sample-2025-06-inter-inz"]) == 0
    assert "Chivu" in narrow.getvalue()
    capsys.readouterr()
    assert cli.main(["show", "sample-2025-06"]) == 2  # several articles begin so
    err = capsys.readouterr().err.strip()
    assert "sample-2025-06" in err and "matches" in err and len(err.splitlines()) == 1
    assert cli.main(["show", "nothing-like-it"]) == 1


def _hit(chunk: str, score: float) -> Hit:
    return Hit(chunk_id=chunk, article_id=chunk.split("::")[0], text="", score=score, title="", date="",
               source="", url="", path="")


def test_retrieved_lists_each_chunk_once_with_its_first_score():
    answer = Answer(question="q", text="t", mode="extractive", model="extractive",
                    hits=[_hit("a::0", 0.9), _hit("b::0", 0.5), _hit("a::0", 0.3), _hit("c::1", 0.2)])
    assert answer.to_dict()["retrieved"] == [
        {"chunk_id": "a::0", "article_id": "a", "score": 0.9},
        {"chunk_id": "b::0", "article_id": "b", "score": 0.5},
        {"chunk_id": "c::1", "article_id": "c", "score": 0.2}]


def test_ask_json_retrieved_has_no_repeated_chunk(hash_sample, capsys, monkeypatch):
    """The "since then" search appends its hits to the answer's: a chunk found by both is listed once."""
    lib = hash_sample()
    monkeypatch.setattr(cli, "_library", lambda _args, **_: lib)
    for question in ("Chi allena la Roma?", "Dove va Ancelotti?", "Chi allena l'Inter?"):
        assert cli.main(["ask", question, "--json"]) == 0
        ids = [r["chunk_id"] for r in json.loads(capsys.readouterr().out)["retrieved"]]
        assert ids and len(ids) == len(set(ids)), ids
