"""The page's HTML helpers (fast), and the real app over HTTP with gradio_client (slow)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rag.models import Answer, Citation
from rag.page import answer_html, highlight, link_markers, sources_html

ROOT = Path(__file__).resolve().parent.parent


# ---- helpers shared with tests/test_app_browser.py -----------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "CRONACA_", "CHROMA_", "GRADIO_"))}
    env["CRONACA_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_app(home: Path, log_path: Path, timeout: float = 420):
    """Start ``python app.py`` on a free port; returns (process, base url) once it serves."""
    port = free_port()
    log = open(log_path, "w")  # noqa: SIM115 - closed by stop_app
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT,
                            env=app_env(home), stdout=log, stderr=subprocess.STDOUT)
    proc._log = log  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.flush()
            pytest.fail(f"app.py exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "config", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        time.sleep(1)
    stop_app(proc)
    pytest.fail(f"app.py not ready after {timeout:g} s:\n{log_path.read_text()[-3000:]}")


def stop_app(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc._log.close()


# ---- fast: rendering ---------------------------------------------------------------------------
def _cit(n=1, quote="Il Milan vuole Ancelotti.", chunk="Prima. Il Milan vuole Ancelotti. Dopo."):
    return Citation(n=n, article_id="a1", title="<b>Titolo</b>", date="2024-11-01", source="Fonte",
                    url="javascript:alert(1)", chunk_id="c1", quote=quote, chunk_text=chunk)


def test_link_markers_escape_and_link():
    out = link_markers("La <script>x</script> Roma [1] e il Milan [1, 2] [7].", {1, 2}, 3)
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert '<a class="cite" href="#src-3-1">[1]</a>' in out
    assert '<a class="cite" href="#src-3-2">[2]</a>' in out
    assert "[7]" in out and "src-3-7" not in out


def test_highlight_all_quote_parts():
    chunk = "A uno. B <due>. C tre. D quattro."
    out = highlight(chunk, "B <due>. … D quattro.")
    assert out.count("<mark>") == 2
    assert "<mark>B &lt;due&gt;.</mark>" in out and "<mark>D quattro.</mark>" in out


def test_highlight_quote_not_in_chunk_still_shown():
    out = highlight("altro testo", "la citazione")
    assert "<mark>la citazione</mark>" in out


def test_sources_cards_escaped_and_anchored():
    html_ = sources_html([{"turn": 1, "question": "<q>", "citations": [_cit()]}])
    assert 'id="src-1-1"' in html_
    assert "&lt;b&gt;Titolo&lt;/b&gt;" in html_ and "<b>Titolo" not in html_
    assert "javascript:" not in html_  # only http(s) links become links
    assert "<mark>Il Milan vuole Ancelotti.</mark>" in html_


def test_answer_html_shows_rewritten_question_and_notice():
    ans = Answer(question="e la Juventus?", standalone_question="Chi vuole Ancelotti? Juventus", text="Nessuno [1].",
                 mode="extractive", model="extractive", citations=[_cit()], notice="Risposta estrattiva.")
    out = answer_html(ans, 2, asked="e la Juventus?")
    assert 'href="#src-2-1"' in out and "Domanda interpretata" in out and "Risposta estrattiva." in out
    assert "Domanda interpretata" not in answer_html(ans, 2, asked="Chi vuole Ancelotti? Juventus")


# ---- slow: the real app ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def running_app(sample_home, tmp_path_factory):
    """The app over a copy of the ingested sample (the first start is tested in tests/test_ui*.py)."""
    base = tmp_path_factory.mktemp("app-home")
    shutil.copytree(sample_home, base / "cronaca")
    proc, url = start_app(base / "cronaca", base / "app.log")
    yield url
    stop_app(proc)


def _answer_text(result) -> str:
    """The last assistant message of the chatbot output, as text."""
    chat = result[0]
    content = chat[-1]["content"]
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


@pytest.fixture(scope="module")
def ancelotti(running_app):
    from gradio_client import Client

    client = Client(running_app, verbose=False)
    return client.predict("Quali club vogliono Ancelotti?", "", "", "", "__tutte__", api_name="/ask")


@pytest.mark.slow
def test_chat_endpoint_answers_with_citations(ancelotti):
    answer = _answer_text(ancelotti)
    assert "Ancelotti" in answer, answer
    assert re.search(r"\[\d+\]", answer), answer
    assert 'href="#src-1-1"' in answer
    assert 'id="src-1-1"' in ancelotti[1]  # the sources panel has the card the marker links to
    assert "Non sta vivendo un periodo sereno Carlo Ancelotti" in ancelotti[1]


@pytest.mark.slow
def test_chat_endpoint_names_roma_and_milan(ancelotti):
    answer = _answer_text(ancelotti)
    assert "Roma" in answer and "Milan" in answer, answer


@pytest.mark.slow
def test_chat_endpoint_invalid_date_is_readable(running_app):
    from gradio_client import Client

    client = Client(running_app, verbose=False)
    result = client.predict("Chi allena la Roma?", "2024-13-45", "", "", "__tutte__", api_name="/ask")
    assert "non valida" in str(result) and "Traceback" not in str(result)


@pytest.mark.slow
def test_two_sessions_at_once_get_their_own_answers_and_history(running_app):
    """The queue serves both; gr.State keeps one user's conversation out of the other's."""
    from gradio_client import Client

    first, second = Client(running_app, verbose=False), Client(running_app, verbose=False)
    job_a = first.submit("Quali club vogliono Ancelotti?", "", "", "", "__tutte__", api_name="/ask")
    job_b = second.submit("Chi ha vinto lo scudetto 2024-25?", "", "", "", "__tutte__", api_name="/ask")
    chat_a, chat_b = job_a.result(timeout=300)[0], job_b.result(timeout=300)[0]
    text_a, text_b = str(chat_a), str(chat_b)
    assert "Quali club vogliono Ancelotti?" in text_a and "scudetto" not in text_a.split("Ancelotti?")[0]
    assert "Chi ha vinto lo scudetto" in text_b and "Quali club vogliono" not in text_b
    assert "Roma" in _answer_text([chat_a]) and "scudetto" in _answer_text([chat_b])
    # a follow-up in the second session builds on its own history only
    follow = second.predict("e la Juventus?", "", "", "", "__tutte__", api_name="/ask")[0]
    assert "Quali club vogliono" not in str(follow) and len(follow) == 4


def test_summary_html_links_markers_bolds_story_headings_and_escapes():
    from types import SimpleNamespace

    from rag import page

    summary = SimpleNamespace(text="Roma <b>x</b> (2025)\nRanieri torna [1]. Falso [7].\n\nSolo testo.",
                              citations=[_cit(1)], notice="estrattivo")
    html = page.summary_html(summary)
    assert "<b>Roma &lt;b&gt;x&lt;/b&gt; (2025)</b>" in html
    assert '<a class="cite" href="#src-s-1" title="' in html and "[7]" in html and "#src-s-7" not in html
    assert "<p>Solo testo.</p>" in html and "estrattivo" in html
    assert 'id="src-s-1"' in page.summary_sources_html(summary)
