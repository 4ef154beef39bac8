"""Readers: query the published version of a collection, from a local copy.

Invariant: a reader answers from exactly one whole, checksummed version — the one the
pointer named when it last read it (at most ``reader_pointer_ttl_seconds`` ago), or, while
that one downloads, none (the call waits for it). It never lists prefixes and never
writes: the local copy is opened in ``read`` mode. One open client per (cache root, collection) is kept for the process, so a query on
an unchanged pointer costs one small GET and a chroma query, not a download or an open.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from .chroma_client import ChromaDBClient
from .config import Settings
from .embeddings import EmbeddingProvider, check_same_embedding, provider_from_settings
from .faults import checkpoint
from .segments import open_version
from .snapshot_store import Pointer, SnapshotNotFoundError, SnapshotStore

log = logging.getLogger(__name__)

_MAX_POINTER_MOVES = 5


class SnapshotReader:
    """The published version of one collection, kept open and refreshed on pointer moves."""

    def __init__(self, collection_name: str, snapshot_path: str | Path | None = None,
                 settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.collection = collection_name
        self.root = Path(snapshot_path) if snapshot_path else Path(self.settings.cache_dir) / "snapshots"
        self.store = SnapshotStore(self.settings)
        self.version: str | None = None
        self.manifest: dict[str, Any] | None = None
        self.client: ChromaDBClient | None = None
        self._provider: EmbeddingProvider | None = None
        self._lock = threading.Lock()
        self._pointer_read_at = float("-inf")
        self._retired: tuple[ChromaDBClient, str | None] | None = None

    def refresh(self) -> ChromaDBClient:
        """Follow the pointer: download and open its version if it is not the open one."""
        with self._lock:
            if self.client is not None and time.monotonic() - self._pointer_read_at < self.settings.reader_pointer_ttl_seconds:
                return self.client  # the pointer was read moments ago: skip the GET
            for attempt in range(_MAX_POINTER_MOVES):
                pointer = self.store.read_pointer(self.collection)
                if pointer is None:
                    raise SnapshotNotFoundError(
                        f"collection {self.collection!r} has no published snapshot in s3://{self.store.bucket}")
                self._pointer_read_at = time.monotonic()
                if self.client is not None and pointer.version == self.version:
                    return self.client
                try:
                    return self._switch_to(pointer)
                except Exception:
                    # The version vanished under us (GC after the pointer moved on): follow the
                    # pointer again. If it did not move, the failure is real.
                    moved = self.store.read_pointer(self.collection)
                    if moved is None or moved.version == pointer.version or attempt == _MAX_POINTER_MOVES - 1:
                        raise
                    log.warning("version %s went away while downloading; following the pointer to %s",
                                pointer.version, moved.version)
            raise AssertionError("unreachable")

    def _switch_to(self, pointer: Pointer) -> ChromaDBClient:
        manifest = self.store.read_manifest(self.collection, pointer.version)
        checkpoint(self.settings, "reader_before_download")  # a slow reader: GC must wait for it
        version_dir = self.store.download_version(manifest, self.root)
        client = open_version(version_dir, manifest, self.settings)
        # A query of another thread may still be running on the previous client: it is
        # closed one switch later, and its files are kept until then.
        if self._retired is not None:
            self._retired[0].close()
        self._retired = None if self.client is None else (self.client, self.version)
        self.client, self.version, self.manifest = client, pointer.version, manifest
        self._prune_local_versions(keep={pointer.version, self._retired[1] if self._retired else None})
        log.info("reader of %s now on version %s", self.collection, self.version)
        return client

    def query(self, query_texts: Sequence[str] | None, query_embeddings: Sequence[Sequence[float]] | None,
              n_results: int, where: dict[str, Any] | None) -> dict[str, Any]:
        client = self.refresh()
        if query_embeddings is None and query_texts is not None:
            query_embeddings = self._embed(list(query_texts))
        return client.query(self.collection, query_embeddings=query_embeddings,
                            n_results=n_results, where=where)

    def _embed(self, texts: list[str]) -> list[list[float]]:
        if self._provider is None:
            self._provider = provider_from_settings(self.settings)
        manifest = self.manifest or {}
        vectors = self._provider.embed(texts)
        check_same_embedding(f"query of {self.collection}", self._provider.name, len(vectors[0]) if vectors else 0,
                             str(manifest.get("embedding_provider")), int(manifest.get("dimension", 0)))
        return vectors

    def _prune_local_versions(self, keep: set[str | None]) -> None:
        """Drop local copies other than the open version and the one before it (which a
        reader in another process sharing this cache may still be answering from)."""
        for child in (self.root / self.collection).iterdir():
            if child.name not in keep and not child.name.startswith(".incoming-"):
                shutil.rmtree(child, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            for client in (self.client, self._retired[0] if self._retired else None):
                if client is not None:
                    client.close()
            self.client, self.version, self._retired = None, None, None


_readers: dict[tuple[str, str, str, str | None], SnapshotReader] = {}
_readers_lock = threading.Lock()


def _reader(collection_name: str, snapshot_path: str | Path | None, settings: Settings | None) -> SnapshotReader:
    settings = settings or Settings.from_env()
    key = (collection_name, str(Path(snapshot_path).resolve()) if snapshot_path else "",
           settings.vectors_bucket, settings.endpoint_url_for("s3"))
    with _readers_lock:
        if key not in _readers:
            _readers[key] = SnapshotReader(collection_name, snapshot_path, settings)
        return _readers[key]


def query_snapshot(query_texts: Sequence[str] | None = None,
                   query_embeddings: Sequence[Sequence[float]] | None = None,
                   n_results: int = 10, where: dict[str, Any] | None = None,
                   collection_name: str = "words", snapshot_path: str | Path | None = None,
                   *, settings: Settings | None = None) -> dict[str, Any]:
    """Query the published version of ``collection_name``; chroma-style result dict."""
    if query_texts is None and query_embeddings is None:
        raise ValueError("query_snapshot needs query_texts or query_embeddings")
    return _reader(collection_name, snapshot_path, settings).query(query_texts, query_embeddings, n_results, where)


def open_snapshot(collection_name: str = "words", snapshot_path: str | Path | None = None,
                  *, settings: Settings | None = None) -> ChromaDBClient:
    """The published version as a read-mode client (the same local copy queries use).

    The client stays valid until a later call of this process follows the pointer to a
    newer version; call again for a fresh view rather than holding it across publishes.
    """
    return _reader(collection_name, snapshot_path, settings).refresh()


def close_readers() -> None:
    """Close every open reader (tests and long-lived processes that change endpoints)."""
    with _readers_lock:
        for reader in _readers.values():
            reader.close()
        _readers.clear()
