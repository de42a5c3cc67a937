"""The page's guards, without a browser: upload names, types, sizes, auth and the bind address."""

import pytest

import app
from tests.conftest import HashEmbedder


@pytest.mark.parametrize("name,expected", [
    ("../../etc/passwd.md", "passwd.md"),
    ("..\\..\\windows\\evil.txt", "evil.txt"),
    ("/abs/path/notizia.JSON", "notizia.json"),
    (".hidden.md", "hidden.md"),
    ("spazi e àccenti;rm -rf.md", "spazi_e_àccenti_rm_-rf.md"),
])
def test_upload_names_lose_their_paths(name, expected):
    assert app.safe_name(name, set()) == expected


def test_upload_names_stay_unique_within_a_batch():
    taken: set[str] = set()
    assert [app.safe_name("a.md", taken) for _ in range(3)] == ["a.md", "a-2.md", "a-3.md"]


def _app(make_lib, **overrides):
    return app.App(make_lib(embedder=HashEmbedder(), **overrides))


def test_upload_refuses_other_types_and_big_files_and_stores_the_rest(make_lib, tmp_path):
    page_app = _app(make_lib, max_file_mb=0.001)
    ok = tmp_path / "ok.md"
    ok.write_text("---\ntitle: Prova\n---\nIl Bologna vince la Coppa Italia.\n")
    big = tmp_path / "big.md"
    big.write_text("parola " * 1000)
    exe = tmp_path / "virus.exe"
    exe.write_bytes(b"MZ")
    report = page_app.upload([str(ok), str(big), str(exe)], "it", "", "", "")[0]
    assert "virus.exe: tipo di file non ammesso" in report
    assert "big.md: file troppo grande" in report
    assert "aggiunti 1" in report and "Traceback" not in report
    stored = page_app.lib.articles()
    assert [a.title for a in stored] == ["Prova"]
    # the stored path is inside CRONACA_HOME/uploads, not the browser's temporary file
    assert "/uploads/" in stored[0].path


def test_auth_from_env(monkeypatch):
    monkeypatch.delenv("CRONACA_AUTH", raising=False)
    assert app.auth_from_env() is None
    monkeypatch.setenv("CRONACA_AUTH", "redazione:segreta")
    assert app.auth_from_env() == ("redazione", "segreta")
    monkeypatch.setenv("CRONACA_AUTH", "senza-password")
    with pytest.raises(SystemExit, match="user:password"):
        app.auth_from_env()


def test_listens_on_loopback_unless_asked(monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    assert (app.parse_args([]).host, app.parse_args([]).port) == ("127.0.0.1", 7860)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    assert app.parse_args([]).host == "0.0.0.0"
    assert app.parse_args(["--host", "127.0.0.2"]).host == "127.0.0.2"
