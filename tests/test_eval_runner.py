"""The runner's wiring, against a scripted stand-in for ``Library``: what each case sends to
``search`` and ``ask`` (filters, as_of, history), what a follow-up searches, and how the new
metrics are aggregated overall, per split and per type."""

from __future__ import annotations

from typing import Any

from eval import runner
from eval.sets import Case, Current, EvalSet
from rag.models import Answer, Citation, Hit
from rag.retrieval import Retrieval

ARTICLES = {"roma": "roma.md", "real": "real.md", "altro": "altro.md"}


class ScriptedLibrary:
    """Retrieves the article whose key word is in the query first; answers from a script, and
    rewrites a follow-up by prefixing the last user turn (like a rewriter that sees user turns)."""

    def __init__(self, replies: dict[str, tuple[str, bool]]) -> None:
        self.replies = replies
        self.searches: list[tuple[str, str, dict[str, Any]]] = []
        self.asks: list[tuple[str, dict[str, Any]]] = []

    def search(self, question: str, *, k: int | None = None, mode: str = "hybrid", **filters: Any) -> Retrieval:
        self.searches.append((question, mode, filters))
        order = sorted(ARTICLES, key=lambda w: w not in question.lower())
        return Retrieval(hits=[Hit(chunk_id=f"{w}:0", article_id=w, text=w, score=1.0, path=f"/d/{ARTICLES[w]}")
                               for w in order])

    def ask(self, question: str, **kwargs: Any) -> Answer:
        self.asks.append((question, kwargs))
        history = kwargs.get("history") or []
        standalone = f"{history[-1]['content']} {question}" if history else question
        text, declined = self.replies[question]
        quotes = [] if declined else [Citation(n=1, article_id="roma", title="", date="", source="", url="",
                                                chunk_id="roma:0", quote=text.split(" [")[0])]
        return Answer(question=question, text=text, mode="extractive", model="", citations=quotes,
                      declined=declined, standalone_question=standalone, timings_ms={"total": 5.0})


CASES = [
    Case(id="c1", question="Chi allena la Roma?", answers=["Gasperini"], relevant=["roma.md"], type="current",
         current=Current(answers=["Gasperini"], superseded=["Ranieri"]), as_of="2025-06-20", split="dev",
         filters={"source": "Gazzetta"}),
    Case(id="f1", question="e chi lo ha sostituito?", answers=["Xabi Alonso"], relevant=["real.md"],
         type="followup", history=["Ancelotti lascia il Real?"], resolved=["Ancelotti", "Real"], split="held"),
    Case(id="u1", question="Chi ha vinto il Tour?", unanswerable=True, type="unanswerable", split="held"),
]
REPLIES = {
    "Chi allena la Roma?": ("Ranieri ha lasciato [1]. Gasperini allena la Roma [1]. Gasperini allena la Roma.", False),
    "e chi lo ha sostituito?": ("Al Real arriva Xabi Alonso [1].", False),
    "Chi ha vinto il Tour?": ("Non lo so.", True),
}


def test_cases_send_filters_as_of_and_history():
    lib = ScriptedLibrary(REPLIES)
    result = runner.run(lib, EvalSet("t", CASES, 3), runner.RunSettings(modes=["hybrid", "bm25"], k=5))
    asks = dict(lib.asks)
    assert asks["Chi allena la Roma?"]["as_of"] == "2025-06-20" and asks["Chi allena la Roma?"]["source"] == "Gazzetta"
    assert asks["e chi lo ha sostituito?"]["history"] == [{"role": "user", "content": "Ancelotti lascia il Real?"}]
    assert len(lib.asks) == 3  # a follow-up is asked once: the same answer gives the rewrite and is scored
    searched = {(q, mode): f for q, mode, f in lib.searches}
    assert searched[("Chi allena la Roma?", "bm25")] == {"source": "Gazzetta", "as_of": "2025-06-20"}
    # the follow-up is searched as its standalone rewrite, in every mode
    rewrite = "Ancelotti lascia il Real? e chi lo ha sostituito?"
    assert (rewrite, "hybrid") in searched and (rewrite, "bm25") in searched
    assert not any(q == "e chi lo ha sostituito?" for q, _, _ in lib.searches)
    row = {r["id"]: r for r in result.cases}["f1"]
    assert row["modes"]["hybrid"]["query"] == rewrite and row["modes"]["hybrid"]["hitk"][0] == 1.0
    assert row["history"] == ["Ancelotti lascia il Real?"] and row["split"] == "held"


def test_new_metrics_aggregate_overall_per_split_and_per_type():
    lib = ScriptedLibrary(REPLIES)
    result = runner.run(lib, EvalSet("t", CASES, 3), runner.RunSettings(modes=["hybrid", "bm25"], k=5))
    hybrid = result.aggregate["hybrid"]
    assert hybrid["answer_contains"] == 1.0
    assert hybrid["lead_contains"] == 0.5  # the Roma answer opens with Ranieri
    assert hybrid["current_correct"] == 0.0  # ... the superseded coach, so it is not "current"
    assert hybrid["followup_resolved"] == 1.0
    assert hybrid["dup_sentences_total"] == 1 and hybrid["dup_sentences"] == 1 / 3
    assert hybrid["abstain_correct"] == 1.0 and hybrid["abstain_wrong"] == 0.0
    assert "answer_contains" not in result.aggregate["bm25"]  # answers are scored in the first mode only
    assert set(result.splits) == {"dev", "held"} and set(result.splits["dev"]) == {"hybrid", "bm25"}
    assert result.splits["dev"]["hybrid"]["current_correct"] == 0.0
    assert result.splits["held"]["hybrid"]["lead_contains"] == 1.0
    assert "current_correct" not in result.splits["held"]["hybrid"]
    assert result.by_type["current"] == {"cases": 1, "hit@5": 1.0, "answer_contains": 1.0, "lead_contains": 0.0,
                                         "current_correct": 0.0, "abstain_wrong": 0.0, "false_conflict": 0.0}
    assert result.by_type["unanswerable"]["abstain_correct"] == 1.0


def test_without_answers_a_followup_is_still_searched_as_rewritten():
    lib = ScriptedLibrary(REPLIES)
    result = runner.run(lib, EvalSet("t", CASES[1:2], 1), runner.RunSettings(modes=["hybrid"], answers=False))
    assert [q for q, _, _ in lib.searches] == ["Ancelotti lascia il Real? e chi lo ha sostituito?"]
    assert "answer_contains" not in result.aggregate["hybrid"] and result.by_type == {}


def test_a_set_without_splits_or_types_reports_neither():
    lib = ScriptedLibrary(REPLIES)
    plain = [Case(id="p", question="Chi allena la Roma?", answers=["Gasperini"], relevant=["roma.md"])]
    result = runner.run(lib, EvalSet("t", plain, 1), runner.RunSettings(modes=["hybrid"]))
    assert result.splits == {} and result.by_type == {}
    assert lib.asks[0][1].keys() == {"k", "answerer", "retrieval_mode"}


def test_compare_shows_every_metric_and_which_way_is_better():
    from rich.console import Console

    from eval import report

    def run(contains: float, dups: int, held: float) -> dict[str, Any]:
        agg = {"hybrid": {"hit@5": 0.9, "answer_contains": contains, "lead_contains": 0.4,
                          "dup_sentences": dups / 10, "dup_sentences_total": dups, "answer_latency_p50_ms": 900.0}}
        return {"aggregate": agg, "splits": {"held": {"hybrid": {"answer_contains": held}}},
                "by_type": {"current": {"cases": 3, "answer_contains": contains}}}

    console = Console(record=True, width=200)
    report.compare(run(0.5, 4, 0.2), run(0.7, 0, 0.1), console)
    out = console.export_text()
    for title in ("hybrid: A → B", "hybrid held: A → B", "by type (hybrid)"):
        assert title in out, title
    for name in ("answer_contains", "lead_contains", "dup_sentences", "dup_sentences_total"):
        assert f"│ {name} " in out, name
    assert report._delta("answer_contains", 0.5, 0.7).startswith("[green]+0.200")
    assert report._delta("dup_sentences_total", 4, 0).startswith("[green]-4")
    assert report._delta("dup_sentences", 0.0, 0.3).startswith("[red]+0.300")
    assert report._delta("abstain_wrong", 0.1, 0.2).startswith("[red]")
    assert report._delta("answer_latency_p50_ms", 900.0, 700.0) == "-200"  # latencies are not judged
    assert report._delta("hit@5", 0.9, 0.9) == "0.000"


def test_a_set_with_halves_gets_a_decline_curve_for_each_half():
    confidence = {"Chi allena la Roma?": 0.9, "e chi lo ha sostituito?": 0.3, "Chi ha vinto il Tour?": 0.1}

    class Confident(ScriptedLibrary):
        def ask(self, question: str, **kwargs: Any) -> Answer:
            ans = super().ask(question, **kwargs)
            ans.confidence = confidence[question]
            return ans

    result = runner.run(Confident(REPLIES), EvalSet("t", CASES, 3), runner.RunSettings(modes=["hybrid"], k=5))
    halves = result.extra["decline_curve_by_split"]
    assert set(halves) == {"dev", "held"}
    assert (halves["dev"]["answerable"], halves["dev"]["unanswerable"]) == (1, 0)
    held = {p["threshold"]: p for p in halves["held"]["points"]}
    assert (halves["held"]["answerable"], halves["held"]["unanswerable"]) == (1, 1)
    assert held[0.2] == {"threshold": 0.2, "declined": 1.0, "wrongly_declined": 0.0}
    assert held[0.5] == {"threshold": 0.5, "declined": 1.0, "wrongly_declined": 1.0}
    assert result.extra["decline_curve"]["answerable"] == 2  # and the whole set's, as before
