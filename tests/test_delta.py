"""Readers apply deltas, not rescans (issue 22).

A process that is behind reads the change log in Chroma and applies only the articles changed
since its own generation; a process of the same home just reloads what that home's writer
committed. A full scan happens only when the log does not link its generation to the store's,
or when ``doctor --repair`` asks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from rag.index import Index
from tests.conftest import ROOT
from tests.test_consistency import ARTICLE, OTHER, UPDATED, _env, assert_consistent, run_child, write_jsonl

THIRD = {"id": "ponte", "title": "Messina, il ponte sullo Stretto ha il via libera", "date": "2025-03-16",
         "source": "Il Pallone",
         "text": "Il Cipe ha approvato il progetto definitivo del ponte sullo Stretto di Messina. "
                 "I cantieri apriranno entro l'estate, dice il ministero."}


def _no_scan(monkeypatch):
    """Any full scan of Chroma from now on fails the test."""
    def refuse(self, problems):
        raise AssertionError("a full scan where a delta was expected")
    monkeypatch.setattr(Index, "_committed_rows", refuse)


def _spy_apply(monkeypatch) -> list[set[str]]:
    seen: list[set[str]] = []
    original = Index._apply

    def spy(self, changed, generation):
        seen.append(set(changed))
        return original(self, changed, generation)
    monkeypatch.setattr(Index, "_apply", spy)
    return seen


def test_a_process_of_the_same_home_reloads_what_the_writer_committed(make_lib, tmp_path, monkeypatch):
    """Another process of this home ingests: the open library neither rescans nor re-applies,
    it reloads the shared BM25 files, which the writer brought to the new generation."""
    home = tmp_path / "home"
    page = make_lib(home=home)
    page.ingest([write_jsonl(tmp_path / "v1" / "news.jsonl", [ARTICLE, OTHER])])
    _no_scan(monkeypatch)
    applied = _spy_apply(monkeypatch)

    done = run_child(home, write_jsonl(tmp_path / "v2" / "news.jsonl", [UPDATED, OTHER, THIRD]))
    assert done.returncode == 0, done.stderr[-2000:]
    time.sleep(page.index.CHECK_EVERY)
    hits = page.search("ponte sullo Stretto di Messina", k=3, mode="bm25").hits
    assert hits and hits[0].article_id == "ponte"
    assert applied == []  # nothing to apply: the files are already at the generation
    assert page.index.lexical.stamp == page.index.store.generation()
    tram = [h for h in page.search("tram Firenze costeranno", k=3, mode="bm25").hits if h.article_id == "tram"]
    assert tram and all("350 milioni" in h.text for h in tram)


_BEHIND = r"""
import sys, json
sys.path.insert(0, {root!r})
from pathlib import Path
from tests.conftest import HashEmbedder, make_config
from rag.index import Index
from rag.library import Library

applied, scans = [], []
original_apply, original_rebuild = Index._apply, Index._rebuild
Index._apply = lambda self, changed, gen: (applied.append(sorted(changed)), original_apply(self, changed, gen))[1]
Index._rebuild = lambda self, gen: (scans.append(gen), original_rebuild(self, gen))[1]
lib = Library(make_config(Path({home!r}), chroma_host={host!r}, chroma_port={port}), embedder=HashEmbedder())
hits = [h.article_id for h in lib.search("ponte sullo Stretto di Messina", k=3, mode="bm25").hits]
print(json.dumps({{"applied": applied, "scans": len(scans), "hits": hits,
                   "in_step": lib.index.lexical.stamp == lib.index.store.generation()}}))
"""


def _start_behind(home, server) -> dict:
    code = _BEHIND.format(root=str(ROOT), home=str(home), host=server.host, port=server.port)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(),
                          cwd=str(ROOT), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.server
def test_a_second_machine_receives_a_delta(make_lib, tmp_path, monkeypatch):
    """Machine B (its own home) on the same Chroma server as A: when A writes, B applies the
    changed articles only, in an open process and in a new process started on B's stale home;
    when the log no longer reaches back to B's generation, B rescans."""
    from tests.support.chroma_server import start_chroma_server

    with start_chroma_server(tmp_path / "chroma") as server:
        on = {"chroma_host": server.host, "chroma_port": server.port}
        a = make_lib(home=tmp_path / "a", **on)
        a.ingest([write_jsonl(tmp_path / "one.jsonl", [ARTICLE, OTHER])])
        b = make_lib(home=tmp_path / "b", **on)  # a new machine: its first build is a scan
        assert {h.article_id for h in b.search("tram Firenze", mode="bm25").hits} == {"tram"}

        _no_scan(monkeypatch)
        applied = _spy_apply(monkeypatch)
        a.ingest([write_jsonl(tmp_path / "two.jsonl", [UPDATED, OTHER, THIRD])])  # one new, one changed
        time.sleep(b.index.CHECK_EVERY)
        hits = b.search("ponte sullo Stretto di Messina", k=3, mode="bm25").hits
        assert [h.article_id for h in hits][:1] == ["ponte"]
        assert applied == [{"ponte", "tram"}]  # the unchanged article is not touched
        monkeypatch.undo()
        assert_consistent(b)  # doctor scans: that is its job

        # B's processes stop; A deletes one article and adds nothing: a new process on B's home
        # starts behind and catches up from the log, without a scan
        del b
        assert a.delete("diga")
        seen = _start_behind(tmp_path / "b", server)
        assert seen == {"applied": [["diga"]], "scans": 0, "hits": ["ponte"], "in_step": True}

        # the log no longer reaches back to B's generation (pruned): B rescans, and is right
        b_stamp = a.index.lexical.stamp  # where B's home now is
        a.ingest([write_jsonl(tmp_path / "three.jsonl", [OTHER])])
        a.index.store.changes.delete(ids=[b_stamp])
        b = make_lib(home=tmp_path / "b", **on)
        assert b.index.lexical.stamp == b.index.store.generation()
        assert {h.article_id for h in b.search("diga del porto di Genova", mode="bm25").hits} >= {"diga"}
        assert_consistent(b)

        # a repair on A rebuilds A's BM25 and logs a rescan: B rescans too
        rebuilt = []
        original = Index._rebuild
        monkeypatch.setattr(Index, "_rebuild", lambda self, gen: (rebuilt.append(self.home), original(self, gen))[1])
        a.index.repair()
        time.sleep(b.index.CHECK_EVERY)
        b.search("diga", mode="bm25")
        assert rebuilt == [tmp_path / "a", tmp_path / "b"]
        assert_consistent(b)


@pytest.mark.server
def test_a_write_killed_on_one_machine_is_a_delta_for_both(make_lib, tmp_path, monkeypatch):
    """A's feed refresh is killed between chunks and records. B, on the same Chroma server,
    keeps answering from what was committed; A's restart recovers from the write's own articles,
    and B then takes them as a delta: no machine scans the archive."""
    import signal

    from tests.support.chroma_server import start_chroma_server

    with start_chroma_server(tmp_path / "chroma") as server:
        on = {"chroma_host": server.host, "chroma_port": server.port}
        a = make_lib(home=tmp_path / "a", **on)
        a.ingest([write_jsonl(tmp_path / "one.jsonl", [ARTICLE, OTHER])])
        del a
        b = make_lib(home=tmp_path / "b", **on)
        _no_scan(monkeypatch)
        applied = _spy_apply(monkeypatch)

        killed = run_child(tmp_path / "a", write_jsonl(tmp_path / "two.jsonl", [UPDATED, THIRD]),
                           fault="between_chunks_and_record", **on)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        time.sleep(b.index.CHECK_EVERY)
        assert b.search("ponte sullo Stretto di Messina", k=3, mode="bm25").hits == []  # not committed
        assert applied == []

        a = make_lib(home=tmp_path / "a", **on)  # A restarts: recovers without a scan
        assert not a.index.write_interrupted()
        time.sleep(b.index.CHECK_EVERY)
        tram = [h for h in b.search("tram Firenze costeranno", k=3, mode="bm25").hits if h.article_id == "tram"]
        assert tram and all("300 milioni" in h.text for h in tram)  # the update never committed
        assert applied == [{"tram", "ponte"}]
        assert b.index.lexical.stamp == b.index.store.generation()
        monkeypatch.undo()
        assert_consistent(a)
        assert_consistent(b)
