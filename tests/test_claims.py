"""rag.claims: which facts two texts state, whether they agree, and how a disagreement is said;
and the Sora repro of issue 21 through the answerer, the digest, the CLI, the API and the LLM
prompt (fast: the hash embedder, a scripted OpenAI stub)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from rag import api, claims
from rag.models import Conflict, Hit, Version
from rag.retrieval import collapse
from tests.support.api_server import ServerThread
from tests.support.stub_openai import StubOpenAI, reply

SORA_3 = "L'incendio nella fabbrica di vernici di Sora ha causato 3 morti e 14 feriti."
SORA_9 = "L'incendio nella fabbrica di vernici di Sora ha causato 9 morti e 40 feriti."
QUESTION = "Quanti morti ha causato l'incendio nella fabbrica di Sora?"


# ---- facts and agreement -----------------------------------------------------------------------------


@pytest.mark.parametrize("a,b", [
    ("Tre i morti e 14 i feriti", "3 i morti e quattordici i feriti"),  # number words, both ways
    ("sono finiti nel fiume 1.500 litri di gasolio", "sono finiti nel fiume 1500 litri di gasolio"),
    ("stanziati 2,5 milioni di euro", "stanziati 2.500.000 euro"),
    ("Four climbers were rescued at 4,000 metres", "4 climbers were rescued at 4000 metres"),
    ("3 morti e 14 feriti", "3 morti"),  # an omission is no contradiction
    ("riaprirà il 10 ottobre", "Riaprirà il 10 ottobre, dopo otto mesi"),
    ("Gol di Mario Rossi al 90'", "Gol di Rossi al 90'"),  # one person, named shorter
])
def test_same_facts_said_differently_agree(a, b):
    assert claims.agree(a, b), claims.differences(a, b)


@pytest.mark.parametrize("a,b,kind,key", [
    (SORA_3, SORA_9, "number", "mort"),
    ("Allo sciopero ha aderito il 60% dei lavoratori", "Allo sciopero ha aderito l'85% dei lavoratori", "number", "%"),
    ("La Virtus ha battuto Venezia 85-80", "La Virtus ha battuto Venezia 85-78", "score", ""),
    ("Il ponte riaprirà il 15 settembre", "Il ponte riaprirà il 22 settembre", "date", ""),
    ("L'esplosione è avvenuta alle 15.30", "L'esplosione è avvenuta alle 16.30", "time", ""),
    ("Il nuovo prefetto è Mario Rossetti", "Il nuovo prefetto è Marco Ricciardi", "name", ""),
    ("i dispersi sono tre", "i dispersi sono cinque", "number", ""),
    ("danni per 2 milioni di euro", "danni per 5 milioni di euro", "number", "eur"),
])
def test_different_facts_differ(a, b, kind, key):
    diffs = claims.differences(a, b)
    assert diffs and (diffs[0].kind, diffs[0].key) == (kind, key), diffs
    assert not claims.agree(a, b)


def test_the_question_picks_the_disputed_fact():
    diffs = claims.differences(SORA_3, SORA_9)
    assert {d.key for d in diffs} == {"mort", "fer"}
    assert claims.relevant(diffs, claims.words("Quanti feriti?"))[0].key == "fer"


def test_the_sentence_orders_versions_by_time_and_says_which_is_later():
    c = Conflict("morti", "number", [Version("9", "Latina Oggi", "2025-07-21", [2]),
                                     Version("3", "Il Messaggero", "2025-07-20", [1])])
    c.versions.sort(key=lambda v: v.date)
    assert claims.sentence(c, "it") == ("Le fonti non concordano: secondo Il Messaggero (20 luglio 2025) i morti "
                                        "sono 3 [1]; secondo Latina Oggi (21 luglio 2025, più tardi) sono 9 [2].")
    assert claims.sentence(c, "en").startswith(
        "Sources disagree: according to Il Messaggero (20 July 2025), 3 morti [1]")
    anchor = claims.Said(SORA_9, "b", "Latina Oggi", "2025-07-21", [2])
    built = claims.conflict(anchor, [claims.Said(SORA_3, "a", "Il Messaggero", "2025-07-20", [1])], QUESTION)
    assert [(v.value, v.source) for v in built.versions] == [("3", "Il Messaggero"), ("9", "Latina Oggi")]


def test_reports_months_apart_are_no_conflict():
    anchor = claims.Said(SORA_9, "b", "Latina Oggi", "2025-07-20")
    assert claims.rivals(anchor, [claims.Said(SORA_3, "a", "Il Messaggero", "2025-07-20")])
    assert not claims.rivals(anchor, [claims.Said(SORA_3, "a", "Il Messaggero", "2025-02-01")])


def _hit(aid: str, text: str) -> Hit:
    return Hit(chunk_id=f"{aid}:0", article_id=aid, text=text, score=1.0, end=len(text))


def test_collapse_keeps_a_near_duplicate_only_when_it_disagrees():
    assert len(collapse([_hit("a", SORA_3), _hit("b", SORA_9)])) == 2
    assert len(collapse([_hit("a", SORA_3), _hit("b", SORA_3.replace("3 morti", "tre morti"))])) == 1


# ---- the Sora repro (issue 21) ----------------------------------------------------------------------


def _write(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, source, text in (("messaggero.md", "Il Messaggero", SORA_3), ("latina.md", "Latina Oggi", SORA_9)):
        (folder / name).write_text(f"---\ntitle: Incendio nella fabbrica di vernici di Sora\ndate: 2025-07-20\n"
                                   f"source: {source}\n"
                                   f"---\n{text}\n", encoding="utf-8")
    return folder


@pytest.fixture
def sora(make_lib, tmp_path):
    def factory(**overrides):
        lib = make_lib(**overrides)
        assert lib.ingest([_write(tmp_path / "sora")]).failed == 0
        return lib
    return factory


def _both_versions(got: dict) -> None:
    by_n = {c["n"]: c["source"] for c in got["citations"]}
    assert {c["article_id"] for c in got["citations"]} == {r["article_id"] for r in got["retrieved"]}
    assert len(got["retrieved"]) == 2  # neither report dropped by retrieval
    assert "Le fonti non concordano: secondo" in got["answer"]
    [conflict] = got["conflicts"]
    assert conflict["claim"] == "morti"
    assert {(v["value"], by_n[v["citations"][0]]) for v in conflict["versions"]} == {
        ("3", "Il Messaggero"), ("9", "Latina Oggi")}
    for v in conflict["versions"]:
        assert f"{v['source']} (20 luglio 2025)" in got["answer"]
        assert f"{v['value']} [{v['citations'][0]}]" in got["answer"]


def test_the_answer_gives_both_figures_with_their_outlets(sora):
    _both_versions(sora().ask(QUESTION).to_dict())


def test_cli_ask_and_digest_give_both_reports(sora, monkeypatch, capsys):
    from rag import cli

    lib = sora()
    monkeypatch.setattr(cli, "_library", lambda _args, **_: lib)
    assert cli.main(["ask", QUESTION, "--json"]) == 0
    _both_versions(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert cli.main(["digest", "--since", "2025-07-20", "--until", "2025-07-20"]) == 0
    out = capsys.readouterr().out
    assert "2 articoli" in out and "[1]" in out and "[2]" in out
    assert "Il Messaggero" in out and "Latina Oggi" in out and "Le fonti non concordano" in out


def test_a_digest_story_of_n_articles_carries_n_citations(sora):
    summary = sora().summarise(since="2025-07-20", until="2025-07-20")
    [story] = summary.stories
    assert len(story.article_ids) == 2
    assert {c.article_id for c in summary.citations} == set(story.article_ids)
    assert summary.conflicts and "3" in summary.text and "9" in summary.text


def test_the_api_returns_the_conflicts(sora):
    lib = sora()
    with ServerThread(api.create_app(lib)) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:
        got = c.post("/api/v1/ask", json={"question": QUESTION}).json()
    _both_versions(got)


def test_the_llm_prompt_gets_each_outlet_and_date_and_asks_for_every_version(sora):
    with StubOpenAI() as stub:
        stub.set_default(reply("Le fonti non concordano: secondo Latina Oggi i morti sono 9 [1]; secondo "
                               "Il Messaggero sono 3 [2]."))
        lib = sora(openai_base_url=stub.base_url, openai_api_key="x", llm_model="stub", llm_retries=0)
        ans = lib.ask(QUESTION, answerer="llm")
        messages = stub.chat_requests[-1].json["messages"]
    system, user = messages[0]["content"], messages[1]["content"]
    assert "Le fonti non concordano" in system and "testata" in system
    for outlet in ("Il Messaggero", "Latina Oggi"):
        assert f'testata="{outlet}"' in user
    assert user.count('data="20 luglio 2025"') == 2
    assert {v.value for c in ans.conflicts for v in c.versions} == {"3", "9"}


def test_the_page_marks_the_conflicting_citations(sora):
    from rag import page

    ans = sora().ask(QUESTION)
    html = page.answer_html(ans, turn=1, lang="it")
    assert html.count('class="cite disputed"') >= 2
    assert "Versioni diverse (morti): [1] [2]" in html
    assert 'class="cite disputed"' not in page.answer_html(ans.__class__(question="q", text="x [1]", mode="extractive",
                                                                          model="extractive", citations=ans.citations),
                                                          turn=2, lang="it")
