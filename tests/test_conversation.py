"""Follow-up rewriting: the deterministic rule, and the LLM path with a fake model."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rag.conversation import is_elliptical, standalone_question
from rag.llm import LLMError
from rag.resources import prompts_dir

Q = "Quali club vogliono Ancelotti?"
HISTORY = [(Q, "Roma e Milan [1].")]


@pytest.mark.parametrize("message, expected", [
    ("e la Juventus?", "Quali club vogliono Ancelotti? Juventus"),
    ("E il Napoli?", "Quali club vogliono Ancelotti? Napoli"),
    ("ed il Real Madrid?", "Quali club vogliono Ancelotti? Real Madrid"),
    ("e l'Inter?", "Quali club vogliono Ancelotti? Inter"),
    ("invece il Brasile?", "Quali club vogliono Ancelotti? Brasile"),
    ("what about Chelsea?", "Quali club vogliono Ancelotti? Chelsea"),
    ("and Arsenal?", "Quali club vogliono Ancelotti? Arsenal"),
    ("Juventus?", "Quali club vogliono Ancelotti? Juventus"),
    ("nel 2024", "Quali club vogliono Ancelotti? nel 2024"),
])
def test_elliptical_follow_up_joins_previous_question(message, expected):
    assert standalone_question(HISTORY, message) == expected


@pytest.mark.parametrize("message", [
    "Chi ha sostituito Juric sulla panchina della Roma?",
    "Quando è stato esonerato De Rossi?",
    "Chi allena il Milan?",
    "Who coaches Brazil?",
])
def test_full_question_unchanged(message):
    assert standalone_question(HISTORY, message) == message


def test_no_history_unchanged():
    assert standalone_question([], "e la Juventus?") == "e la Juventus?"


def test_chain_of_follow_ups_uses_last_full_question():
    history = HISTORY + [("e la Juventus?", "Non lo so.")]
    assert standalone_question(history, "e il Napoli?") == f"{Q} Napoli"


def test_previous_question_without_question_mark():
    assert standalone_question([("Chi vuole Ancelotti", "…")], "e la Roma") == "Chi vuole Ancelotti? Roma"


def test_is_elliptical():
    assert is_elliptical("e la Juventus?")
    assert is_elliptical("Milan?")
    assert not is_elliptical("Chi allena la Roma?")
    assert not is_elliptical("Cos'è successo alla Roma?")
    assert not is_elliptical("")
    # short, but a subject and its verb: a question of its own, kept as asked
    assert is_elliptical("la Juventus adesso?") and is_elliptical("Roma e Milan?")
    for own in ("Ancelotti allenerà la Roma?", "Il Napoli ha vinto?", "Conte resta?"):
        assert not is_elliptical(own), own
        assert standalone_question(HISTORY, own) == own


class FakeLLM:
    def __init__(self, reply=None, error=None):
        self.config = SimpleNamespace(prompts_dir=prompts_dir())
        self.reply, self.error, self.messages = reply, error, None

    def complete(self, messages, max_tokens=None, usage=None):
        self.messages = messages
        if self.error:
            raise self.error
        return self.reply


def test_llm_rewrite_used():
    llm = FakeLLM(reply='"La Juventus vuole Ancelotti?"\n')
    assert standalone_question(HISTORY, "e la Juventus?", llm=llm) == "La Juventus vuole Ancelotti?"
    assert llm.messages[0]["role"] == "system"
    assert "domanda autonoma" in llm.messages[0]["content"]  # the Italian prompt for an Italian message
    assert Q in llm.messages[1]["content"] and "e la Juventus?" in llm.messages[1]["content"]


def test_llm_failure_falls_back_to_rule():
    llm = FakeLLM(error=LLMError("down"))
    assert standalone_question(HISTORY, "e la Juventus?", llm=llm) == f"{Q} Juventus"


def test_llm_empty_reply_falls_back_to_rule():
    assert standalone_question(HISTORY, "e la Juventus?", llm=FakeLLM(reply="  ")) == f"{Q} Juventus"


def test_llm_not_called_without_history():
    llm = FakeLLM(error=AssertionError("must not be called"))
    assert standalone_question([], Q, llm=llm) == Q


@pytest.mark.parametrize("history, message, expected", [
    # a pronoun takes the name of the previous turn
    (["Dove andrà Mourinho?"], "e chi lo ha sostituito al Fenerbahce?", "Chi ha sostituito Mourinho al Fenerbahce?"),
    (["Which club did Osimhen join?"], "did he score on his debut?", "Did Osimhen score on his debut?"),
    (["Where did Pioli go after Milan?"], "what was his first result?", "What was Pioli's first result? (Milan)"),
    # an elliptical name replaces the previous name of its kind (a club for a club)
    (["Chi allena la Lazio?"], "e il Torino?", "Chi allena il Torino?"),
    (["Who's the Lazio captain?"], "what about Torino?", "Who's the Torino captain?"),
    # a follow-up that names nothing gets the previous topic
    (["Com'è finito il derby di Milano?"], "chi ha segnato?", "Chi ha segnato? (il derby di Milano)"),
    (["Osimhen dove gioca adesso?"], "quando è successo?", "Quando è successo? (Osimhen)"),
])
def test_rewrite_carries_the_entity_of_the_previous_turn(history, message, expected):
    assert standalone_question([(h, "") for h in history], message) == expected


def test_follow_up_that_names_its_subject_is_its_own_question():
    history = [("Com'è finito il derby di Milano?", "")]
    assert standalone_question(history, "e l'allenatore della Lazio dove va?") == "L'allenatore della Lazio dove va?"


class _NoCalls:
    """An LLM that must not be asked."""

    def complete(self, *args, **kwargs):
        raise AssertionError("the model was asked to rewrite a question that stands alone")


def test_a_follow_up_that_stands_alone_is_not_sent_to_the_model():
    from rag.conversation import standalone_question, stands_alone

    history = [("Quali club vogliono Ancelotti?", "Roma e Milan [1].")]
    for message in ("Chi allena la Roma?", "Ancelotti allenerà la Roma?", "Who coaches Brazil?"):
        assert stands_alone(history, message), message
        assert standalone_question(history, message, llm=_NoCalls()) == message
    # these need the conversation: a pronoun, an opening "e", an ellipsis, no name at all
    for message in ("e chi lo ha sostituito al Real Madrid?", "E il Milan?", "Quando è successo?",
                    "Lo ha confermato il Real Madrid?"):
        assert not stands_alone(history, message), message
