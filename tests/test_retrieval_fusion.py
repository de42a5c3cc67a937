"""The fusion functions on a handful of numbers: normalisation edge cases, the convex mix, RRF,
and the recency tie-break that may only reorder near-ties."""

from __future__ import annotations

import pytest

from rag.fusion import article_rrf, best_per_article, convex, minmax, ranked, recency_bonus, rrf


def test_minmax_spans_zero_to_one():
    assert minmax({"a": 0.9, "b": 0.8, "c": 0.7}) == pytest.approx({"a": 1.0, "b": 0.5, "c": 0.0})


def test_minmax_empty_single_and_ties():
    assert minmax({}) == {}
    assert minmax({"only": 12.5}) == {"only": 1.0}  # nothing says the single candidate is worse
    assert minmax({"a": 3.0, "b": 3.0}) == {"a": 1.0, "b": 1.0}
    assert minmax({"a": 3.0, "b": 3.0, "c": 1.0}) == {"a": 1.0, "b": 1.0, "c": 0.0}


def test_convex_mixes_normalised_scores():
    dense = {"a": 0.90, "b": 0.85, "c": 0.80}  # cosines in a narrow band
    bm25 = {"b": 14.0, "c": 7.0, "d": 0.0}
    fused = convex(dense, bm25, 0.5)
    assert fused == pytest.approx({"a": 0.5, "b": 0.75, "c": 0.25, "d": 0.0})
    assert ranked(fused) == ["b", "a", "c", "d"]


def test_convex_weight_moves_towards_one_side():
    dense, bm25 = {"a": 0.9, "b": 0.8}, {"a": 1.0, "b": 9.0}
    assert ranked(convex(dense, bm25, 0.8)) == ["a", "b"]
    assert ranked(convex(dense, bm25, 0.2)) == ["b", "a"]
    assert convex(dense, bm25, 1.0) == pytest.approx(minmax(dense))
    assert convex(dense, bm25, 0.0) == pytest.approx(minmax(bm25))


def test_convex_with_one_retriever_empty_keeps_its_order():
    dense = {"a": 0.91, "b": 0.88, "c": 0.75}
    assert ranked(convex(dense, {}, 0.5)) == ["a", "b", "c"]
    assert ranked(convex({}, {"x": 2.0, "y": 5.0}, 0.5)) == ["y", "x"]
    assert convex({}, {}, 0.5) == {}


def test_convex_single_candidate_and_ties():
    assert convex({"a": 0.8}, {"a": 3.0}, 0.5) == {"a": 1.0}
    # a tie on both sides stays a tie, in a stable order: dense candidates first, as given
    fused = convex({"b": 0.8, "a": 0.8}, {"c": 2.0, "a": 2.0, "b": 2.0}, 0.5)
    assert fused["a"] == fused["b"] == 1.0
    assert ranked(fused) == ["b", "a", "c"]


def test_best_per_article_keeps_each_articles_best_chunk():
    scores = {"a#0": 0.2, "a#1": 0.7, "b#0": 0.5, "loose": 0.1}
    article_of = {"a#0": "a", "a#1": "a", "b#0": "b"}
    assert best_per_article(scores, article_of) == {"a": 0.7, "b": 0.5, "loose": 0.1}


def test_rrf_and_article_rrf():
    assert rrf({"x": ["a", "b"], "y": ["b"]}, k=10) == pytest.approx({"a": 1 / 11, "b": 1 / 12 + 1 / 11})
    article_of = {"a#0": "a", "a#1": "a", "b#0": "b"}
    # a long article with many chunks does not collect more than its best rank
    scores = article_rrf({"x": ["a#0", "a#1", "b#0"]}, article_of, k=10)
    assert scores == pytest.approx({"a": 1 / 11, "b": 1 / 12})


def test_recency_bonus_breaks_near_ties_for_the_newest():
    scores = {"old": 0.80, "new": 0.75}
    days = {"old": 739000, "new": 739200}
    assert ranked(recency_bonus(scores, days, 0.1)) == ["new", "old"]


def test_recency_bonus_never_reorders_clear_leads():
    scores = {"relevant_old": 0.90, "middle": 0.70, "recent_offtopic": 0.20}
    days = {"relevant_old": 738000, "middle": 738500, "recent_offtopic": 739000}
    weight = 0.15
    after = recency_bonus(scores, days, weight)
    assert ranked(after) == ranked(scores)
    for key in scores:  # bounded: nobody gains more than the weight
        assert 0.0 <= after[key] - scores[key] <= weight + 1e-12
    # the property in general: pairs further apart than the weight keep their order
    for a in scores:
        for b in scores:
            if scores[a] - scores[b] > weight:
                assert after[a] > after[b]


def test_recency_bonus_needs_dates_and_a_weight():
    scores = {"a": 0.5, "b": 0.4}
    assert recency_bonus(scores, {}, 0.3) == scores  # undated: nothing to go by
    assert recency_bonus(scores, {"a": 5, "b": 5}, 0.3) == scores  # one date: nothing to break
    assert recency_bonus(scores, {"a": 1, "b": 9}, 0.0) == scores
    mixed = recency_bonus({"dated": 0.5, "undated": 0.5, "older": 0.5}, {"dated": 10, "older": 5}, 0.2)
    assert mixed == pytest.approx({"dated": 0.7, "undated": 0.5, "older": 0.5})
