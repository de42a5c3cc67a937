"""The reader (``rag.reader``): its graph built from the wheel plus a delta, the digest check, and
how the offline answerer uses its probabilities (a scripted reader: the rules, not a model).

The graph tests build a delta from the wheel's own top layer and a random head: the graph must
then give exactly e5's pooled vectors, and the head's logit on them (one build, ~10 s)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rag import extractive, reader
from rag.e5_onnx import OnnxE5Embedder, shared_weights
from rag.models import Hit
from rag.question import analyse
from tests.conftest import HashEmbedder


def write_delta(path, wheel_sha: str | None = None, seed: int = 0, cosine_weight: float = 0.0):
    from eval.train_reader import layer_params

    weights, _ = shared_weights()
    top = weights.shape.layers - 1
    arrays = {f"l{top}.{k}": v.astype(np.float16) for k, v in layer_params(weights, top).items()}
    rng = np.random.default_rng(seed)
    arrays["head.w"] = rng.normal(0, 0.1, weights.shape.hidden).astype(np.float32)
    arrays["head.b"] = np.array([0.25], dtype=np.float32)
    meta = {"format": 2, "top_layers": 1, "max_tokens": reader.MAX_TOKENS, "threshold": 0.5,
            "wheel_sha256": wheel_sha or weights.digest, "cosine_weight": cosine_weight}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("reader")
    return reader.Reader(write_delta(root / "delta.npz"), cache=root), root


def test_the_graph_is_the_wheel_plus_the_delta_built_once(built):
    rd, root = built
    weights, tok = shared_weights()
    texts = ["La Roma ha scelto Claudio Ranieri come nuovo allenatore.", "Chi allena la Roma?"]
    windows = [[tok.bos, *tok.encode(t, False), tok.eos] for t in texts]
    sess = rd._run()
    built_now = reader.BUILDS[0]
    ids = np.full((2, max(map(len, windows))), tok.pad, dtype=np.int64)
    mask = np.zeros_like(ids)
    for r, w in enumerate(windows):
        ids[r, : len(w)], mask[r, : len(w)] = w, 1
    pooled, score = sess.run(["pooled", "score"], {"input_ids": ids, "attention_mask": mask, "pool_mask": mask})
    # the top layer is the wheel's own (stored fp16): the graph is e5, plus the head
    expected = OnnxE5Embedder("fp32")._pooled(windows)
    assert np.allclose(pooled, expected, atol=2e-2)
    head = rd.delta.arrays["head.w"].astype(np.float32)
    assert np.allclose(score[:, 0], pooled @ head + 0.25, atol=1e-4)
    again = reader.ensure_graph(weights, rd.delta, root)
    assert again.is_file() and reader.BUILDS[0] == built_now  # reused, not rebuilt


def test_batched_scores_equal_one_at_a_time(built):
    rd, _ = built
    passages = [reader.Passage("La Roma ha scelto Claudio Ranieri come nuovo allenatore.", "Roma, c'è Ranieri"),
                reader.Passage("Il Milan ha vinto la Supercoppa italiana a Riad battendo l'Inter.", "Supercoppa"),
                reader.Passage("Piove.")]
    together = rd.logits("Chi allena la Roma?", passages)
    alone = np.array([rd.logits("Chi allena la Roma?", [p])[0] for p in passages])
    assert np.allclose(together, alone, atol=1e-3)


def test_only_the_question_and_the_sentence_are_pooled_and_the_context_is_cut_first():
    _, tok = shared_weights()
    q = tok.encode("Chi allena la Roma?", True)
    p = reader.Passage("La Roma ha scelto Ranieri.", "Roma, c'è Ranieri", "Juric è stato esonerato.",
                       "Ranieri torna dopo quattordici anni.")
    ids, pooled = reader.encode_pair(tok, q, p)
    focus = tok.encode("La Roma ha scelto Ranieri. | Roma, c'è Ranieri", False)
    assert ids[: pooled] == [tok.bos, *q, tok.eos, *focus]
    assert len(ids) > pooled + 5 and ids[-1] == tok.eos  # the neighbours follow, read but not pooled
    short, pooled_short = reader.encode_pair(tok, q, p, max_tokens=len(q) + len(focus) + 6)
    assert short[:pooled_short] == ids[:pooled] and len(short) == len(q) + len(focus) + 6


def test_neighbours_change_the_score_through_attention_only(built):
    rd, _ = built
    alone = reader.Passage("La Roma ha scelto Ranieri.", "Roma")
    beside = reader.Passage("La Roma ha scelto Ranieri.", "Roma", "Juric è stato esonerato ieri sera.")
    a, b = rd.logits("Chi allena la Roma?", [alone, beside])
    assert a != pytest.approx(b, abs=1e-4)


def test_the_folded_head_gives_the_training_logit():
    from eval.train_reader import COS_CENTRE, fold_head

    rng = np.random.default_rng(3)
    pooled, cos = rng.normal(0, 3, (5, 8)), rng.uniform(0.7, 0.9, 5)
    centre, spread = rng.normal(0, 1, 8), rng.uniform(0.5, 4, 8)
    params = {"layers": [], "head": {"w": rng.normal(0, 1, 8), "b": 0.3, "cos": 17.0}}
    training = ((pooled - centre) / spread) @ params["head"]["w"] + 0.3 + 17.0 * (cos - COS_CENTRE)
    head = fold_head(params, centre, spread)["head"]
    assert np.allclose(pooled @ head["w"] + head["b"] + head["cos"] * cos, training)


def test_the_training_forward_is_the_runtime_graph(tmp_path):
    """The JAX model the reader is trained with and the onnxruntime graph it ships as give one logit."""
    pytest.importorskip("jax", reason="the train extra (pip install .[train]) is not installed")
    from eval.train_reader import Encoder

    weights, tok = shared_weights()
    rd = reader.Reader(write_delta(tmp_path / "delta.npz", seed=4, cosine_weight=12.0), cache=tmp_path)
    passages = [reader.Passage("La Roma ha scelto Ranieri.", "Roma", "Juric è stato esonerato.", "Poi la Lazio."),
                reader.Passage("Il Milan ha vinto la Supercoppa.", "Supercoppa")]
    cos = np.array([0.85, 0.78], dtype=np.float32)
    runtime = rd.logits("Chi allena la Roma?", passages, cos)
    q = tok.encode("Chi allena la Roma?", True)
    rows = [reader.encode_pair(tok, q, p) for p in passages]
    width = max(len(r) for r, _ in rows)
    ids = np.full((2, width), tok.pad, dtype=np.int64)
    mask, pool = np.zeros((2, width)), np.zeros((2, width))
    for i, (r, n) in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)], pool[i, :n] = r, 1, 1
    trained = Encoder(weights).saved_logits(rd.delta.arrays, rd.delta.meta, ids, mask, pool, cos)
    assert np.allclose(runtime, trained, atol=2e-2)


def test_a_delta_made_for_another_wheel_or_damaged_is_refused(tmp_path):
    weights, _ = shared_weights()
    other = reader.load_delta(write_delta(tmp_path / "other.npz", wheel_sha="0" * 64))
    with pytest.raises(reader.DeltaError, match="retrain"):
        reader.ensure_graph(weights, other, tmp_path)
    assert not list(tmp_path.glob("reader-*.onnx"))
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    with pytest.raises(reader.DeltaError, match="broken.npz"):
        reader.load_delta(broken)


# -- the answerer's rules around the reader, with a scripted reader ------------------------------


class Scripted:
    """Probabilities by a word each sentence holds: what the answerer does with them."""

    threshold = 0.5
    cosine_weight = 0.0

    def __init__(self, table: dict[str, float]) -> None:
        self.table = table
        self.read: list[str] = []

    def probabilities(self, question: str, passages, cosines=None):
        self.read += [p.sentence for p in passages]
        return np.array([max([v for k, v in self.table.items() if k in p.sentence] or [0.01]) for p in passages])

    def logits(self, question: str, passages, cosines=None):
        prob = self.probabilities(question, passages, cosines)
        return np.log(prob / (1 - prob))


def hit(text: str, article_id: str = "a1", date: str = "2025-03-01", title: str = "", rank: int = 0) -> Hit:
    return Hit(chunk_id=f"{article_id}::{rank}", article_id=article_id, text=text, score=1.0 - rank / 10,
               title=title, date=date, start=0, end=len(text))


LAZISE = ("La biblioteca comunale di Lazise riapre sabato dopo due anni di lavori, con diecimila volumi. "
          "Il sindaco ha ringraziato i volontari che hanno catalogato i libri della sala ragazzi.")
TWO_NUMBERS = ("La biblioteca comunale di Lazise riapre sabato dopo due anni di lavori, con diecimila volumi. "
               "Nel 2019 la biblioteca di Lazise aveva registrato tremila prestiti in un anno.")


@pytest.fixture
def reader_model(monkeypatch):
    """A fitted model in which only the reader's score counts: what it does to the answer."""
    def weights(reader_weight: float, bias: float = 0.0):
        w = np.zeros(len(extractive.FEATURES))
        w[extractive.FEATURES.index("reader")] = reader_weight
        w[extractive.FEATURES.index("bias")] = bias
        monkeypatch.setattr(extractive, "model", lambda: (w, w))
        monkeypatch.setattr(extractive, "threshold", lambda: 0.5)
    return weights


def test_the_readers_score_is_a_feature_of_the_fitted_model(reader_model):
    q = analyse("Quanti volumi ha la biblioteca di Lazise?")
    reader_model(3.0)
    for favoured in ("diecimila", "tremila"):
        rd = Scripted({favoured: 0.9, "Lazise": 0.3})
        out = extractive.answer(q, [hit(TWO_NUMBERS)], HashEmbedder(), reader=rd)
        assert favoured in out.picks[0].candidate.text and rd.read
        lead = out.picks[0].candidate
        assert lead.reading == pytest.approx(np.log(0.9 / 0.1), rel=1e-4)
        column = extractive.FEATURES.index("reader")
        assert lead.features[column] == pytest.approx(lead.reading / extractive.READER_SCALE)
    # without a reader the column is 0, so a model fitted with one still reads the other features
    out = extractive.answer(q, [hit(TWO_NUMBERS)], HashEmbedder())
    assert all(p.candidate.features[extractive.FEATURES.index("reader")] == 0.0 for p in out.picks)


def test_below_the_threshold_it_declines_and_lists_what_is_related(reader_model):
    q = analyse("Quanti volumi ha la biblioteca di Lazise?")
    reader_model(3.0, bias=-1.0)
    hits = [hit(TWO_NUMBERS), hit("Il Milan ha vinto a Lazise la partita di beneficenza per 3-1.", "a2", rank=1)]
    out = extractive.answer(q, hits, HashEmbedder(), reader=Scripted({"diecimila": 0.2, "tremila": 0.1}))
    assert out.declined and out.best is not None and out.best < 0.5
    assert [hits[c.hit_index].article_id for c in out.related][0] == "a1"  # the closest passage first
    answered = extractive.answer(q, hits, HashEmbedder(), reader=Scripted({"diecimila": 0.9}))
    assert not answered.declined and "diecimila" in answered.picks[0].candidate.text and answered.best > 0.5


def test_a_since_then_line_needs_the_reader(reader_model):
    q = analyse("Quali club vogliono Ancelotti?")
    reader_model(3.0)
    rumour = hit("In pole ci sarebbero proprio Roma e Milan, pronte a puntare su Ancelotti come allenatore.",
                 "rumour", "2024-11")
    news = hit("Ancelotti sarà il nuovo commissario tecnico del Brasile a partire da giugno.", "news", "2025-05-12")

    def later(after: str):
        return [news]

    without = extractive.answer(q, [rumour], HashEmbedder(), later=later)
    assert [p.role for p in without.picks] == ["answer", "since"]
    accepted = extractive.answer(q, [rumour], HashEmbedder(), later=later,
                                 reader=Scripted({"pole": 0.9, "Brasile": 0.6}))
    assert [p.role for p in accepted.picks] == ["answer", "since"]
    refused = extractive.answer(q, [rumour], HashEmbedder(), later=later,
                                reader=Scripted({"pole": 0.9, "Brasile": 0.2}))
    assert [p.role for p in refused.picks] == ["answer"]


@pytest.mark.slow
def test_a_declined_answer_says_what_the_articles_talk_about(sample_lib, monkeypatch, reader_model):
    from rag import answering

    rd = Scripted({})  # nothing answers: the answer declines and lists the closest passages
    reader_model(3.0)
    monkeypatch.setattr(answering, "shared_reader", lambda: rd)
    ans = sample_lib.ask("Quanto costava il biglietto per la finale di Coppa Italia?", answerer="extractive")
    assert ans.declined and ans.to_dict()["declined"] is True
    assert "Gli articoli parlano di «" in ans.text and "ma non dicono" in ans.text
    assert ans.citations and "[1]" in ans.text and rd.read


def test_without_a_reader_a_decline_also_lists_what_is_related():
    text = ("Il Milan ha vinto la Supercoppa italiana a Riad battendo l'Inter per 3-2. "
            "Il gol decisivo è arrivato nei minuti di recupero, firmato da Tammy Abraham.")
    out = extractive.answer(analyse("Chi allena la Lazio?"), [hit(text)], HashEmbedder())
    assert out.declined and out.related and out.best == 0.0  # no sentence about the Lazio: nothing may answer


def test_the_decline_curve_counts_declines_under_each_threshold():
    from eval.runner import decline_curve

    def row(unanswerable: bool, confidence, declined: bool = False) -> dict:
        return {"unanswerable": unanswerable, "modes": {"hybrid": {"confidence": confidence, "declined": declined}}}

    rows = [row(True, 0.1), row(True, 0.7), row(True, None, declined=True), row(False, 0.9), row(False, 0.3)]
    curve = decline_curve(rows, "hybrid")
    at = {p["threshold"]: p for p in curve["points"]}
    assert (curve["answerable"], curve["unanswerable"]) == (2, 3)
    assert at[0.5] == {"threshold": 0.5, "declined": round(2 / 3, 4), "wrongly_declined": 0.5}
    assert at[0.02]["declined"] == round(1 / 3, 4) and at[0.98]["wrongly_declined"] == 1.0
    assert decline_curve([row(True, None), row(False, None)], "hybrid") == {}  # nothing was read


def test_a_squad_set_can_leave_out_the_articles_a_reader_trained_on(tmp_path):
    from eval.sets import load_set

    def article(title: str) -> dict:
        return {"title": title, "paragraphs": [{"context": f"{title} is a city.", "qas": [
            {"id": f"{title}-1", "question": f"What is {title}?", "answers": [{"text": "a city", "answer_start": 8}]},
            {"id": f"{title}-2", "question": f"Who founded {title}?", "is_impossible": True, "answers": []}]}]}

    path = tmp_path / "squad.json"
    path.write_text(json.dumps({"data": [article("Rome"), article("Milan"), article("Turin")]}))
    held = load_set(path, skip_articles={"Rome"})
    assert {r["title"] for r in held.records} == {"Milan", "Turin"}
    assert sorted(c.unanswerable for c in held.cases) == [False, False, True, True]


def test_a_question_with_its_answer_taken_out_is_trained_as_unanswerable():
    import random

    from eval.train_reader import Pair, answer_removed, squad_pairs

    def para(n: int) -> dict:
        context = f"Città {n} fu fondata dai Romani. Il porto fu costruito nel 1200. Oggi ha {n} abitanti."
        return {"context": context, "qas": [
            {"id": f"q{n}", "question": f"Quanti abitanti ha Città {n}?",
             "answers": [{"text": f"{n} abitanti", "answer_start": context.index(f"{n} abitanti")}]},
            {"id": f"x{n}", "question": "Chi fondò il porto?", "is_impossible": True, "answers": []}]}

    pairs = squad_pairs([{"title": "Città", "paragraphs": [para(n) for n in (10, 20, 30, 40)]}],
                        "squad-it", "it", random.Random(0), max_neg=4, foreign=0)
    pairs.append(Pair("natural:n1", "natural", "Chi allena la Roma?", pairs[0].passage, 0.0, True))
    chosen = answer_removed(pairs, 0.5, random.Random(1))
    copied = {pairs[i].qid for i in chosen}
    assert len(copied) == 2  # half of the four answerable SQuAD questions, never the natural set's
    assert copied <= {f"squad-it:q{n}" for n in (10, 20, 30, 40)}
    for qid in copied:  # every sentence but the answer, and only those
        mine = [p for p in pairs if p.qid == qid]
        assert {p.passage for p in mine if p.label == 0.0} == {pairs[i].passage for i in chosen if pairs[i].qid == qid}
        assert all("abitanti" not in pairs[i].passage.sentence for i in chosen if pairs[i].qid == qid)


def test_the_answerers_fit_leaves_out_the_squad_articles_the_reader_trained_on(tmp_path):
    """A reader's score on questions of articles it trained on is better than it is: the fit of
    the answerer's model with that score must not weigh it there (``fit_answerer --reader``)."""
    import gzip

    from eval.fit_answerer import squad_cases
    from tests.conftest import shared_or_skip

    path = shared_or_skip("squad-it/squad_it_dev.json.gz")
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        articles = json.load(fh)["data"]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    with open(corpus / "squad.jsonl", "w", encoding="utf-8") as out:  # every paragraph is stored
        for art in articles:
            for i, _para in enumerate(art["paragraphs"]):
                out.write(json.dumps({"id": f"{art['title']}#{i}"}) + "\n")
    trained = {a["title"] for a in articles[::2]}
    title_of = {qa["question"]: a["title"] for a in articles for para in a["paragraphs"] for qa in para["qas"]}
    everything = squad_cases(corpus, 10_000)
    kept = squad_cases(corpus, 10_000, skip=trained)
    assert 0 < len(kept) < len(everything)
    assert not {title_of[c["question"]] for c in kept} & trained
    assert {title_of[c["question"]] for c in everything} & trained
