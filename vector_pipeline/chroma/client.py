"""A chroma persist directory, opened for one purpose: ``read``, ``delta`` or ``snapshot``.

Chroma (1.5) is not safe for two writer processes on one path and rewrites its HNSW files
in place, so every writer gets its own directory, and a directory is uploaded only after
``close()`` released the client that wrote it. ``read`` mode refuses every write, so a
downloaded version cannot drift from its manifest. The chroma client itself runs in a child
process (``chroma.host``): every call, the close included, returns or fails within a bound.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import chromadb
import numpy as np
from chromadb.api.types import validate_metadata

from ..config import HnswSettings, Settings
from .embeddings import EmbeddingProvider
from .host import open_client

log = logging.getLogger(__name__)

MODES = ("read", "delta", "snapshot")


_empty: list[Path] = []
_empty_lock = threading.Lock()


def _empty_persist_directory(settings: Settings) -> Path:
    """A persist dir with chroma's schema and no collection, made once per process."""
    with _empty_lock:
        if not _empty:
            path = Path(tempfile.mkdtemp(prefix="vp-chroma-empty-"))
            atexit.register(shutil.rmtree, path, True)
            _open(path, settings).close()
            _empty.append(path)
        return _empty[0]


def _open(path: Path, settings: Settings) -> Any:
    return open_client(path, settings.chroma_call_timeout_seconds, settings.chroma_close_timeout_seconds,
                       settings.fault)


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
        self.persist_directory.mkdir(parents=True, exist_ok=True)
        if mode != "read" and not (self.persist_directory / "chroma.sqlite3").exists():
            # A new directory starts as a copy of an empty one: chroma's schema set-up is
            # most of a small producer's time otherwise.
            shutil.copytree(_empty_persist_directory(self.settings), self.persist_directory, dirs_exist_ok=True)
        self._client = _open(self.persist_directory, self.settings)

    def _init_fields(self, persist_directory: str | Path, mode: str, settings: Settings,
                     hnsw: HnswSettings | None, embedding_provider: EmbeddingProvider | None) -> None:
        """Every attribute but the chroma client (subclasses over several dirs share these)."""
        self.persist_directory = Path(persist_directory)
        self.mode = mode
        self.settings = settings
        self.hnsw = hnsw or settings.hnsw
        self.embedding_provider = embedding_provider
        self._client: Any = None
        self._collections: dict[str, Any] = {}
        self._read_counts: dict[str, int] = {}
        # delta mode: what the delta carries besides its upserts
        self.delta_collection: str | None = None
        self.delete_ids: list[str] = []
        self.dimension = 0

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
            return _plain(collection.get(where=where, include=include), include)
        merged: dict[str, Any] = {"ids": [], **{field: [] for field in include}}
        for batch in self._batches(list(ids)):
            part = _plain(collection.get(ids=batch, where=where, include=include), include)
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
        batches = [None] if ids is None else list(self._batches(list(ids)))
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

    def set_search_ef(self, collection_name: str, search_ef: int) -> bool:
        """Give the collection this HNSW search breadth (the one setting chroma changes in
        place); True when it changed."""
        self._check_writable(collection_name)
        collection = self._collection(collection_name, create=False)
        if collection is None or self.collection_configuration(collection_name)["hnsw"]["ef_search"] == search_ef:
            return False
        collection.modify(configuration={"hnsw": {"ef_search": int(search_ef)}})
        self._collections.pop(collection_name, None)  # its configuration is read afresh
        return True

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
        return _plain(result, include, nested=True)

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
        ids, embeddings, documents, metadatas = _last_occurrence_wins(ids, embeddings, documents, metadatas)
        collection = self._collection(collection_name, create=True)
        if len(embeddings):
            self.dimension = int(embeddings.shape[1])
        for start, stop in self._spans(len(ids)):
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
        for batch in self._batches(ids):
            collection.delete(ids=batch)
        if self.mode == "delta":
            known = set(self.delete_ids)
            self.delete_ids.extend(i for i in ids if i not in known)
        return len(ids)

    def close_and_describe(self) -> "WrittenDelta":
        """Release chroma and say what this delta-mode directory holds (the delta layer turns
        it into a manifest and uploads it: data flows from the producer to the uploader)."""
        if self.mode != "delta":
            raise RuntimeError(f"close_and_describe needs mode 'delta', not {self.mode!r}")
        if self.delta_collection is None:
            raise ValueError("the delta is empty: nothing was upserted or deleted")
        upsert_count = self.count(self.delta_collection)
        self.close()
        return WrittenDelta(self.persist_directory, self.delta_collection, upsert_count, tuple(self.delete_ids),
                            self.dimension, self.hnsw.as_dict(), CHROMADB_VERSION)

    # -- collection settings ----------------------------------------------------------------

    def ensure_collection(self, collection_name: str) -> None:
        """Create the collection (with this client's HNSW settings) if it does not exist."""
        self._check_writable(collection_name)
        self._collection(collection_name, create=True)

    def collection_names(self) -> list[str]:
        return sorted(c if isinstance(c, str) else c.name for c in self._client.list_collections())

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
            self._collections.clear()
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
            if self.delta_collection not in (None, collection_name):
                raise ValueError(
                    f"a delta holds one collection: {self.delta_collection!r}, not {collection_name!r}"
                )
            self.delta_collection = collection_name

    def _collection(self, name: str, create: bool) -> Any:
        if self._client is None:
            raise RuntimeError("ChromaDBClient is closed")
        if name in self._collections:
            return self._collections[name]
        if create:
            collection = self._client.get_or_create_collection(
                name,
                configuration={"hnsw": {
                    "space": self.hnsw.space,
                    "ef_search": self.hnsw.search_ef,
                    "ef_construction": self.hnsw.construction_ef,
                    "max_neighbors": self.hnsw.max_neighbors,
                }},
                embedding_function=None,
            )
        else:
            try:
                collection = self._client.get_collection(name, embedding_function=None)
            except Exception as exc:  # chroma raises NotFoundError (or ValueError in older builds)
                if "does not exist" in str(exc) or type(exc).__name__ == "NotFoundError":
                    return None
                raise
        self._collections[name] = collection
        return collection

    def _batch_size(self) -> int:
        return int(self._client.get_max_batch_size())

    def _spans(self, total: int) -> Iterator[tuple[int, int]]:
        size = self._batch_size()
        for start in range(0, total, size):
            yield start, min(start + size, total)

    def _batches(self, items: list[str]) -> Iterator[list[str]]:
        for start, stop in self._spans(len(items)):
            yield items[start:stop]


CHROMADB_VERSION = chromadb.__version__


def check_metadata_value(metadata: dict[str, Any] | None) -> None:
    """Raise ``ValueError``/``TypeError`` if chroma would refuse this metadata."""
    validate_metadata(metadata)


@dataclass(frozen=True)
class WrittenDelta:
    """What a closed delta-mode directory holds, as chroma wrote it."""

    directory: Path
    collection: str
    upsert_count: int
    delete_ids: tuple[str, ...]
    dimension: int
    hnsw: dict[str, Any]
    chromadb_version: str


def _last_occurrence_wins(ids, embeddings, documents, metadatas):  # type: ignore[no-untyped-def]
    ids = list(ids)
    embeddings = _float_matrix(embeddings)
    if len(set(ids)) == len(ids):
        return ids, embeddings, _listed(documents), _listed(metadatas)
    last = {record_id: position for position, record_id in enumerate(ids)}
    keep = sorted(last.values())
    pick = lambda values: None if values is None else [list(values)[i] for i in keep]  # noqa: E731
    return [ids[i] for i in keep], embeddings[keep], pick(documents), pick(metadatas)


def _float_matrix(embeddings: Any) -> np.ndarray:
    """Embeddings as one float32 matrix (what chroma stores), converted in one pass."""
    try:
        matrix = np.asarray(embeddings, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError("embeddings must be sequences of numbers, all of one dimension") from None
    if matrix.ndim != 2 and len(matrix):
        raise ValueError("embeddings must be sequences of numbers, all of one dimension")
    return matrix


def _listed(values):  # type: ignore[no-untyped-def]
    return None if values is None else list(values)


def _plain(result: Any, include: Sequence[str], nested: bool = False) -> dict[str, Any]:
    """Chroma's result as plain lists (embeddings as lists of floats, not numpy)."""
    plain: dict[str, Any] = {"ids": list(result["ids"])}
    for field in include:
        values = result.get(field)
        if field == "embeddings" and values is not None:
            values = [[list(map(float, v)) for v in row] for row in values] if nested else \
                [list(map(float, v)) for v in values]
        plain[field] = [] if values is None else list(values)
    plain["included"] = list(include)
    return plain
