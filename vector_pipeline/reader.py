"""Readers: query the published version of a collection, from a local copy.

Invariant: a reader answers from exactly one whole, checksummed version — the one the
pointer named when it last read it, or, while that one is built, none (the call waits for
it). How old that read may be is the consistency: by default (``"bounded"``) at most
``READER_POINTER_TTL_SECONDS`` for another process's publishes, and none for this
process's own (read-your-writes, ``consistency.py``); ``"strong"`` reads the pointer on
every call. It never writes: the local copy is opened in ``read`` mode.

When the pointer moves, the reader downloads only the files it does not hold and keeps
every segment it already has open (``local_versions.py``): a publish that appends a small
segment costs the reader that segment and its masks. One reader per (cache root,
collection, bucket, endpoint) is kept for the process. ``include_pending`` also searches
the deltas not yet compacted (``pending.py``).
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from .chroma_client import ChromaDBClient
from .config import Settings
from .consistency import ReadConsistency, publish_key, publishes_here
from .embeddings import EmbeddingProvider, check_same_embedding, provider_from_settings
from .local_versions import LocalVersions, segment_key
from .pending import PendingDeltas
from .segments import SegmentedClient, read_masks, segments_of
from .snapshot_store import STATE_FILE, MergeState, Pointer, SnapshotNotFoundError, SnapshotStore

log = logging.getLogger(__name__)

_MAX_POINTER_MOVES = 5
INCLUDE_FIELDS = ("documents", "metadatas", "distances", "embeddings")
DEFAULT_INCLUDE = ("documents", "metadatas", "distances")  # chroma's own default for query


@dataclass
class ReaderStats:
    """What a reader did so far: versions it switched to, segments it opened or kept open."""

    versions_opened: int = 0
    segments_opened: int = 0
    segments_reused: int = 0


class SnapshotReader:
    """The published version of one collection, kept open and refreshed on pointer moves."""

    def __init__(self, collection_name: str, snapshot_path: str | Path | None = None,
                 settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.collection = collection_name
        self.root = Path(snapshot_path) if snapshot_path else Path(self.settings.cache_dir) / "snapshots"
        self.store = SnapshotStore(self.settings)
        self.local = LocalVersions(self.store, self.root, collection_name)
        self.pending = PendingDeltas(self.store.s3, self.store.bucket, collection_name, self.settings)
        self.version: str | None = None
        self.manifest: dict[str, Any] | None = None
        self.client: ChromaDBClient | None = None
        self._provider: EmbeddingProvider | None = None
        self._lock = threading.Lock()
        self._pointer_read_at = float("-inf")
        self._publishes_seen = 0
        self._publish_key = publish_key(self.settings, self.store.bucket, collection_name)
        self._retired_manifest: dict[str, Any] | None = None
        self._parts: dict[str, ChromaDBClient] = {}  # open segments, by content (segment_key)
        self._state: tuple[str, MergeState] | None = None
        self._opened_last = 0  # segments the last switch opened (the others were reused)
        self.stats = ReaderStats()

    def refresh(self, consistency: ReadConsistency | str = ReadConsistency.BOUNDED) -> ChromaDBClient:
        """Follow the pointer: build and open its version if it is not the open one."""
        return self._view(ReadConsistency.parse(consistency))[0]

    def _view(self, consistency: ReadConsistency) -> tuple[ChromaDBClient, dict[str, Any]]:
        with self._lock:
            published = publishes_here(self._publish_key)  # read before the pointer: none is missed
            if (self.client is not None and self.manifest is not None and consistency is ReadConsistency.BOUNDED
                    and published == self._publishes_seen
                    and time.monotonic() - self._pointer_read_at < self.settings.reader_pointer_ttl_seconds):
                return self.client, self.manifest  # read moments ago, and nothing published here since
            for attempt in range(_MAX_POINTER_MOVES):
                pointer = self.store.read_pointer(self.collection)
                if pointer is None:
                    raise SnapshotNotFoundError(
                        f"collection {self.collection!r} has no published snapshot in s3://{self.store.bucket}")
                self._pointer_read_at, self._publishes_seen = time.monotonic(), published
                if self.client is not None and self.manifest is not None and pointer.version == self.version:
                    return self.client, self.manifest
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

    def _switch_to(self, pointer: Pointer) -> tuple[ChromaDBClient, dict[str, Any]]:
        manifest = self.store.read_manifest(self.collection, pointer.version)
        version_dir = self.local.materialize(manifest)
        client = self._open(version_dir, manifest)
        # A query of another thread may still be running on the previous version: its
        # segments stay open, and its files kept, until the next switch.
        self._retired_manifest = self.manifest
        self.client, self.version, self.manifest = client, pointer.version, manifest
        kept = [m for m in (manifest, self._retired_manifest) if m is not None]
        in_use = {segment_key(m, s) for m in kept for s in segments_of(m)}
        for key in [k for k in self._parts if k not in in_use]:
            self._parts.pop(key).close()
        self.local.prune(keep=kept)
        reused = len(segments_of(manifest)) - self._opened_last
        self.stats.versions_opened += 1
        self.stats.segments_opened += self._opened_last
        self.stats.segments_reused += reused
        log.info("reader of %s now on version %s (%d segments, %d of them reused)", self.collection,
                 self.version, len(segments_of(manifest)), reused)
        return client, manifest

    def _open(self, version_dir: Path, manifest: dict[str, Any]) -> ChromaDBClient:
        segments = segments_of(manifest)
        parts, self._opened_last = [], 0
        for segment in segments:
            key = segment_key(manifest, segment)
            if key not in self._parts:
                self._parts[key] = ChromaDBClient(self.local.segment_path(manifest, segment), mode="read",
                                                  settings=self.settings)
                self._opened_last += 1
            parts.append(self._parts[key])
        return SegmentedClient(version_dir, segments, read_masks(version_dir), self.settings, parts=parts)

    def query(self, query_texts: Sequence[str] | None, query_embeddings: Sequence[Sequence[float]] | None,
              n_results: int, where: dict[str, Any] | None, include: Sequence[str] | None = None, *,
              include_pending: bool = False,
              consistency: ReadConsistency | str = ReadConsistency.BOUNDED) -> dict[str, Any]:
        consistency = ReadConsistency.parse(consistency)
        include = check_include(include)
        client, manifest = self._view(consistency)
        if query_embeddings is None and query_texts is not None:
            query_embeddings = self._embed(list(query_texts), manifest)
        if not include_pending:
            return client.query(self.collection, query_embeddings=query_embeddings, n_results=n_results,
                                where=where, include=include)
        return self._query_with_pending(client, manifest, query_embeddings, n_results, where, include,
                                        consistency)

    def _query_with_pending(self, client: ChromaDBClient, manifest: dict[str, Any],
                            query_embeddings: Sequence[Sequence[float]], n_results: int,
                            where: dict[str, Any] | None, include: list[str],
                            consistency: ReadConsistency) -> dict[str, Any]:
        """The version's answer with the pending deltas applied over it (pending.py)."""
        state = self._merge_state(manifest)
        self.pending.look(state.applied_delta_ids, force=consistency is ReadConsistency.STRONG)
        overlay = self.pending.overlay(str(manifest["version"]), state)
        fields = list(dict.fromkeys([*include, "distances"]))
        # Ask for more: ids of the version the deltas replace or delete may crowd its answer.
        found = client.query(self.collection, query_embeddings=query_embeddings,
                             n_results=n_results + overlay.hidden_in_version, where=where, include=fields)
        space = str((manifest.get("hnsw") or {}).get("space", "cosine"))
        result: dict[str, Any] = {"ids": [], **{f: [] for f in include}}
        for row, query in enumerate(query_embeddings):
            hits = [(found["distances"][row][j], 1, record_id, {f: found[f][row][j] for f in fields})
                    for j, record_id in enumerate(found["ids"][row]) if record_id not in overlay.hidden]
            for distance, at in overlay.search(query, n_results, where, space):
                hits.append((distance, 0, overlay.ids[at], overlay.values(at, distance, include)))
            best = heapq.nsmallest(n_results, hits, key=lambda hit: (hit[0], hit[1]))
            result["ids"].append([record_id for _, _, record_id, _ in best])
            for f in include:
                result[f].append([values[f] for _, _, _, values in best])
        result["included"] = include
        return result

    def _merge_state(self, manifest: Mapping[str, Any]) -> MergeState:
        """The version's merge state (fetched the first time fresh reads need it)."""
        version = str(manifest["version"])
        if self._state is None or self._state[0] != version:
            blob = self.local.blob(manifest, STATE_FILE)
            self._state = (version, MergeState() if blob is None else MergeState.from_bytes(blob.read_bytes()))
        return self._state[1]

    def _embed(self, texts: list[str], manifest: Mapping[str, Any]) -> list[list[float]]:
        if self._provider is None:
            self._provider = provider_from_settings(self.settings)
        vectors = self._provider.embed(texts)
        check_same_embedding(f"query of {self.collection}", self._provider.name, len(vectors[0]) if vectors else 0,
                             str(manifest.get("embedding_provider")), int(manifest.get("dimension", 0)))
        return vectors

    def close(self) -> None:
        with self._lock:
            for part in self._parts.values():
                part.close()
            self._parts.clear()
            self.client, self.version, self.manifest, self._retired_manifest = None, None, None, None


def check_include(include: Sequence[str] | None) -> list[str]:
    """chroma's ``include`` for a query: any of documents, metadatas, distances, embeddings."""
    if include is None:
        return list(DEFAULT_INCLUDE)
    if isinstance(include, str):
        raise ValueError(f"include must be a list of fields, not the string {include!r}")
    unknown = [f for f in include if f not in INCLUDE_FIELDS]
    if unknown:
        raise ValueError(f"include: unknown field(s) {unknown}; choose from {list(INCLUDE_FIELDS)}")
    return list(dict.fromkeys(include))


_readers: dict[tuple[str, str, str, str | None], SnapshotReader] = {}
_readers_lock = threading.Lock()


def snapshot_reader(collection_name: str = "words", snapshot_path: str | Path | None = None,
                    settings: Settings | None = None) -> SnapshotReader:
    """The process's reader of ``collection_name`` (the one query_snapshot and open_snapshot use)."""
    settings = settings or Settings.from_env()
    key = (collection_name, str(Path(snapshot_path).resolve()) if snapshot_path else "",
           settings.vectors_bucket, settings.aws_endpoint_url)
    with _readers_lock:
        if key not in _readers:
            _readers[key] = SnapshotReader(collection_name, snapshot_path, settings)
        return _readers[key]


def query_snapshot(query_texts: Sequence[str] | None = None,
                   query_embeddings: Sequence[Sequence[float]] | None = None,
                   n_results: int = 10, where: dict[str, Any] | None = None,
                   collection_name: str = "words", snapshot_path: str | Path | None = None,
                   *, include: Sequence[str] | None = None, include_pending: bool = False,
                   consistency: ReadConsistency | str = ReadConsistency.BOUNDED,
                   settings: Settings | None = None) -> dict[str, Any]:
    """Query the published version of ``collection_name``; a chroma-style result dict.

    ``include``: as chroma's ``query`` takes it (documents, metadatas, distances,
    embeddings; default the first three). ``consistency``: ``"bounded"`` (default) answers
    from a pointer read at most ``READER_POINTER_TTL_SECONDS`` ago — a version this process
    published itself is seen at once —; ``"strong"`` reads the pointer on every call.
    ``include_pending=True`` also searches the deltas not compacted yet (exactly, with
    last-writer-wins and deletes applied over the version's answer), so a write is visible
    within about ``READER_POINTER_TTL_SECONDS`` of its producer returning.
    """
    if query_texts is None and query_embeddings is None:
        raise ValueError("query_snapshot needs query_texts or query_embeddings")
    return snapshot_reader(collection_name, snapshot_path, settings).query(
        query_texts, query_embeddings, n_results, where, include, include_pending=include_pending,
        consistency=consistency)


def open_snapshot(collection_name: str = "words", snapshot_path: str | Path | None = None,
                  *, consistency: ReadConsistency | str = ReadConsistency.BOUNDED,
                  settings: Settings | None = None) -> ChromaDBClient:
    """The published version as a read-mode client (the same local copy queries use).

    Staleness as for ``query_snapshot``: ``"bounded"`` by ``READER_POINTER_TTL_SECONDS``
    (this process's own publishes at once), ``"strong"`` none. The client stays valid
    until a later call of this process follows the pointer twice more; call again for a
    fresh view rather than holding it across publishes.
    """
    return snapshot_reader(collection_name, snapshot_path, settings).refresh(consistency)


def close_readers() -> None:
    """Close every open reader (tests and long-lived processes that change endpoints)."""
    with _readers_lock:
        for reader in _readers.values():
            reader.close()
        _readers.clear()
