"""Loading eval sets: the natural-question schema with its type checks, splits, and the SQuAD
abstention protocol (--foreign) with its own corpus."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from eval.sets import Current, choose_split, load_jsonl, load_set, load_squad, split_articles, squad_with_foreign

from .conftest import ROOT

NATURAL = ROOT / "eval" / "sets" / "natural.jsonl"


def _write(path: Path, *objs: dict) -> Path:
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs), encoding="utf-8")
    return path


GOOD = {"id": "x1", "question": "Chi allena la Roma?", "answers": ["Gasperini"], "relevant": ["r.md"],
        "unanswerable": False, "filters": {}}


def _first_160(cases):
    """The set as first written (n001-n160); later issues append cases with ids of their own."""
    return [c for c in cases if re.fullmatch(r"n\d{3}", c.id) and int(c.id[1:]) <= 160]


def test_natural_set_loads_every_field():
    every = load_jsonl(NATURAL)
    assert len({c.id for c in every}) == len(every)
    cases = _first_160(every)
    assert len(cases) == 160
    by_id = {c.id: c for c in cases}
    n103 = by_id["n103"]
    assert n103.type == "followup" and n103.lang == "it" and n103.split == "dev"
    assert n103.history == ["Quali club vogliono Ancelotti?"] and n103.resolved == ["Ancelotti"]
    assert n103.current == Current(answers=["Brasile"], date="2025-05-12", superseded=["Real Madrid"])
    assert by_id["n061"].as_of == "2024-12-31"
    assert by_id["n086"].must_include and by_id["n086"].type == "list"
    assert sum(c.split == "held" for c in cases) == 55  # as eval/sets/README.md says
    assert sum(c.current is not None for c in cases) == 31
    assert sum(c.split == "held" for c in every) == 71 and len(every) == 200
    assert all(c.unanswerable == (c.type == "unanswerable") for c in cases)


def test_sample_set_still_loads_without_the_new_keys():
    cases = load_jsonl(ROOT / "eval" / "sets" / "sample.jsonl")
    assert len(cases) == 64
    assert all(c.split == "" and c.current is None and not c.history for c in cases)
    assert any(c.filters for c in cases)


def test_unknown_keys_are_ignored(tmp_path):
    (case,) = load_jsonl(_write(tmp_path / "s.jsonl", GOOD | {"notes": {"free": "form"}, "difficulty": 3}))
    assert case.id == "x1" and case.answers == ["Gasperini"]


@pytest.mark.parametrize(("change", "message"), [
    ({"answers": "Gasperini"}, "'answers' must be a list of strings"),
    ({"must_include": ["Roma", 2]}, "'must_include' must be a list of strings"),
    ({"unanswerable": "no"}, "'unanswerable' must be true or false"),
    ({"lang": 1}, "'lang' must be a string"),
    ({"split": "test"}, "'split' must be one of dev, held"),
    ({"as_of": "31/13/2024"}, "'as_of'"),
    ({"current": ["Gasperini"]}, "'current' must be an object"),
    ({"current": {"answers": [], "superseded": ["Ranieri"]}}, "'current' needs a non-empty 'answers'"),
    ({"current": {"answers": ["Gasperini"], "superseded": "Ranieri"}}, "'superseded' must be a list"),
    ({"history": "Chi allena la Roma?"}, "'history' must be a list of strings"),
    ({"filters": {"since": 2024}}, "'since' must be a string"),
    ({"question": ""}, "case without a question"),
    ({"conflict": [{"value": "3", "source": "Il Messaggero"}]}, "'conflict' needs two or more versions"),
    ({"conflict": [{"value": "3"}, {"value": "9", "source": "Latina Oggi"}]}, "each with a 'value' and a 'source'"),
    ({"conflict": "3 contro 9"}, "'conflict' must be a list"),
    ({"corpus": 3}, "'corpus' must be a string"),
])
def test_type_errors_name_file_and_line(tmp_path, change, message):
    path = _write(tmp_path / "bad.jsonl", GOOD | {"id": "ok"}, GOOD | change)
    with pytest.raises(ValueError) as err:
        load_jsonl(path)
    assert f"{path}:2: " in str(err.value) and message in str(err.value)


def test_duplicate_ids_and_bad_json_are_reported_by_line(tmp_path):
    with pytest.raises(ValueError, match=r"dup\.jsonl:3: id 'x1' already used on line 1"):
        load_jsonl(_write(tmp_path / "dup.jsonl", GOOD, GOOD | {"id": "x2"}, GOOD))
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(GOOD) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.jsonl:2: not valid JSON"):
        load_jsonl(path)


def test_split_selection_happens_before_sampling():
    held = load_set(NATURAL, split="held")
    assert len(_first_160(held.cases)) == 55 and held.splits == ["held"]
    assert held.total == len(load_jsonl(NATURAL)) and all(c.split == "held" for c in held.cases)
    dev = load_set(NATURAL, split="dev", limit=10, seed=1)
    assert len(dev.cases) == 10 and all(c.split == "dev" for c in dev.cases)
    assert load_set(NATURAL).splits == ["dev", "held"]


def test_split_on_a_set_without_splits_is_an_error(tmp_path):
    cases = load_jsonl(ROOT / "eval" / "sets" / "sample.jsonl")
    assert choose_split(cases, "all", "sample") == cases
    with pytest.raises(ValueError, match="has no 'split' field"):
        choose_split(cases, "dev", "sample.jsonl")
    with pytest.raises(ValueError, match="unknown split"):
        choose_split(cases, "test", "sample.jsonl")


# --------------------------------------------------------------------------- SQuAD + foreign


def _squad(path: Path, n_articles: int = 6, paragraphs: int = 2, questions: int = 3) -> Path:
    data = {"data": [
        {"title": f"Art{a}", "paragraphs": [
            {"context": f"Paragrafo {p} dell'articolo {a}: testo unico numero {a * 100 + p}.",
             "qas": [{"id": f"q{a}-{p}-{q}", "question": f"Domanda {q} su {a}/{p}?",
                      "answers": [{"text": f"numero {a * 100 + p}", "answer_start": 0}]}
                     for q in range(questions)]}
            for p in range(paragraphs)]}
        for a in range(n_articles)]}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_articles_split_in_halves_by_seed():
    articles = [{"title": str(i)} for i in range(7)]
    inside, outside = split_articles(articles, seed=0)
    assert len(inside) == 4 and len(outside) == 3
    assert {a["title"] for a in inside} | {a["title"] for a in outside} == {str(i) for i in range(7)}
    assert split_articles(articles, seed=0) == (inside, outside)
    assert [a["title"] for a in inside] == sorted(a["title"] for a in inside)  # file order kept
    assert any(split_articles(articles, seed=s)[0] != inside for s in range(1, 5))


def test_foreign_questions_come_from_the_left_out_articles(tmp_path):
    path = _squad(tmp_path / "s.json")
    evalset = squad_with_foreign(path, n_foreign=5, limit=4, seed=0)
    inside = set(evalset.info["articles_in"])
    assert len(inside) == 3 and not inside & set(evalset.info["articles_out"])
    assert {r["title"] for r in evalset.records} == inside  # the corpus is the "in" half only
    answerable = [c for c in evalset.cases if not c.unanswerable]
    foreign = [c for c in evalset.cases if c.unanswerable]
    assert len(answerable) == 4 and len(foreign) == 5  # --limit counts the answerable ones
    assert all(c.relevant[0].split("#")[0] in inside for c in answerable)
    assert all(not c.relevant and not c.answers for c in foreign)
    assert all(c.id.split("-")[0][1:] not in {t[3:] for t in inside} for c in foreign)
    again = load_set(path, limit=4, seed=0, foreign=5)
    assert [c.id for c in again.cases] == [c.id for c in evalset.cases]


def test_foreign_never_draws_a_paragraph_that_is_in_the_corpus(tmp_path):
    path = _squad(tmp_path / "s.json", n_articles=4)
    data = json.loads(path.read_text())
    inside, outside = split_articles(data["data"], seed=0)
    # every left-out article repeats a corpus paragraph: its questions are answerable, not foreign
    for art in outside:
        art["paragraphs"][0]["context"] = inside[0]["paragraphs"][0]["context"]
    path.write_text(json.dumps(data))
    evalset = squad_with_foreign(path, n_foreign=6, limit=None, seed=0)
    assert evalset.info["foreign_pool"] == 6  # 2 articles x 1 paragraph x 3 questions remain
    with pytest.raises(ValueError, match="only 6 questions"):
        squad_with_foreign(path, n_foreign=7, limit=None, seed=0)


def test_foreign_corpus_gets_its_own_store_key(tmp_path):
    from eval import runner
    from rag.config import Config

    path = _squad(tmp_path / "s.json")
    _, full = load_squad(path)
    subset = load_set(path, foreign=2, seed=0).records
    config = Config.load(path=tmp_path / "none.toml", env={"CRONACA_HOME": str(tmp_path / "h")})
    key_full = runner.store_key(runner.write_records(full, tmp_path / "cache"), config)
    key_subset = runner.store_key(runner.write_records(subset, tmp_path / "cache"), config)
    key_other_seed = runner.store_key(runner.write_records(load_set(path, foreign=2, seed=1).records,
                                                           tmp_path / "cache"), config)
    assert len({key_full, key_subset, key_other_seed}) == 3


def test_foreign_and_split_are_refused_where_they_make_no_sense(tmp_path):
    with pytest.raises(ValueError, match="SQuAD sets only"):
        load_set(NATURAL, foreign=10)
    with pytest.raises(ValueError, match="no splits"):
        load_set(_squad(tmp_path / "s.json"), split="dev")
