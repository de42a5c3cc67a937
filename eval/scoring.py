"""One answer scored against its case: every answer-side metric of a run.

Kept apart from the runner so the rules (what a declined answer counts as, which cases a
metric applies to) can be tested with hand-made ``Answer`` objects, without a store.
A metric that does not apply to a case is absent from its dict, not 0, so means are taken
over the cases it applies to.
"""

from __future__ import annotations

from eval import metrics as M
from eval.sets import Case
from rag.models import Answer


def score_answer(case: Case, ans: Answer) -> dict[str, float]:
    """Declined answers count as not containing, not leading and not current."""
    m: dict[str, float | None] = {}
    text = "" if ans.declined else ans.text
    golds, required = case.answers, case.must_include
    if case.unanswerable:
        m["abstain_correct"] = float(ans.declined)
    else:
        m["abstain_wrong"] = float(ans.declined)
        if golds or required:
            found = (not golds or M.contains(text, golds)) and M.contains_all(text, required)
            m["answer_contains"] = float(bool(text) and found)
        if golds:
            m["lead_contains"] = float(M.lead_contains(text, golds, ans.lang))
            m["token_f1"] = M.token_f1(text, golds)
            m["exact_match"] = float(M.exact_match(text, golds))
        if case.current is not None:
            m["current_correct"] = float(M.current_correct(text, case.current.answers, case.current.superseded,
                                                           ans.lang))
    if case.history and case.resolved:
        m["followup_resolved"] = float(M.contains_all(ans.standalone_question or ans.question, case.resolved))
    if case.conflict:
        sources = {c.n: c.source for c in ans.citations}
        m["conflict_reported"] = float(not ans.declined and M.conflict_reported(
            text, [(v.value, v.source) for v in case.conflict], sources, len(ans.conflicts)))
    elif not ans.declined and not case.unanswerable:
        m["false_conflict"] = float(bool(ans.conflicts))  # the gold says the sources agree
    m["dup_sentences"] = float(M.dup_sentences(ans.text, [c.quote for c in ans.citations], ans.lang))
    if not ans.declined:
        m["citations_resolve"] = M.citations_resolve(ans.text, [c.n for c in ans.citations])
        m["cited_sentences"] = M.cited_sentences(ans.text, ans.lang)
        if not case.unanswerable and golds and ans.citations:
            m["citation_precision"] = M.mean(
                float(M.contains(c.quote, golds) or M.contains(c.chunk_text, golds)) for c in ans.citations
            )
    return {k: v for k, v in m.items() if v is not None}
