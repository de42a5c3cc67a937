"""Same-story scores and grouping: fast with the hash embedder, one slow check with e5."""

from __future__ import annotations

import numpy as np
import pytest

from rag.models import StoredArticle
from rag.parsing import parse_file
from rag.stories import (
    DEFAULT_THRESHOLD,
    Story,
    dense_part,
    group_stories,
    jaccard,
    lexical_part,
    names,
    same_story_score,
)
from tests.conftest import SAMPLE, shared_or_skip

A = ("Ancelotti lascia il Real Madrid: sarà il ct del Brasile. La federazione brasiliana ha scelto "
     "Carlo Ancelotti come commissario tecnico in vista del Mondiale 2026.")
B = ("Il Brasile si affida ad Ancelotti: il tecnico italiano lascerà il Real Madrid a fine stagione "
     "e guiderà la Seleção verso il Mondiale 2026, ha annunciato la federazione brasiliana.")
C = ("Il Napoli è campione d'Italia: la squadra di Conte batte il Cagliari 2-0 al Maradona e vince "
     "il quarto scudetto della sua storia con un punto sull'Inter.")


def _sample(name: str) -> StoredArticle:
    art = parse_file(SAMPLE / name, 10_000_000).articles[0]
    return StoredArticle(id=art.id, title=art.title, text=art.text, date=art.date)


def test_parts_are_bounded():
    assert dense_part(0.5) == 0.0 and dense_part(0.99) == 1.0
    assert 0.0 < dense_part(0.85) < 1.0
    assert jaccard(set(), {"a"}) == 0.0
    assert 0.0 <= lexical_part(A, C) < lexical_part(A, B) <= 1.0
    assert {"ancelotti", "brasile", "real", "madrid"} <= names(A)


def test_score_orders_same_story_above_unrelated(hash_embedder):
    same = same_story_score(A, B, hash_embedder)
    other = same_story_score(A, C, hash_embedder)
    assert 0.0 <= other < same <= 1.0
    assert same_story_score(A, A, hash_embedder) == pytest.approx(1.0, abs=1e-5)
    assert same_story_score(A, B, cosine=0.9) > same_story_score(A, B, cosine=0.7)
    with pytest.raises(ValueError):
        same_story_score(A, B)


def test_group_stories_components_and_order(hash_embedder):
    arts = [
        StoredArticle(id="a", title="Ancelotti ct del Brasile", text=A, date="2025-05-12"),
        StoredArticle(id="b", title="Il Brasile si affida ad Ancelotti", text=B, date="2025-05-13"),
        StoredArticle(id="c", title="Napoli campione", text=C, date="2025-05-24"),
    ]
    vecs = hash_embedder.embed_passages([f"{a.title}\n{a.text}" for a in arts])
    # a threshold between the two scores puts a and b together, c alone
    ab = same_story_score(A, B, cosine=float(vecs[0] @ vecs[1]))
    stories = group_stories(arts, vecs, threshold=ab - 1e-3)
    assert [sorted(s.article_ids) for s in stories] == [["c"], ["a", "b"]]  # newest story first
    pair = stories[1]
    assert isinstance(pair, Story)
    assert pair.article_ids == ["b", "a"]  # newest article first
    assert (pair.first_date, pair.last_date) == ("2025-05-12", "2025-05-13")
    assert pair.title in {"Ancelotti ct del Brasile", "Il Brasile si affida ad Ancelotti"}
    assert pair.to_dict()["article_ids"] == ["b", "a"]
    # vectors by id work too, and an impossible threshold keeps every article apart
    by_id = {a.id: v for a, v in zip(arts, vecs)}
    assert len(group_stories(arts, by_id, threshold=1.01)) == 3
    assert group_stories([], np.zeros((0, 4))) == []


def test_default_threshold_is_sane():
    assert 0.3 < DEFAULT_THRESHOLD < 0.9


@pytest.mark.slow
def test_near_duplicates_in_sample_group_with_e5():
    from rag.config import Config
    from rag.embeddings import make_embedder, passage_text

    arts = [_sample("2025-05_ancelotti-brasile.md"), _sample("2025-05_ancelotti-ct-brasile.md"),
            _sample("2025-05_xabi-alonso-real.md"), _sample("2025-05_napoli-scudetto.md")]
    emb = make_embedder(Config.load(env={}))
    vecs = emb.embed_passages([passage_text(a.title, a.text) for a in arts])
    stories = group_stories(arts, vecs)
    groups = sorted(sorted(s.article_ids) for s in stories)
    assert sorted([arts[0].id, arts[1].id]) in groups
    assert [arts[2].id] in groups and [arts[3].id] in groups
    # the score itself, from raw text
    assert same_story_score(arts[0].text, arts[1].text, emb) >= DEFAULT_THRESHOLD
    assert same_story_score(arts[0].text, arts[2].text, emb) < DEFAULT_THRESHOLD


@pytest.mark.slow
def test_pairs_dev_scores_separate_same_story():
    """On (a slice of) the labelled Italian news pairs, same-story pairs score higher than
    unrelated ones, and the shipped threshold keeps most of its merges right. The full-file
    numbers come from ``python -m eval pairs`` (the slice keeps this test to a few minutes)."""
    from eval.pairs import load_pairs, metrics, scores_for
    from rag.embeddings import E5Embedder

    path = shared_or_skip("italian-news-pairs/pairs_dev.jsonl")
    rows = load_pairs(path)[:240]
    scores = scores_for(rows, E5Embedder())
    labels = np.array([int(r["label"]) for r in rows])
    assert scores[labels == 3].mean() > scores[labels == 2].mean() > scores[labels == 0].mean()
    m = metrics(scores, labels == 3, 0.30)
    assert m["f1"] >= 0.4, m
    m = metrics(scores, labels == 3, DEFAULT_THRESHOLD)
    assert m["fp"] <= m["tp"] + 1, m
