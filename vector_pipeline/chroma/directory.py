"""One chroma persist directory, open in the chroma host: how this project opens it and its
collections.

Keeps: a new writable directory starts as a copy of an empty one made once per process
(chroma's schema set-up is most of a small producer's time otherwise); a collection is created
only with the project's HNSW settings and no embedding function (callers bring the vectors);
an absent collection reads as ``None``, never as an error; no call carries more ids than
chroma's batch size; every call, the close included, goes through the host (``host.py``) and
returns or fails within a bound. After ``close`` nothing of chroma holds the directory: it may
be copied or uploaded.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

from ..config import HnswSettings, Settings
from .remote import RemoteClient, open_client

_empty: list[Path] = []
_empty_lock = threading.Lock()


class OpenDirectory:
    """A persist directory's chroma client and the collections opened on it, cached."""

    def __init__(self, path: Path, settings: Settings, hnsw: HnswSettings, *, writable: bool) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if writable and not (path / "chroma.sqlite3").exists():
            shutil.copytree(_empty_persist_directory(settings), path, dirs_exist_ok=True)
        self.hnsw = hnsw
        self._client = _open(path, settings)
        self._collections: dict[str, Any] = {}

    @property
    def alive(self) -> bool:
        """Its chroma host still runs (a host killed after a hang ends its clients)."""
        return self._client.alive

    def collection(self, name: str, create: bool) -> Any:
        """The collection ``name`` (created with the HNSW settings if ``create``), or ``None``
        when it does not exist and ``create`` is false."""
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

    def forget(self, name: str) -> None:
        """Drop the cached collection (its configuration is read afresh next time)."""
        self._collections.pop(name, None)

    def names(self) -> list[str]:
        return sorted(c if isinstance(c, str) else c.name for c in self._client.list_collections())

    def spans(self, total: int) -> Iterator[tuple[int, int]]:
        """``[start, stop)`` ranges of ``total`` items, each within chroma's batch size."""
        size = int(self._client.get_max_batch_size())
        for start in range(0, total, size):
            yield start, min(start + size, total)

    def batches(self, items: list[str]) -> Iterator[list[str]]:
        for start, stop in self.spans(len(items)):
            yield items[start:stop]

    def close(self) -> None:
        """Release chroma's handles; bounded (``ChromaUnresponsive`` after
        ``chroma_close_timeout_seconds``)."""
        self._collections.clear()
        self._client.close()


def _empty_persist_directory(settings: Settings) -> Path:
    """A persist dir with chroma's schema and no collection, made once per process."""
    with _empty_lock:
        if not _empty:
            path = Path(tempfile.mkdtemp(prefix="vp-chroma-empty-"))
            atexit.register(shutil.rmtree, path, True)
            _open(path, settings).close()
            _empty.append(path)
        return _empty[0]


def _open(path: Path, settings: Settings) -> RemoteClient:
    return open_client(path, settings.chroma_call_timeout_seconds, settings.chroma_close_timeout_seconds,
                       settings.fault)
