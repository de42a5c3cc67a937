"""Answers carry time: dated claims in both answerers, the newest state first, answers as of a date."""

from __future__ import annotations

import re

from tests.support.stub_openai import StubOpenAI, reply

QUESTION = "Quali club vogliono Ancelotti?"


def test_llm_prompt_carries_dates_and_dated_citations_survive_validation(hash_sample):
    with StubOpenAI() as stub:
        lib = hash_sample(openai_base_url=stub.base_url, openai_api_key="k", llm_model="stub")
        stub.script([reply("A novembre 2024 si parlava di Roma e Milan [1]; il 12 maggio 2025 Ancelotti è "
                           "diventato ct del Brasile [2]. Fonte inventata [9].")])
        answer = lib.ask(QUESTION, k=5)
        request = stub.chat_requests[-1].json
    system, user = request["messages"][0]["content"], request["messages"][1]["content"]
    assert "più recente" in system and "data della sua fonte" in system  # the instruction to date and order
    dates = re.findall(r'data="([^"]+)"', user)
    assert dates and all(d == "?" or re.search(r"(19|20)\d\d", d) for d in dates)
    assert any(re.fullmatch(r"(\d{1,2} )?[a-z]+ 20\d\d", d) for d in dates)  # written out: "12 maggio 2025"
    assert "novembre 2024" in answer.text and "12 maggio 2025" in answer.text
    assert "[9]" not in answer.text and [c.n for c in answer.citations] == [1, 2]
    assert all(c.date for c in answer.citations)


def test_as_of_keeps_later_articles_out_of_the_prompt(hash_sample):
    with StubOpenAI() as stub:
        lib = hash_sample(openai_base_url=stub.base_url, openai_api_key="k", llm_model="stub")
        stub.script([reply("Roma e Milan [1].")])
        lib.ask("Dove allena Ancelotti?", as_of="2024-12-31", k=5)
        user = stub.chat_requests[-1].json["messages"][1]["content"]
    years = re.findall(r'data="[^"]*?(20\d\d)"', user)
    assert years and all(int(y) <= 2024 for y in years)


def test_extractive_claims_are_dated_in_the_question_language(hash_sample, monkeypatch):
    from rag import extractive

    monkeypatch.setattr(extractive, "threshold", lambda: 0.0)  # the rules, not the fitted e5 model
    lib = hash_sample()
    italian = lib.ask("Chi ha sostituito Juric sulla panchina della Roma?", answerer="extractive")
    english = lib.ask("Who replaced Juric at Roma?", answerer="extractive")
    for answer, month in ((italian, "novembre"), (english, "November")):
        assert not answer.declined
        claims = re.findall(r"\(([^()]*\d{4})\) (?:\[\d+\])+", answer.text)
        assert claims and all(re.search(r"\b(19|20)\d\d$", c) for c in claims)
        assert month in answer.text
