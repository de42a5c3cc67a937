"""Chroma, embedded or as a server: the one place that talks to the vector database.

Three collections: ``<name>_chunks`` (one record a chunk, for dense search), ``<name>_articles``
(one record an article: full text, metadata, and the mean of its chunk vectors, which story
grouping reuses) and ``<name>_changes`` (the change log: one record a committed generation, naming
the generation before it and the articles added, replaced or removed in between). The chunks
collection's metadata also carries the store's *generation*, a token every write changes, so
every process and machine can tell that the data moved, and with the log, what moved.
Keeping the collections and BM25 in step is ``rag.index``'s job; this module only reads and
writes what it is told.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import chromadb
import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings

from rag.config import Config
from rag.embeddings import Embedder
from rag.models import Article, Filters, StoredArticle

LOG_KEEP_S = 30 * 86400  # the change log reaches back this far; a reader further behind rescans
LOG_MAX_ARTICLES = 20_000  # a bigger write is logged as "rescan" (a bulk load, not a feed refresh)
LOG_SKEW_US = 300 * 10**6  # clocks of machines sharing a server may differ by this much


class StoreError(RuntimeError):
    """The store cannot be used as configured; the message says what to do."""


def _guarded(method):
    """Any failure of the database becomes one readable StoreError naming where it is."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"{self.where()} failed during {method.__name__}: {exc}") from exc

    return wrapper


class _ChromaEmbedding(EmbeddingFunction[Documents]):
    """Our embedder behind Chroma's interface, so Chroma never loads its own default model."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        self.embedder = embedder

    def __call__(self, input: Documents) -> Embeddings:
        if self.embedder is None:
            raise StoreError("no embedder attached: pass vectors explicitly")
        return list(self.embedder.embed_passages(list(input)))

    @staticmethod
    def name() -> str:
        return "cronaca"

    def get_config(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> _ChromaEmbedding:
        return _ChromaEmbedding()


def make_client(config: Config):
    if config.chroma_host:
        try:
            return chromadb.HttpClient(
                host=config.chroma_host,
                port=config.chroma_port,
                ssl=config.chroma_ssl,
                tenant=config.chroma_tenant,
                database=config.chroma_database,
            )
        except Exception as exc:  # the client checks the server when it is built
            raise StoreError(
                f"cannot reach the Chroma server at {config.chroma_host}:{config.chroma_port} ({exc})"
            ) from exc
    config.home.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(
        path=str(config.home / "chroma"),
        tenant=config.chroma_tenant,
        database=config.chroma_database,
    )


def chunk_metadata(article: Article) -> dict[str, Any]:
    """What every chunk carries: enough to filter, cite and show it without a second lookup."""
    return article.meta()


def where_clause(filters: Filters | None) -> dict[str, Any] | None:
    parts: list[dict[str, Any]] = []
    if filters and filters.since:
        parts.append({"date_int": {"$gte": filters.since}})
    if filters and filters.until:
        parts.append({"date_int": {"$lte": filters.until}})
    if filters and filters.source:
        parts.append({"source": filters.source})
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else {"$and": parts}


def forget_embedded_client(config: Config) -> None:
    """Drop chromadb's per-process cache of the embedded database, so the next client reads the
    files afresh: an embedded client keeps its vector index in memory and never sees what
    another process wrote. Collections already handed out keep working for reads in flight."""
    from chromadb.api.shared_system_client import SharedSystemClient

    path = str(config.home / "chroma")
    systems = getattr(SharedSystemClient, "_identifier_to_system", None)
    if isinstance(systems, dict) and path in systems:
        systems.pop(path, None)
        getattr(SharedSystemClient, "_identifier_to_refcount", {}).pop(path, None)
    else:
        SharedSystemClient.clear_system_cache()


class Store:
    def __init__(self, config: Config, embedder: Embedder, client=None) -> None:
        self.config = config
        self.embedder = embedder
        self.client = client or make_client(config)
        ef = _ChromaEmbedding(embedder)
        self._ef = ef
        meta = {"embed_model": embedder.name}
        try:
            self.chunks = self.client.get_or_create_collection(
                f"{config.collection}_chunks",
                embedding_function=ef,
                configuration={"hnsw": {"space": "cosine"}},
                metadata=meta,
            )
            self.articles = self.client.get_or_create_collection(
                f"{config.collection}_articles",
                embedding_function=ef,
                configuration={"hnsw": {"space": "cosine"}},
                metadata=meta,
            )
            # records carry no meaning as vectors: one constant dimension keeps Chroma content
            self.changes = self.client.get_or_create_collection(f"{config.collection}_changes",
                                                                embedding_function=ef)
        except Exception as exc:
            raise StoreError(f"cannot open the Chroma collections: {exc}") from exc
        stored = (self.chunks.metadata or {}).get("embed_model")
        if stored and stored != embedder.name:
            raise StoreError(
                f"this store holds vectors from '{stored}', but the configured embedder is "
                f"'{embedder.name}'; mixing them would make search meaningless. Use the same "
                f"embedder, or another CRONACA_HOME / CRONACA_COLLECTION for the new one."
            )
        try:
            self.max_batch = int(self.client.get_max_batch_size())
        except Exception:
            self.max_batch = 1000

    def where(self) -> str:
        if self.config.chroma_host:
            return f"the Chroma server at {self.config.chroma_host}:{self.config.chroma_port}"
        return f"the Chroma store in {self.config.home / 'chroma'}"

    # -- generation ---------------------------------------------------------------------------

    @_guarded
    def generation(self) -> str:
        """Read fresh from the database, not from this client's copy of the collection."""
        col = self.client.get_collection(f"{self.config.collection}_chunks", embedding_function=self._ef)
        return str((col.metadata or {}).get("generation", ""))

    @_guarded
    def set_generation(self, token: str) -> None:
        self.chunks.modify(metadata={"embed_model": self.embedder.name, "generation": token})

    # -- change log ---------------------------------------------------------------------------

    @_guarded
    def log_change(self, generation: str, previous: str, changes: dict[str, list[str]]) -> None:
        """Record what ``generation`` changed since ``previous`` (written before the generation
        is committed: whoever sees it finds its entry). ``previous`` empty, or too many
        articles, says "rescan": readers rebuild from a full scan. Entries older than
        ``LOG_KEEP_S`` go."""
        now = time.time_ns() // 1000
        if sum(len(v) for v in changes.values()) > LOG_MAX_ARTICLES:
            previous, changes = "", {}
        self.changes.upsert(ids=[generation], embeddings=np.ones((1, 1), dtype=np.float32),
                            documents=[json.dumps(changes)],
                            metadatas=[{"previous": previous, "seq": now}])
        self.changes.delete(where={"seq": {"$lt": now - LOG_KEEP_S * 10**6}})

    @_guarded
    def log_intent(self, pending: str, article_ids: Sequence[str]) -> None:
        """Before a write touches these articles' chunks or records, say so: a write killed half-way
        is then repaired by looking at them alone (``intents``), not by a scan of the archive.
        ``"*"`` says the write may touch anything (a repair). Not a line of the change log:
        ``changes_since`` skips entries without ``previous``."""
        now = time.time_ns() // 1000
        self.changes.upsert(ids=[f"{pending}#{now}"], embeddings=np.ones((1, 1), dtype=np.float32),
                            documents=[json.dumps(sorted(set(article_ids)))],
                            metadatas=[{"previous": "", "intent": pending, "seq": now}])

    @_guarded
    def intents(self, pending: str) -> set[str] | None:
        """The articles the write marked ``pending`` said it would touch; None when it may have
        touched anything (``"*"``)."""
        got = self.changes.get(where={"intent": pending}, include=["documents"])
        touched = {a for doc in got["documents"] for a in json.loads(doc or "[]")}
        return None if "*" in touched else touched

    @_guarded
    def forget_changes_after(self, previous: str) -> None:
        """Drop log entries that follow ``previous``: a killed write may have logged its change
        without committing its generation, and a second line after one generation is no line."""
        if previous:
            self.changes.delete(where={"previous": previous})

    @_guarded
    def changes_since(self, stamp: str, generation: str) -> set[str] | None:
        """The ids of the articles changed between generation ``stamp`` and ``generation``,
        from the log; None when the log does not link them (too old, a rescan, a killed write)."""
        if not stamp or not generation or stamp == generation:
            return None
        mine = self.changes.get(ids=[stamp], include=["metadatas"])
        if not mine["ids"]:
            return None
        since = int(mine["metadatas"][0]["seq"]) - LOG_SKEW_US
        got = self.changes.get(where={"seq": {"$gte": since}}, include=["metadatas", "documents"])
        after: dict[str, tuple[str, dict]] = {}
        for gid, meta, doc in zip(got["ids"], got["metadatas"], got["documents"]):
            if not meta.get("previous"):
                continue  # a rescan: no line goes through it
            if meta.get("previous") in after:
                return None  # two entries after one generation: not a line
            after[meta.get("previous", "")] = (gid, json.loads(doc or "{}"))
        changed: set[str] = set()
        at = stamp
        for _ in range(len(after)):
            if at not in after:
                return None
            at, what = after[at]
            changed.update(a for ids in what.values() for a in ids)
            if at == generation:
                return changed
        return None

    @_guarded
    def sort_out(self, article_ids: Sequence[str], leftovers: bool = True
                 ) -> tuple[list[tuple[str, str, dict]], list[str], list[str]]:
        """These articles' chunks, sorted out in a few reads: (the committed ones as (id, text,
        metadata): their article record exists with the same content hash; the ids of those no
        record vouches for; the articles with fewer committed chunks than their record says).
        ``leftovers=False``: only the committed ones are wanted, so only the chunks of articles
        that have a record are read."""
        committed: list[tuple[str, str, dict]] = []
        stray: list[str] = []
        short: list[str] = []
        for i in range(0, len(article_ids), 500):
            part = list(article_ids[i : i + 500])
            records = self.articles.get(ids=part, include=["metadatas"])
            want = {rid: (m or {}) for rid, m in zip(records["ids"], records["metadatas"])}
            among = part if leftovers else list(want)
            if not among:
                continue
            got = self.chunks.get(where={"article_id": {"$in": among}}, include=["documents", "metadatas"])
            have: dict[str, int] = {}
            for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"]):
                record = want.get((meta or {}).get("article_id", ""))
                if record is not None and meta.get("content_hash") == record.get("content_hash"):
                    committed.append((cid, doc, meta))
                    have[meta["article_id"]] = have.get(meta["article_id"], 0) + 1
                else:
                    stray.append(cid)
            short += [rid for rid, m in want.items() if have.get(rid, 0) < max(1, int(m.get("chunks") or 1))]
        return committed, stray, short

    def committed_chunks(self, article_ids: Sequence[str]) -> list[tuple[str, str, dict]]:
        """The committed chunks of these articles (``sort_out``'s first part)."""
        return self.sort_out(article_ids, leftovers=False)[0]

    # -- writes -------------------------------------------------------------------------------

    @_guarded
    def upsert_chunks(self, ids, vectors, documents, metadatas) -> None:
        """Writes go in slices of the server's maximum batch size."""
        for i in range(0, len(ids), self.max_batch):
            sl = slice(i, i + self.max_batch)
            self.chunks.upsert(
                ids=list(ids[sl]),
                embeddings=np.asarray(vectors[sl], dtype=np.float32),
                documents=list(documents[sl]),
                metadatas=list(metadatas[sl]),
            )

    @_guarded
    def put_articles(self, articles: Sequence[Article], vectors: np.ndarray,
                     text_hashes: Sequence[str], n_chunks: Sequence[int]) -> None:
        """Article records are the "done" marks: written after their chunks, in batches."""
        for i in range(0, len(articles), self.max_batch):
            part = articles[i : i + self.max_batch]
            self.articles.upsert(
                ids=[a.id for a in part],
                embeddings=np.asarray(vectors[i : i + self.max_batch], dtype=np.float32),
                documents=[a.text for a in part],
                metadatas=[{**a.meta(), "text_hash": h, "chunks": n}
                           for a, h, n in zip(part, text_hashes[i:], n_chunks[i:])],
            )

    @_guarded
    def stale_chunk_ids(self, article_id: str, keep_hash: str) -> list[str]:
        got = self.chunks.get(
            where={"$and": [{"article_id": article_id}, {"content_hash": {"$ne": keep_hash}}]},
            include=[],
        )
        return list(got["ids"])

    @_guarded
    def chunk_ids_of(self, article_id: str) -> list[str]:
        return list(self.chunks.get(where={"article_id": article_id}, include=[])["ids"])

    @_guarded
    def delete_chunks(self, ids: Sequence[str]) -> None:
        for i in range(0, len(ids), self.max_batch):
            self.chunks.delete(ids=list(ids[i : i + self.max_batch]))

    @_guarded
    def delete_records(self, article_ids: Sequence[str]) -> None:
        for i in range(0, len(article_ids), self.max_batch):
            self.articles.delete(ids=list(article_ids[i : i + self.max_batch]))

    # -- reads --------------------------------------------------------------------------------

    @_guarded
    def get_article(self, article_id: str, with_text: bool = False) -> StoredArticle | None:
        include = ["metadatas", "documents"] if with_text else ["metadatas"]
        got = self.articles.get(ids=[article_id], include=include)
        if not got["ids"]:
            return None
        text = got["documents"][0] if with_text else ""
        return StoredArticle.from_record(got["ids"][0], got["metadatas"][0], text)

    @_guarded
    def existing(self, articles: Sequence[Article], text_hashes: Sequence[str]
                 ) -> tuple[dict[str, dict], dict[str, str], dict[str, list[str]]]:
        """Stored records matching these articles by id, by text hash and (for articles without
        url or id) by path, fetched in slices rather than one lookup per article."""
        by_id: dict[str, dict] = {}
        by_hash: dict[str, str] = {}
        by_path: dict[str, list[str]] = {}
        for i in range(0, len(articles), 500):
            part = articles[i : i + 500]
            got = self.articles.get(ids=list({a.id for a in part}), include=["metadatas"])
            by_id.update(zip(got["ids"], got["metadatas"]))
            where: dict[str, Any] = {"text_hash": {"$in": list(set(text_hashes[i : i + 500]))}}
            paths = list({a.path for a in part if a.id.startswith("a-")})
            if paths:
                where = {"$or": [where, {"path": {"$in": paths}}]}
            got = self.articles.get(where=where, include=["metadatas"])
            for rid, meta in zip(got["ids"], got["metadatas"]):
                by_hash.setdefault(meta.get("text_hash", ""), rid)
                by_path.setdefault(meta.get("path", ""), []).append(rid)
        return by_id, by_hash, by_path

    @_guarded
    def article_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        got = self.articles.get(ids=list(ids), include=["embeddings"])
        return {i: np.asarray(v, dtype=np.float32) for i, v in zip(got["ids"], got["embeddings"])}

    @_guarded
    def list_articles(self, filters: Filters | None = None, with_text: bool = False) -> list[StoredArticle]:
        """Newest first."""
        out: list[StoredArticle] = []
        offset = 0
        include = ["metadatas", "documents"] if with_text else ["metadatas"]
        while True:
            got = self.articles.get(where=where_clause(filters), include=include, limit=1000, offset=offset)
            docs = got["documents"] if with_text else [""] * len(got["ids"])
            out.extend(StoredArticle.from_record(i, m, d) for i, m, d in zip(got["ids"], got["metadatas"], docs))
            if len(got["ids"]) < 1000:
                break
            offset += 1000
        out.sort(key=lambda r: (-r.date_int, r.title))
        return out

    @_guarded
    def count_chunks(self) -> int:
        return self.chunks.count()

    @_guarded
    def count_articles(self) -> int:
        return self.articles.count()

    @_guarded
    def iter_chunks(self, batch: int = 2000, with_text: bool = True
                    ) -> Iterator[tuple[list[str], list[str], list[dict]]]:
        offset = 0
        include = ["documents", "metadatas"] if with_text else ["metadatas"]
        while True:
            got = self.chunks.get(include=include, limit=batch, offset=offset)
            if not got["ids"]:
                return
            docs = got["documents"] if with_text else [""] * len(got["ids"])
            yield got["ids"], docs, got["metadatas"]
            offset += len(got["ids"])

    @_guarded
    def get_chunks(self, ids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        if not ids:
            return {}
        got = self.chunks.get(ids=list(ids), include=["documents", "metadatas"])
        # a chunk deleted by another process since our last sync comes back empty: it is gone
        return {i: (d, m) for i, d, m in zip(got["ids"], got["documents"], got["metadatas"]) if m is not None}

    @_guarded
    def dense_search(
        self, vector: np.ndarray, n: int, filters: Filters | None = None
    ) -> list[tuple[str, float, str, dict[str, Any]]]:
        res = self.chunks.query(  # n beyond the collection's size just returns fewer
            query_embeddings=np.asarray([vector], dtype=np.float32),
            n_results=n,
            where=where_clause(filters),
            include=["documents", "metadatas", "distances"],
        )
        return [
            (cid, 1.0 - float(dist), doc, meta)
            for cid, dist, doc, meta in zip(
                res["ids"][0], res["distances"][0], res["documents"][0], res["metadatas"][0]
            )
            if meta is not None  # deleted by another process since this client loaded its index
        ]
