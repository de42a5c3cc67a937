"""The index stays consistent under updates, crashes and several processes or machines.

Each test makes the fault a user meets: an article updated from a terminal while the page runs,
a write killed with SIGKILL at each step, a Chroma server dying mid-write, two machines on one
`chroma run`, writers and readers racing on one home. Afterwards `doctor` must find a clean store
and answers must never cite a chunk that is not committed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.cli import main as cli_main
from tests.conftest import ROOT

ARTICLE = {"id": "tram", "title": "Firenze, il tram arriva a Bagno a Ripoli", "date": "2025-03-14",
           "source": "Il Pallone",
           "text": "La linea 3 del tram di Firenze arriverà a Bagno a Ripoli nel 2027, ha detto la giunta. "
                   "I lavori costeranno 300 milioni di euro e dureranno tre anni."}
UPDATED = {**ARTICLE, "text": ARTICLE["text"].replace("300 milioni", "350 milioni").replace("2027", "2028")}
OTHER = {"id": "diga", "title": "Genova, collaudo per la diga del porto", "date": "2025-03-12",
         "source": "Il Pallone",
         "text": "La nuova diga del porto di Genova ha superato il primo collaudo strutturale. "
                 "Il cantiere resterà aperto fino al 2027 con trecento operai al lavoro."}


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("CRONACA_", "OPENAI_", "CHROMA_"))}


# A child process that ingests with the fast embedder; FAULT names a write step at which it
# kills itself (SIGKILL: no cleanup, no finally blocks), as a crash or `kill -9` would.
_CHILD = r"""
import os, signal, sys, json
sys.path.insert(0, {root!r})
from pathlib import Path
from tests.conftest import HashEmbedder, make_config
from rag import store as store_mod
from rag.library import Library

fault = {fault!r}
def die_before(name):
    original = getattr(store_mod.Store, name)
    def wrapper(self, *a, **k):
        os.kill(os.getpid(), signal.SIGKILL)
    setattr(store_mod.Store, name, wrapper)

if fault == "before_chunks":
    die_before("upsert_chunks")
elif fault == "between_chunks_and_record":
    die_before("put_articles")
elif fault == "after_record":
    die_before("stale_chunk_ids")
elif fault == "before_bm25":
    from rag import lexical
    lexical.LexicalIndex.update = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)

overrides = json.loads({overrides!r})
lib = Library(make_config(Path({home!r}), **overrides), embedder=HashEmbedder())
report = lib.ingest([{path!r}])
print(json.dumps({{"added": report.added, "updated": report.updated, "errors": [str(e) for e in report.errors]}}))
"""


def run_child(home: Path, path: Path, fault: str = "", timeout: float = 120,
              **overrides) -> subprocess.CompletedProcess:
    code = _CHILD.format(root=str(ROOT), home=str(home), path=str(path), fault=fault,
                         overrides=json.dumps(overrides))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(),
                          cwd=str(ROOT), timeout=timeout)


def assert_consistent(lib) -> None:
    """doctor finds nothing; BM25 holds exactly the committed chunks; every record has its chunks."""
    report = lib.doctor()
    assert report.clean, [str(p) for p in report.problems]
    committed = {a.id: a for a in lib.articles()}
    by_article: dict[str, int] = {}
    for ids, _docs, metas in lib.index.store.iter_chunks():
        for cid, meta in zip(ids, metas):
            record = committed.get(meta["article_id"])
            assert record is not None and record.content_hash == meta["content_hash"], cid
            by_article[meta["article_id"]] = by_article.get(meta["article_id"], 0) + 1
    assert all(by_article.get(a.id, 0) == a.chunks for a in committed.values())
    assert len(lib.index.lexical) == sum(by_article.values())


# ---------------------------------------------------------------------------------- finding 1


def test_open_library_answers_after_an_update_from_another_process(make_lib, tmp_path):
    """The page keeps a Library open; a terminal ingests a changed version with the same chunk
    count. Counting chunks cannot see that; the generation can."""
    home = tmp_path / "home"
    page = make_lib(home=home)
    page.ingest([write_jsonl(tmp_path / "v1" / "news.jsonl", [ARTICLE, OTHER])])
    question = "Quanto costeranno i lavori del tram di Firenze?"
    before = page.search(question, k=3).hits
    assert "300 milioni" in before[0].text
    chunks_before = page.index.counts()[1]

    done = run_child(home, write_jsonl(tmp_path / "v2" / "news.jsonl", [UPDATED, OTHER]))
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1])["updated"] == 1

    time.sleep(page.index.CHECK_EVERY)  # the page checks the generation at most once a second
    after = page.search(question, k=3).hits
    assert page.index.counts()[1] == chunks_before  # same count: only the generation changed
    tram = [h for h in after if h.article_id == "tram"]
    assert tram and all("350 milioni" in h.text and "300 milioni" not in h.text for h in tram)
    answer = page.ask(question, answerer="extractive")  # whatever it says, it quotes the new version
    assert all(part in UPDATED["text"] for c in answer.citations if c.article_id == "tram"
               for part in c.quote.split(" … "))
    assert_consistent(page)


# ---------------------------------------------------------------------------------- finding 4


@pytest.mark.parametrize("fault", ["before_chunks", "between_chunks_and_record", "after_record", "before_bm25"])
def test_write_killed_at_each_step_leaves_nothing_visible_and_doctor_clean(make_lib, tmp_path, fault):
    home = tmp_path / "home"
    lib = make_lib(home=home)
    lib.ingest([write_jsonl(tmp_path / "v1" / "news.jsonl", [ARTICLE])])
    page = make_lib(home=home)  # a reader that stays open through the crash

    killed = run_child(home, write_jsonl(tmp_path / "v2" / "news.jsonl", [UPDATED, OTHER]), fault=fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    # the open reader never cites a chunk that is not committed
    time.sleep(page.index.CHECK_EVERY)
    for q in ("Quanto costeranno i lavori del tram?", "collaudo della diga del porto di Genova"):
        for hit in page.search(q, k=10).hits:
            record = page.article(hit.article_id)
            assert record is not None, (fault, hit.chunk_id)

    # a fresh start repairs what the crash left, and says the store is consistent
    fresh = make_lib(home=home)
    assert_consistent(fresh)
    # rerunning the ingest finishes the job without duplicates
    report = fresh.ingest([tmp_path / "v2" / "news.jsonl"])
    assert report.failed == 0
    assert {a.id for a in fresh.articles()} == {"tram", "diga"}
    assert "350 milioni" in fresh.article("tram").text
    assert_consistent(fresh)


@pytest.mark.parametrize("fault", ["between_chunks_and_record", "after_record", "before_bm25"])
def test_a_killed_write_is_recovered_from_its_own_articles_without_a_scan(make_lib, tmp_path, monkeypatch, fault):
    """On a large archive a scan of every chunk takes many minutes: recovering a killed feed
    refresh must look only at the articles the write said it would touch, and link the new
    generation to the one before the write, so other processes take a delta as well."""
    home = tmp_path / "home"
    lib = make_lib(home=home)
    lib.ingest([write_jsonl(tmp_path / "v1" / "news.jsonl", [ARTICLE])])
    before = lib.index.store.generation()
    del lib

    killed = run_child(home, write_jsonl(tmp_path / "v2" / "news.jsonl", [UPDATED, OTHER]), fault=fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    from rag.store import Store

    def no_scan(self, *a, **k):
        raise AssertionError("a full scan of the store")

    with monkeypatch.context() as m:
        m.setattr(Store, "iter_chunks", no_scan)
        m.setattr(Store, "list_articles", no_scan)
        fresh = make_lib(home=home)  # recovers on opening
        generation = fresh.index.store.generation()
        assert generation and not generation.startswith("w:")
        assert fresh.index.lexical.stamp == generation
        # the log links the generation before the write to the recovered one: a delta for others
        assert fresh.index.store.changes_since(before, generation) == {"tram", "diga"}
        assert not fresh.index.write_interrupted()
    assert_consistent(fresh)
    report = fresh.ingest([tmp_path / "v2" / "news.jsonl"])
    assert report.failed == 0 and {a.id for a in fresh.articles()} == {"tram", "diga"}
    assert "350 milioni" in fresh.article("tram").text
    assert_consistent(fresh)


def test_doctor_reports_each_problem_and_repair_fixes_it(make_lib, tmp_path, monkeypatch, capsys):
    """Leftovers made by hand, as an external tool or a crash on another machine might leave."""
    home = tmp_path / "home"
    lib = make_lib(home=home)
    lib.ingest([write_jsonl(tmp_path / "news.jsonl", [ARTICLE, OTHER])])
    store = lib.index.store
    ids, docs, metas = next(store.iter_chunks())
    vec = lib.embedder.embed_passages(["x"])
    # an orphan chunk (no record), and a chunk of an old version
    store.upsert_chunks(["ghost::1::0"], vec, ["testo fantasma"], [{**metas[0], "article_id": "ghost"}])
    store.upsert_chunks(["tram::old::0"], vec, ["vecchia versione"],
                        [{**metas[0], "article_id": "tram", "content_hash": "old"}])
    # a record whose chunks were lost
    lost = [i for i, m in zip(ids, metas) if m["article_id"] == "diga"]
    store.delete_chunks(lost)
    monkeypatch.setenv("CRONACA_HOME", str(home))
    for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "CHROMA_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("rag.library.make_embedder", lambda config: lib.embedder)

    assert cli_main(["doctor", "--json"]) == 1
    found = json.loads(capsys.readouterr().out)
    text = " ".join(found["problems"])
    assert "'ghost'" in text and "older version of 'tram'" in text and "'diga' has 0 of" in text
    assert not found["clean"]

    assert cli_main(["doctor", "--repair"]) == 0
    out = capsys.readouterr().out
    assert "repaired: removed 1 leftover chunk(s) of 'ghost'" in out
    assert "re-indexed 'diga'" in out and "consistent again" in out
    assert cli_main(["doctor"]) == 0
    fixed = make_lib(home=home)
    assert_consistent(fixed)
    assert "collaudo" in fixed.search("Com'è andato il collaudo della diga di Genova?", k=1).hits[0].text


_PROBE = r"""
import sys, json
sys.path.insert(0, {root!r})
from pathlib import Path
from tests.conftest import HashEmbedder, make_config
from rag.library import Library
lib = Library(make_config(Path({home!r})), embedder=HashEmbedder())
print(json.dumps({{"interrupted": lib.index.write_interrupted(), "articles": len(lib.articles())}}))
"""


def test_a_reader_starting_during_a_write_neither_repairs_nor_saves(make_lib, tmp_path):
    """A pending generation with the write lock held is a write in progress, not a crash."""
    home = tmp_path / "home"
    lib = make_lib(home=home)
    lib.ingest([write_jsonl(tmp_path / "a.jsonl", [ARTICLE])])
    bm25_meta = next(home.glob("bm25-*")) / "meta.json"
    with lib.index.writing() as writer:
        from rag.ingest import IngestReport, _plan, _write  # the same steps an ingest takes

        report = IngestReport()
        from rag.parsing import parse_file

        articles = parse_file(write_jsonl(tmp_path / "b.jsonl", [OTHER])).articles
        _write(_plan(lib.index, lib.config, articles, report, set()), writer, lib.embedder, lib.config, report, None)
        saved = bm25_meta.stat().st_mtime_ns
        # another process on this home starts now: it must not call the write interrupted
        probe = subprocess.run([sys.executable, "-c", _PROBE.format(root=str(ROOT), home=str(home))],
                               capture_output=True, text=True, env=_env(), cwd=str(ROOT), timeout=120)
        assert probe.returncode == 0, probe.stderr[-2000:]
        seen = json.loads(probe.stdout.splitlines()[-1])
        assert seen["interrupted"] is False
        assert bm25_meta.stat().st_mtime_ns == saved  # the writer owns the BM25 files
    assert_consistent(make_lib(home=home))


# ---------------------------------------------------------------------------------- races


_LOOP = r"""
import sys, json, time, random
sys.path.insert(0, {root!r})
from pathlib import Path
from tests.conftest import HashEmbedder, make_config
from rag.library import Library
lib = Library(make_config(Path({home!r})), embedder=HashEmbedder())
role, until, n, errors = {role!r}, time.time() + {seconds}, 0, []
folder = Path({folder!r})
while time.time() < until:
    try:
        if role == "writer":
            i = n % 3
            lib.ingest([folder / f"v{{i}}.jsonl"], lock_timeout=30)
        else:
            for hit in lib.search("tram di Firenze lavori", k=5).hits:
                if lib.article(hit.article_id) is None:
                    errors.append("uncommitted chunk " + hit.chunk_id)
            lib.stats()
    except Exception as exc:
        errors.append(repr(exc))
    n += 1
print(json.dumps({{"role": role, "rounds": n, "errors": errors[:5], "n_errors": len(errors)}}))
"""


@pytest.mark.server
def test_writers_and_readers_race_on_one_home(make_lib, tmp_path):
    home = tmp_path / "home"
    make_lib(home=home)
    folder = tmp_path / "versions"
    for i in range(3):
        write_jsonl(folder / f"v{i}.jsonl", [
            {**ARTICLE, "text": ARTICLE["text"].replace("300", str(300 + 10 * i))},
            {**OTHER, "id": f"diga{i}"},
        ])
    procs = [subprocess.Popen([sys.executable, "-c", _LOOP.format(root=str(ROOT), home=str(home), role=role,
                                                                   seconds=15, folder=str(folder))],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=str(ROOT))
             for role in ("writer", "writer", "reader", "reader")]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-2000:]
        results.append(json.loads(out.splitlines()[-1]))
    assert all(r["n_errors"] == 0 for r in results), results
    assert all(r["rounds"] > 0 for r in results)
    assert_consistent(make_lib(home=home))


# ---------------------------------------------------------------------------------- a shared server


@pytest.mark.server
def test_second_machine_on_one_chroma_server_sees_delete_plus_same_size_ingest(make_lib, tmp_path):
    """Finding 3: machine B built its BM25; machine A deletes one article and ingests another of
    the same chunk count. B must answer from the new state, not from chunks that are gone."""
    from tests.support.chroma_server import start_chroma_server

    with start_chroma_server(tmp_path / "chroma") as server:
        a = make_lib(home=tmp_path / "a", chroma_host=server.host, chroma_port=server.port)
        a.ingest([write_jsonl(tmp_path / "one.jsonl", [ARTICLE])])
        b = make_lib(home=tmp_path / "b", chroma_host=server.host, chroma_port=server.port)
        assert {h.article_id for h in b.search("tram Firenze", mode="bm25").hits} == {"tram"}

        assert a.delete("tram")
        a.ingest([write_jsonl(tmp_path / "two.jsonl", [OTHER])])
        assert b.index.counts()[1] == 1  # the same chunk count as before

        time.sleep(b.index.CHECK_EVERY)
        ids = {h.article_id for h in b.search("tram Firenze diga Genova", mode="bm25").hits}
        assert ids == {"diga"}
        assert {h.article_id for h in b.search("tram Firenze diga Genova", mode="dense").hits} == {"diga"}
        assert_consistent(b)


@pytest.mark.server
@pytest.mark.parametrize("step", ["upsert_chunks", "put_articles"])
def test_chroma_server_dying_mid_write_then_doctor(make_lib, tmp_path, monkeypatch, step):
    """The server process dies between two writes; after it comes back, a restart repairs."""
    from rag.store import Store, StoreError
    from tests.support.chroma_server import start_chroma_server

    data = tmp_path / "chroma"
    server = start_chroma_server(data)
    port = server.port
    try:
        lib = make_lib(home=tmp_path / "a", chroma_host=server.host, chroma_port=port)
        lib.ingest([write_jsonl(tmp_path / "one.jsonl", [ARTICLE])])
        original = getattr(Store, step)

        def dying(self, *args, **kwargs):
            if step == "put_articles":
                server.kill()
                server.process.wait(10)
                return original(self, *args, **kwargs)
            original(self, *args, **kwargs)  # the chunks get in, then the server dies
            server.kill()
            server.process.wait(10)

        monkeypatch.setattr(Store, step, dying)
        with pytest.raises(StoreError):
            lib.ingest([write_jsonl(tmp_path / "two.jsonl", [UPDATED, OTHER])])
        monkeypatch.setattr(Store, step, original)
    finally:
        server.stop()
    with start_chroma_server(data, port=port) as again:
        fresh = make_lib(home=tmp_path / "a", chroma_host=again.host, chroma_port=again.port)
        assert_consistent(fresh)
        assert "300 milioni" in fresh.article("tram").text  # the old version is still whole
        report = fresh.ingest([tmp_path / "two.jsonl"])
        assert report.failed == 0 and report.updated == 1
        assert_consistent(fresh)
