"""A chroma persist directory, opened for one purpose: ``read``, ``delta`` or ``snapshot``.

Chroma (1.5) is not safe for two writer processes on one path and rewrites its HNSW files
in place, so every writer gets its own directory, and a directory is uploaded only after
``close()`` released the client that wrote it. ``read`` mode refuses every write, so a
downloaded version cannot drift from its manifest; ``delta`` mode also records what the delta
carries besides its upserts (``written_delta.py``). The chroma client itself runs in a child
process (``host.py``): every call, the close included, returns or fails within a bound. How
the directory and its collections are opened is ``directory.py``; the records' shapes in and
out are ``shapes.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import chromadb
import numpy as np

from ..config import HnswSettings, Settings
from .directory import OpenDirectory
from .embeddings import EmbeddingProvider
from .shapes import last_occurrence_wins, plain_result
from .written_delta import DeltaLedger, WrittenDelta

MODES = ("read", "delta", "snapshot")
CHROMADB_VERSION = chromadb.__version__


class ChromaDBClient:
    """Chroma on a local persist directory, with the project's modes and batch limits."""

    def __init__(
        self,
        persist_directory: str | Path,
        mode: str = "read",
        *,
        settings: Settings | None = None,
        hnsw: HnswSettings | None = None,
        embedding_provider: EmbeddingProvider | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self._init_fields(persist_directory, mode, Settings.resolve(settings), hnsw, embedding_provider)
        self._client = OpenDirectory(self.persist_directory, self.settings, self.hnsw, writable=mode != "read")

    def _init_fields(self, persist_directory: str | Path, mode: str, settings: Settings,
                     hnsw: HnswSettings | None, embedding_provider: EmbeddingProvider | None) -> None:
        """Every attribute but the open directory (subclasses over several dirs share these)."""
        self.persist_directory = Path(persist_directory)
        self.mode = mode
        self.settings = settings
        self.hnsw = hnsw or settings.hnsw
        self.embedding_provider = embedding_provider
        self._client: OpenDirectory | None = None
        self._read_counts: dict[str, int] = {}
        self._delta = DeltaLedger()  # delta mode: what the delta carries besides its upserts

    # -- reads ---------------------------------------------------------------------------

    def count(self, collection_name: str) -> int:
        if collection_name in self._read_counts:
            return self._read_counts[collection_name]
        collection = self._collection(collection_name, create=False)
        count = 0 if collection is None else int(collection.count())
        if self.mode == "read":  # a read-mode directory cannot change: count once
            self._read_counts[collection_name] = count
        return count

    def get_vectors(
        self,
        collection_name: str,
        ids: Sequence[str] | None = None,
        where: dict[str, Any] | None = None,
        include: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Chroma's ``get``: exact, unlike a query. Large id lists are read in batches."""
        include = list(include) if include is not None else ["documents", "metadatas"]
        collection = self._collection(collection_name, create=False)
        if collection is None:
            return {"ids": [], **{field: [] for field in include}, "included": include}
        if ids is None:
            return plain_result(collection.get(where=where, include=include), include)
        merged: dict[str, Any] = {"ids": [], **{field: [] for field in include}}
        for batch in self._open().batches(list(ids)):
            part = plain_result(collection.get(ids=batch, where=where, include=include), include)
            for key in merged:
                merged[key].extend(part[key])
        merged["included"] = include
        return merged

    def read_records(self, collection_name: str, ids: Sequence[str] | None = None) -> dict[str, Any]:
        """Every record (or those of ``ids``) with embeddings, documents and metadatas, the
        embeddings as one float32 matrix: what a merge moves, without a Python float per value."""
        fields = ["embeddings", "documents", "metadatas"]
        collection = self._collection(collection_name, create=False)
        records: dict[str, Any] = {"ids": [], "documents": [], "metadatas": []}
        matrices = []
        batches = [None] if ids is None else list(self._open().batches(list(ids)))
        for batch in batches if collection is not None else []:
            part = collection.get(ids=batch, include=fields)
            records["ids"].extend(part["ids"])
            records["documents"].extend(part.get("documents") or [None] * len(part["ids"]))
            records["metadatas"].extend(part.get("metadatas") or [None] * len(part["ids"]))
            if len(part["ids"]):
                matrices.append(np.asarray(part["embeddings"], dtype=np.float32))
        records["embeddings"] = np.concatenate(matrices) if matrices else np.zeros((0, 0), dtype=np.float32)
        return records

    def embedding_pages(self, collection_name: str, page_size: int = 5000) -> Iterator[tuple[list[str], np.ndarray]]:
        """Every record's id and embedding, a page at a time (float32 matrices): an exact
        scan in bounded memory."""
        collection = self._collection(collection_name, create=False)
        total = 0 if collection is None else self.count(collection_name)
        for offset in range(0, total, page_size):
            part = collection.get(limit=page_size, offset=offset, include=["embeddings"])
            if len(part["ids"]):
                yield list(part["ids"]), np.asarray(part["embeddings"], dtype=np.float32)

    def query(
        self,
        collection_name: str,
        query_embeddings: Sequence[Sequence[float]] | None = None,
        query_texts: Sequence[str] | None = None,
        n_results: int = 10,
        where: dict[str, Any] | None = None,
        include: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        query_embeddings = self._query_embeddings(query_embeddings, query_texts)
        include = list(include) if include is not None else ["documents", "metadatas", "distances"]
        collection = self._collection(collection_name, create=False)
        if collection is None:
            empty = [[] for _ in query_embeddings]
            return {"ids": empty, **{field: [[] for _ in query_embeddings] for field in include}}
        n_results = max(1, min(int(n_results), self.count(collection_name) or 1))
        result = collection.query(
            query_embeddings=[list(map(float, vector)) for vector in query_embeddings],
            n_results=n_results, where=where, include=include,
        )
        return plain_result(result, include, nested=True)

    def _query_embeddings(self, query_embeddings: Sequence[Sequence[float]] | None,
                          query_texts: Sequence[str] | None) -> Sequence[Sequence[float]]:
        if query_embeddings is not None:
            return query_embeddings
        if query_texts is None:
            raise ValueError("query needs query_embeddings or query_texts")
        if self.embedding_provider is None:
            raise ValueError("query_texts needs an embedding provider; pass query_embeddings")
        return self.embedding_provider.embed(list(query_texts))

    # -- writes --------------------------------------------------------------------------

    def upsert_vectors(
        self,
        collection_name: str,
        ids: Sequence[str],
        embeddings: Sequence[Sequence[float]],
        documents: Sequence[str | None] | None = None,
        metadatas: Sequence[dict[str, Any] | None] | None = None,
    ) -> int:
        """Insert or replace; a repeated id replaces (the last occurrence wins)."""
        self._check_writable(collection_name)
        ids, embeddings, documents, metadatas = last_occurrence_wins(ids, embeddings, documents, metadatas)
        collection = self._collection(collection_name, create=True)
        if len(embeddings):
            self._delta.dimension = int(embeddings.shape[1])
        for start, stop in self._open().spans(len(ids)):
            collection.upsert(
                ids=ids[start:stop],
                embeddings=embeddings[start:stop],
                documents=None if documents is None else documents[start:stop],
                metadatas=None if metadatas is None else metadatas[start:stop],
            )
        return len(ids)

    def delete_vectors(self, collection_name: str, ids: Sequence[str]) -> int:
        """Remove ids; in delta mode they are also recorded as tombstones for the snapshot.

        Inside one delta a tombstone wins over that delta's own upsert, in either order.
        """
        self._check_writable(collection_name)
        ids = list(dict.fromkeys(ids))
        collection = self._collection(collection_name, create=True)
        for batch in self._open().batches(ids):
            collection.delete(ids=batch)
        if self.mode == "delta":
            self._delta.record_deletes(ids)
        return len(ids)

    @property
    def delete_ids(self) -> list[str]:
        """Delta mode: the tombstones recorded so far, in the order deleted."""
        return list(self._delta.delete_ids)

    def close_and_describe(self) -> WrittenDelta:
        """Release chroma and say what this delta-mode directory holds (the delta layer turns
        it into a manifest and uploads it: data flows from the producer to the uploader)."""
        if self.mode != "delta":
            raise RuntimeError(f"close_and_describe needs mode 'delta', not {self.mode!r}")
        upsert_count = self.count(self._delta.written_collection())
        self.close()
        return self._delta.describe(self.persist_directory, upsert_count, self.hnsw.as_dict(), CHROMADB_VERSION)

    # -- collection settings ----------------------------------------------------------------

    def ensure_collection(self, collection_name: str) -> None:
        """Create the collection (with this client's HNSW settings) if it does not exist."""
        self._check_writable(collection_name)
        self._collection(collection_name, create=True)

    def set_search_ef(self, collection_name: str, search_ef: int) -> bool:
        """Give the collection this HNSW search breadth (the one setting chroma changes in
        place); True when it changed."""
        self._check_writable(collection_name)
        collection = self._collection(collection_name, create=False)
        if collection is None or self.collection_configuration(collection_name)["hnsw"]["ef_search"] == search_ef:
            return False
        collection.modify(configuration={"hnsw": {"ef_search": int(search_ef)}})
        self._open().forget(collection_name)  # its configuration is read afresh
        return True

    def collection_names(self) -> list[str]:
        return self._open().names()

    def collection_configuration(self, collection_name: str) -> dict[str, Any]:
        collection = self._collection(collection_name, create=False)
        return {} if collection is None else dict(collection.configuration_json or {})

    @property
    def alive(self) -> bool:
        """Open, and its chroma host still runs (a host killed after a hang ends its clients)."""
        return self._client is not None and self._client.alive

    def close(self) -> None:
        """Release chroma's handles, so the directory may be copied or uploaded; bounded
        (``ChromaUnresponsive`` after ``chroma_close_timeout_seconds``)."""
        if self._client is not None:
            client, self._client = self._client, None
            client.close()

    def __enter__(self) -> "ChromaDBClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------------

    def _check_writable(self, collection_name: str) -> None:
        if self.mode == "read":
            raise RuntimeError(
                f"ChromaDBClient in mode 'read' refuses writes ({self.persist_directory})"
            )
        if self.mode == "delta":
            self._delta.admit(collection_name)

    def _open(self) -> OpenDirectory:
        if self._client is None:
            raise RuntimeError("ChromaDBClient is closed")
        return self._client

    def _collection(self, name: str, create: bool) -> Any:
        return self._open().collection(name, create)
