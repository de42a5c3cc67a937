import json
import os

import pytest

from rag.cli import main
from tests.conftest import SAMPLE, HashEmbedder


def _write(folder, name, title, body, date="2025-01-10", source="Test"):
    p = folder / name
    p.write_text(f"---\ntitle: {title}\ndate: {date}\nsource: {source}\n---\n{body}\n", encoding="utf-8")
    return p


def test_ingest_counts_reingest_update_and_duplicates(make_lib, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    a = _write(docs, "a.md", "Roma", "La Roma sceglie Ranieri come allenatore fino a fine stagione.")
    _write(docs, "b.md", "Milan", "Il Milan vince la Supercoppa contro l'Inter a Riad in rimonta.")
    lib = make_lib()
    r = lib.ingest([docs])
    assert (r.added, r.updated, r.unchanged, r.skipped, r.failed) == (2, 0, 0, 0, 0)
    chunks = lib.index.store.count_chunks()
    assert chunks >= 2 and len(lib.index.lexical) == chunks

    r = lib.ingest([docs])
    assert (r.added, r.unchanged) == (0, 2)

    # the same text under another name is stored once
    (docs / "copy.md").write_text(a.read_text(encoding="utf-8"), encoding="utf-8")
    r = lib.ingest([docs / "copy.md"])
    assert r.added == 0 and r.unchanged + r.skipped == 1 and lib.index.store.count_articles() == 2

    # a changed article replaces its chunks
    a.write_text(a.read_text(encoding="utf-8").replace("Ranieri", "Gasperini"), encoding="utf-8")
    r = lib.ingest([a])
    assert r.updated == 1
    texts = [d for _, docs_, _ in lib.index.store.iter_chunks() for d in docs_]
    assert any("Gasperini" in t for t in texts) and not any("Ranieri" in t for t in texts)
    assert lib.index.store.count_chunks() == len(lib.index.lexical) == chunks


def test_failed_items_do_not_stop_the_batch_or_lose_data(make_lib, tmp_path):
    lib = make_lib()
    good = tmp_path / "good"
    good.mkdir()
    _write(good, "a.md", "Napoli", "Il Napoli vince lo scudetto con Antonio Conte in panchina.")
    lib.ingest([good])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.txt").write_text("")
    (bad / "bin.txt").write_bytes(b"\x00\xff" * 100)
    _write(bad, "ok.md", "Bologna", "Il Bologna vince la Coppa Italia battendo il Milan in finale.")
    r = lib.ingest([bad])
    assert (r.added, r.failed) == (1, 2)
    assert lib.index.store.count_articles() == 2


def test_delete_removes_article_chunks_and_bm25(make_lib, tmp_path):
    lib = make_lib()
    p = _write(tmp_path, "a.md", "Juve", "La Juventus esonera Thiago Motta e sceglie Igor Tudor.")
    aid = lib.ingest([p]).article_ids[0]
    assert lib.retriever.search("Tudor").hits
    assert lib.delete(aid) and not lib.delete(aid)
    assert lib.index.store.count_chunks() == 0 and len(lib.index.lexical) == 0
    assert lib.retriever.search("Tudor").hits == []


def test_store_refuses_to_mix_embedding_models(make_lib, tmp_path):
    from rag.store import StoreError

    home = tmp_path / "h"
    make_lib(home=home)

    class Other(HashEmbedder):
        name = "other/model"

    with pytest.raises(StoreError, match="holds vectors from 'test/hash-256'"):
        make_lib(home=home, embedder=Other())


def test_bm25_resyncs_after_an_interrupted_ingest(make_lib, tmp_path):
    home = tmp_path / "h"
    lib = make_lib(home=home)
    lib.ingest([_write(tmp_path, "a.md", "Inter", "Inter battuta dal PSG in finale di Champions League.")])
    lib.index.lexical.clear()  # as if the process died between Chroma writes and the BM25 save
    lib.index.lexical.save(stamp="0")
    again = make_lib(home=home)
    assert len(again.index.lexical) == again.index.store.count_chunks() > 0


def test_filters_restrict_retrieval(make_lib, tmp_path):
    lib = make_lib()
    _write(tmp_path, "a.md", "Ancelotti 1", "Ancelotti resta al Real Madrid.", date="2024-11-01", source="A")
    _write(tmp_path, "b.md", "Ancelotti 2", "Ancelotti diventa ct del Brasile.", date="2025-05-12", source="B")
    lib.ingest([tmp_path])
    titles = lambda **f: {h.title for h in lib.search("Ancelotti", **f).hits}  # noqa: E731
    assert titles(since="2025-01-01") == {"Ancelotti 2"}
    assert titles(until="2024-11") == {"Ancelotti 1"}
    assert titles(source="A") == {"Ancelotti 1"}
    for mode in ("dense", "bm25"):
        hits = lib.search("Ancelotti", source="B", mode=mode).hits
        assert {h.title for h in hits} == {"Ancelotti 2"}


def test_cli_ingest_of_only_bad_files_exits_nonzero(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CRONACA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CRONACA_EMBEDDER", "e5")
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "empty.txt").write_text("")
    (folder / "binary.md").write_bytes(bytes(range(256)) * 4)
    assert main(["ingest", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "empty.txt: empty file" in err and "binary.md: binary file" in err


@pytest.mark.slow
def test_cli_end_to_end_extractive(tmp_path, monkeypatch, capsys):
    """The issue's acceptance path: ingest the seed, ask in Italian and English, offline."""
    monkeypatch.setenv("CRONACA_HOME", str(tmp_path / "home"))
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "CHROMA_HOST"):
        monkeypatch.delenv(var, raising=False)
    seed = SAMPLE / "ancelotti_2024-11.txt"
    assert main(["ingest", str(seed)]) == 0
    text = seed.read_text(encoding="utf-8")
    capsys.readouterr()
    for question in ("Quali club vogliono Ancelotti?", "Which clubs want Ancelotti?"):
        assert main(["ask", question, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["mode"] == "extractive" and out["model"] == "extractive"
        assert "Roma" in out["answer"] and "Milan" in out["answer"], out["answer"]
        assert out["citations"]
        for c in out["citations"]:
            assert f"[{c['n']}]" in out["answer"]
            for part in c["quote"].split(" … "):
                assert part in text
        assert set(out["timings_ms"]) >= {"retrieve", "generate", "total"}
        assert out["retrieved"] and {"chunk_id", "article_id", "score"} <= set(out["retrieved"][0])


def test_cli_list_show_stats_delete(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CRONACA_HOME", str(tmp_path / "home"))
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "CHROMA_HOST"):
        monkeypatch.delenv(var, raising=False)
    p = _write(tmp_path, "a.md", "Bologna in festa", "Il Bologna vince la Coppa Italia contro il Milan.",
               source="Il Pallone")
    assert main(["ingest", str(p), "--json"]) == 0
    aid = json.loads(capsys.readouterr().out)["article_ids"][0]
    assert main(["list", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["id"], row["title"], row["source"], row["chunks"]) == (aid, "Bologna in festa", "Il Pallone", 1)
    assert main(["show", aid, "--json"]) == 0
    assert "Coppa Italia" in json.loads(capsys.readouterr().out)["text"]
    assert main(["stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["articles"] == 1 and stats["sources"] == ["Il Pallone"] and "extractive" in stats["answerer"]
    assert main(["delete", aid]) == 0
    assert main(["show", aid]) == 1
    assert "no article with id" in capsys.readouterr().err


@pytest.mark.slow
def test_a_cold_ask_imports_only_what_it_uses(tmp_path):
    """``cronaca ask`` from a fresh process: no page, plotting, HTML extraction, LLM client or graph
    builder is loaded to answer offline (each costs start-up time on every question)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRONACA_", "OPENAI_", "CHROMA_"))}
    env["CRONACA_HOME"] = str(tmp_path / "home")
    seed = SAMPLE / "ancelotti_2024-11.txt"
    subprocess.run([sys.executable, "-m", "rag.cli", "ingest", str(seed)], env=env, check=True,
                   capture_output=True, timeout=600)
    probe = ("import sys, json\nfrom rag.cli import main\ncode = main(['ask', 'Quali club vogliono Ancelotti?'])\n"
             "print(json.dumps([code, sorted(m for m in sys.modules if '.' not in m)]))")
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=600)
    code, modules = json.loads(proc.stdout.strip().splitlines()[-1])
    assert code == 0, proc.stderr[-2000:]
    assert "onnxruntime" in modules  # the probe saw the model load: the list is the ask path's
    unused = {"gradio", "matplotlib", "trafilatura", "openai", "fastapi", "uvicorn", "feedparser", "onnx"}
    loaded = unused & set(modules)
    assert not loaded, loaded
