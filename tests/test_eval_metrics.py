"""The answer-shape metrics of the eval harness, on hand-made answers: each one is shown to score
1 (or count) where it should and 0 where it must, including declined answers."""

from __future__ import annotations

import pytest

from eval import metrics as M
from eval.scoring import score_answer
from eval.sets import Case, Current
from rag.models import Answer, Citation


def cite(n: int, quote: str, chunk_text: str = "") -> Citation:
    return Citation(n=n, article_id=f"a{n}", title="", date="2025-06-01", source="", url="",
                    chunk_id=f"a{n}:0", quote=quote, path=f"/data/a{n}.md", chunk_text=chunk_text or quote)


def answer(text: str, citations: list[Citation] | None = None, *, declined: bool = False, lang: str = "it",
           question: str = "q", standalone: str = "") -> Answer:
    return Answer(question=question, text=text, mode="extractive", model="", citations=citations or [],
                  lang=lang, declined=declined, standalone_question=standalone)


# --------------------------------------------------------------------------- text metrics


def test_sentences_strip_markers_and_split_after_them():
    text = "La Roma ha scelto Gasperini. [1] Prima c'era Ranieri [2]. [3]"
    assert [M.normalize(s) for s in M.sentences(text)] == ["roma ha scelto gasperini", "prima c era ranieri"]
    assert M.sentences("") == [] and M.sentences("[1] [2]") == []


def test_lead_contains_only_the_first_sentence():
    text = "Il Milan ha cambiato allenatore [1]. Ora in panchina c'è Conceição [1]."
    assert not M.lead_contains(text, ["Conceição"])
    assert M.lead_contains(text, ["Milan"])
    assert M.lead_contains("[1] Conceição allena il Milan.", ["conceicao"])  # a leading marker is not a sentence
    assert not M.lead_contains("", ["Milan"])


def test_contains_all_requires_every_item():
    assert M.contains_all("Hanno battuto il Real: Liverpool, Arsenal e Milan.", ["Liverpool", "Arsenal", "Milan"])
    assert not M.contains_all("Hanno battuto il Real: Liverpool e Arsenal.", ["Liverpool", "Arsenal", "Milan"])
    assert M.contains_all("anything", [])


def test_current_correct_first_mention_decides():
    current, old = ["Gasperini", "Gian Piero Gasperini"], ["Ranieri", "Juric", "De Rossi"]
    good = "Dalla prossima stagione allena Gasperini [1]. Ranieri resta come consulente [2]."
    led_by_old = "Ranieri ha guidato la Roma fino a maggio [1]. Poi è arrivato Gasperini [2]."
    same_sentence = "Gasperini prende il posto di Ranieri [1]."
    preamble = "La Roma ha un nuovo tecnico [1]. Juric era stato esonerato [2]. Ora c'è Gasperini [3]."
    assert M.current_correct(good, current, old)
    assert not M.current_correct(led_by_old, current, old)
    assert M.current_correct(same_sentence, current, old)
    assert not M.current_correct(preamble, current, old)  # the first state mentioned is a superseded one
    assert not M.current_correct("Ranieri e Juric [1].", current, old)  # never says the current state
    assert not M.current_correct("", current, old)


def test_dup_sentences_counts_repeated_copies_and_quotes():
    assert M.dup_sentences("Roma vince [1]. Milan perde [2].", ["Roma vince.", "Milan perde."]) == 0
    # the same sentence three times (markers and case differ): two extra copies
    assert M.dup_sentences("Roma vince [1]. roma vince! [2] Roma vince. Milan perde.") == 2
    # sentences differ, but two citations quote the same passage
    assert M.dup_sentences("Roma vince [1]. Milan perde [2].", ["Roma vince.", "roma vince"]) == 1
    assert M.dup_sentences("", ["", ""]) == 0


# --------------------------------------------------------------------------- one case scored


def test_answer_contains_needs_every_must_include():
    case = Case(id="c", question="Chi ha battuto il Real?", answers=["Liverpool", "Arsenal", "Milan"],
                must_include=["Liverpool", "Arsenal", "Milan"], relevant=["x.md"])
    partial = score_answer(case, answer("Il Real ha perso con Liverpool [1] e Arsenal [2].",
                                        [cite(1, "Liverpool"), cite(2, "Arsenal")]))
    full = score_answer(case, answer("Liverpool, Arsenal e Milan hanno battuto il Real [1].",
                                     [cite(1, "Liverpool, Arsenal e Milan")]))
    assert partial["answer_contains"] == 0.0 and partial["lead_contains"] == 1.0
    assert full["answer_contains"] == 1.0


def test_declined_counts_as_not_containing_leading_or_current():
    case = Case(id="c", question="Chi allena la Roma?", answers=["Gasperini"], relevant=["x.md"],
                current=Current(answers=["Gasperini"], superseded=["Ranieri"]))
    # a decline that happens to name the answer still scores 0
    m = score_answer(case, answer("Non trovo chi allena la Roma ora: Gasperini?", declined=True))
    assert m["answer_contains"] == 0.0 and m["lead_contains"] == 0.0 and m["current_correct"] == 0.0
    assert m["abstain_wrong"] == 1.0 and m["token_f1"] == 0.0
    assert "citations_resolve" not in m and "abstain_correct" not in m


def test_current_and_followup_scored_only_where_they_apply():
    plain = Case(id="p", question="Chi ha vinto?", answers=["Inter"], relevant=["x.md"])
    m = score_answer(plain, answer("Ha vinto l'Inter [1].", [cite(1, "Ha vinto l'Inter.")]))
    assert "current_correct" not in m and "followup_resolved" not in m
    expected = {"answer_contains": 1.0, "lead_contains": 1.0, "dup_sentences": 0.0, "citations_resolve": 1.0,
                "citation_precision": 1.0, "abstain_wrong": 0.0}
    assert {k: m.get(k) for k in expected} == expected


def test_followup_resolved_reads_the_standalone_question():
    case = Case(id="f", question="e chi lo ha sostituito?", answers=["Xabi Alonso"], relevant=["x.md"],
                history=["Ancelotti dove va?"], resolved=["Ancelotti", "Real Madrid"])
    good = answer("Xabi Alonso [1].", [cite(1, "Xabi Alonso")], declined=True,
                  standalone="Chi ha sostituito Ancelotti al Real Madrid?")
    half = answer("Xabi Alonso [1].", [cite(1, "Xabi Alonso")], standalone="Chi ha sostituito Ancelotti?")
    unchanged = answer("Xabi Alonso [1].", [cite(1, "Xabi Alonso")], question="e chi lo ha sostituito?")
    assert score_answer(case, good)["followup_resolved"] == 1.0  # the rewrite is scored even if declined
    assert score_answer(case, half)["followup_resolved"] == 0.0
    assert score_answer(case, unchanged)["followup_resolved"] == 0.0


def test_unanswerable_case_scores_abstention_and_duplicates():
    case = Case(id="u", question="Chi ha vinto il Tour?", unanswerable=True)
    answered = score_answer(case, answer("Pogačar [1]. Pogačar [2].", [cite(1, "Pogačar"), cite(2, "Pogačar")]))
    assert answered["abstain_correct"] == 0.0
    assert answered["dup_sentences"] == 2.0  # one repeated sentence + one repeated quote
    assert "answer_contains" not in answered and "lead_contains" not in answered
    assert score_answer(case, answer("Non ho trovato.", declined=True))["abstain_correct"] == 1.0


@pytest.mark.parametrize("lang", ["it", "en"])
def test_lead_contains_uses_the_answer_language(lang):
    case = Case(id="l", question="Who coaches Milan?", answers=["Conceição"], relevant=["x.md"])
    m = score_answer(case, answer("Il Milan ha un nuovo tecnico [1]. È Sérgio Conceição [1].",
                                  [cite(1, "Il Milan ha un nuovo tecnico. È Sérgio Conceição.")], lang=lang))
    assert m["answer_contains"] == 1.0 and m["lead_contains"] == 0.0
