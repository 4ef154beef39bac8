"""One collection's reader: the version the pointer names, kept open, refreshed on pointer moves.

Invariant: a reader answers from exactly one whole, checksummed version — never a mix,
never a partial download. Which one is the consistency (``table/consistency.py``): by default
(``"bounded"``) a version the pointer named at most ``READER_POINTER_TTL_SECONDS`` ago
(plus up to ``FOLLOWER_GRACE_SECONDS`` while the background follower fetches a newer one),
and never one older than this process's own last publish (read-your-writes);
``"strong"`` reads the pointer on every call. It never writes: segments are opened in
``read`` mode.

When the pointer moves, the reader fetches only the files it does not hold and keeps every
segment it already has open (``local_versions.py``). While queries come, a follower thread
re-reads the pointer once per TTL and switches versions beside them, so a bounded query
does not wait for a download (the first query, a strong one, and one after this process
published do). ``include_pending`` also searches the deltas not yet compacted (``pending.py``).
The process keeps one reader per collection and store (``reader.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..chroma.client import ChromaDBClient
from ..config import Settings
from ..table.consistency import ReadConsistency, on_publish, publish_key, publishes_here
from ..chroma.embeddings import EmbeddingProvider, check_same_embedding, provider_from_settings
from ..faults import checkpoint
from .live_recall import LiveRecall
from .local_versions import LocalVersions, segment_keys
from .pending import PendingDeltas, query_with_overlay
from ..chroma.segments import SegmentedClient
from ..format.segments import read_masks
from ..format.version_manifest import VersionManifest, segments_of
from ..format.merge_state import MergeState, load_state
from ..table.snapshot_store import SnapshotNotFoundError, SnapshotStore

log = logging.getLogger(__name__)

_MAX_POINTER_MOVES = 5
# While a follower runs, a bounded read may answer from a version this much older than the
# TTL allows: the follower may be fetching the new one (a query past it waits for that).
FOLLOWER_GRACE_SECONDS = 5.0
FOLLOWER_IDLE_SECONDS = 60.0  # no query for this long: the follower stops
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
        self.settings = Settings.resolve(settings)
        self.collection = collection_name
        self.root = Path(snapshot_path) if snapshot_path else Path(self.settings.cache_dir) / "snapshots"
        self.store = SnapshotStore(self.settings)
        self.local = LocalVersions(self.store, self.root, collection_name)
        self.pending = PendingDeltas(self.store.s3, self.store.bucket, collection_name, self.settings)
        self.version: str | None = None
        self.manifest: VersionManifest | None = None
        self.client: ChromaDBClient | None = None
        self._provider: EmbeddingProvider | None = None
        self._lock = threading.Lock()
        self._pointer_read_at = float("-inf")
        self._publishes_seen = 0
        self._publish_key = publish_key(self.settings, self.store.bucket, collection_name)
        self._retired_manifest: VersionManifest | None = None
        self._parts: dict[str, ChromaDBClient] = {}  # open segments, by content (segment_key)
        self._state: tuple[str, MergeState] | None = None
        self._switching = threading.Lock()  # held through a whole switch (downloads included)
        self._follower: threading.Thread | None = None
        self._stop = threading.Event()
        self._used_at = time.monotonic()
        self.stats = ReaderStats()
        self.live_recall = LiveRecall(self.settings, collection_name)
        on_publish(self._publish_key, self._adopt)

    def _adopt(self, manifest: VersionManifest) -> None:
        """This process just published ``manifest``'s version: an open reader switches to it
        now (from the manifest in hand, no pointer read), so its next query is warm."""
        if self.client is None or manifest.collection != self.collection:
            return  # nothing open: the first query follows the pointer anyway
        published = publishes_here(self._publish_key)
        with self._switching:
            if self.client is None:
                return
            if self.version != manifest.version:
                self._switch_to(manifest.version, time.monotonic(), published, manifest)
            else:
                with self._lock:
                    self._pointer_read_at, self._publishes_seen = time.monotonic(), published

    def refresh(self, consistency: ReadConsistency | str = ReadConsistency.BOUNDED) -> ChromaDBClient:
        """Follow the pointer: build and open its version if it is not the open one."""
        return self._view(ReadConsistency.parse(consistency))[0]

    def _view(self, consistency: ReadConsistency) -> tuple[ChromaDBClient, VersionManifest]:
        published = publishes_here(self._publish_key)  # read before the pointer: none is missed
        self._used_at = time.monotonic()
        with self._lock:
            if consistency is ReadConsistency.BOUNDED and self._current_enough(published):
                return self.client, self.manifest  # type: ignore[return-value]
        with self._switching:  # one switch at a time: a query waits for the follower's, not a second one
            with self._lock:
                if consistency is ReadConsistency.BOUNDED and self._current_enough(published):
                    return self.client, self.manifest  # type: ignore[return-value]
            view = self._follow_pointer(published)
        self._start_follower()
        return view

    def _current_enough(self, published: int) -> bool:
        """The open version is what a bounded read may answer from (caller holds the lock)."""
        if self.client is None or self.manifest is None or published != self._publishes_seen:
            return False  # nothing open, or this process published since: read your writes
        if not self.client.alive:
            return False  # its chroma host was killed (a hang, chroma/host.py): reopen
        allowed = self.settings.reader_pointer_ttl_seconds
        if self._follower is not None and self._follower.is_alive():
            allowed += FOLLOWER_GRACE_SECONDS  # it may be fetching a new version right now
        return time.monotonic() - self._pointer_read_at < allowed

    def _follow_pointer(self, published: int) -> tuple[ChromaDBClient, VersionManifest]:
        """Read the pointer and switch to its version (caller holds ``_switching``)."""
        for attempt in range(_MAX_POINTER_MOVES):
            read_at = time.monotonic()
            pointer = self.store.read_pointer(self.collection)
            if pointer is None:
                raise SnapshotNotFoundError(
                    f"collection {self.collection!r} has no published snapshot in s3://{self.store.bucket}")
            if self.client is not None and self.client.alive and self.manifest is not None \
                    and pointer.version == self.version:
                with self._lock:
                    self._pointer_read_at, self._publishes_seen = read_at, published
                    return self.client, self.manifest
            try:
                return self._switch_to(pointer.version, read_at, published)
            except Exception:
                # The version vanished under us (GC after the pointer moved on): follow the
                # pointer again. If it did not move, the failure is real.
                moved = self.store.read_pointer(self.collection)
                if moved is None or moved.version == pointer.version or attempt == _MAX_POINTER_MOVES - 1:
                    raise
                log.warning("version %s went away while downloading; following the pointer to %s",
                            pointer.version, moved.version)
        raise AssertionError("unreachable")

    def _switch_to(self, version: str, read_at: float, published: int,
                   manifest: VersionManifest | None = None) -> tuple[ChromaDBClient, VersionManifest]:
        """Fetch what is missing and open new segments (queries go on meanwhile), then swap."""
        if manifest is None:
            manifest = self.store.read_manifest(self.collection, version)
        checkpoint(self.settings, "reader_before_download")  # a slow reader: GC must wait for it
        version_dir = self.local.materialize(manifest)
        opened = self._open_new_segments(manifest)
        client = SegmentedClient(version_dir, segments_of(manifest), read_masks(version_dir), self.settings,
                                 parts=[opened.get(k) or self._parts[k] for k in segment_keys(manifest)],
                                 aliases={self.collection: manifest.inner_collection})
        with self._lock:
            self._parts.update(opened)
            # A query of another thread may still be running on the previous version: its
            # segments stay open, and its files kept, until the next switch.
            self._retired_manifest = self.manifest
            self.client, self.version, self.manifest = client, version, manifest
            self._pointer_read_at, self._publishes_seen = read_at, published
            kept = [m for m in (manifest, self._retired_manifest) if m is not None]
            in_use = {k for m in kept for k in segment_keys(m)}
            unused = [self._parts.pop(k) for k in [k for k in self._parts if k not in in_use]]
        for part in unused:
            part.close()
        self.local.prune(keep=kept)
        self.stats.versions_opened += 1
        self.stats.segments_opened += len(opened)
        self.stats.segments_reused += len(segment_keys(manifest)) - len(opened)
        log.info("reader of %s now on version %s (%d segments, %d of them reused)", self.collection,
                 self.version, len(segment_keys(manifest)), len(segment_keys(manifest)) - len(opened))
        return client, manifest

    def _open_new_segments(self, manifest: VersionManifest) -> dict[str, ChromaDBClient]:
        """Clients on the segments not open yet, each searched once so that its index is
        loaded before a query needs it."""
        opened: dict[str, ChromaDBClient] = {}
        dimension = manifest.dimension
        for segment, key in zip(segments_of(manifest), segment_keys(manifest)):
            if (key in self._parts and self._parts[key].alive) or key in opened:
                continue
            part = ChromaDBClient(self.local.segment_path(manifest, segment), mode="read", settings=self.settings)
            inside = manifest.inner_collection
            if dimension and part.count(inside):
                part.query(inside, query_embeddings=[[1.0] * dimension], n_results=1, include=[])
            opened[key] = part
        return opened

    # -- following the pointer in the background ---------------------------------------------

    def _start_follower(self) -> None:
        """Bounded reads then never wait for a download: a thread re-reads the pointer once per
        TTL while queries come, and switches versions beside them."""
        if not self.settings.reader_follow_pointer or self.settings.reader_pointer_ttl_seconds <= 0:
            return
        with self._lock:
            if self._follower is not None and self._follower.is_alive():
                return
            self._stop.clear()
            self._follower = threading.Thread(target=self._follow, name=f"vp-reader-{self.collection}", daemon=True)
            self._follower.start()

    def _follow(self) -> None:
        ttl = self.settings.reader_pointer_ttl_seconds
        while not self._stop.wait(ttl):
            if time.monotonic() - self._used_at > max(FOLLOWER_IDLE_SECONDS, 10 * ttl):
                return  # idle: the next query reads the pointer itself and starts a new follower
            try:
                with self._switching:
                    if not self._stop.is_set():
                        self._follow_pointer(publishes_here(self._publish_key))
            except Exception:
                log.warning("reader of %s could not follow the pointer (queries will retry)", self.collection,
                            exc_info=True)

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
            result = client.query(self.collection, query_embeddings=query_embeddings, n_results=n_results,
                                  where=where, include=include)
            if where is None:  # a sampled share is re-answered exactly off this path (live_recall.py)
                self.live_recall.offer(client, manifest, query_embeddings, result["ids"], n_results)
            return result
        state = self._merge_state(manifest)
        self.pending.look(state.applied_delta_ids, force=consistency is ReadConsistency.STRONG)
        overlay = self.pending.overlay(manifest.version, state)
        return query_with_overlay(client, self.collection, overlay, query_embeddings, n_results, where, include,
                                  space=manifest.space)

    def _merge_state(self, manifest: VersionManifest) -> MergeState:
        """The version's merge state (its parts fetched the first time fresh reads need
        them; replayed once per process, shared read-only with the compactor's cache)."""
        version = manifest.version
        if self._state is None or self._state[0] != version:
            state = load_state(self.store.bucket, self.collection, manifest,
                               lambda entry: self.local.blob(manifest, entry.path).read_bytes())
            self._state = (version, state)
        return self._state[1]

    def _embed(self, texts: list[str], manifest: VersionManifest) -> list[list[float]]:
        if self._provider is None:
            self._provider = provider_from_settings(self.settings)
        vectors = self._provider.embed(texts)
        check_same_embedding(f"query of {self.collection}", self._provider.name, len(vectors[0]) if vectors else 0,
                             manifest.embedding_provider, manifest.dimension)
        return vectors

    def close(self) -> None:
        self._stop.set()
        if self._follower is not None and self._follower is not threading.current_thread():
            self._follower.join(timeout=30)
        with self._switching, self._lock:
            for part in self._parts.values():
                part.close()
            self._parts.clear()
            self.client, self.version, self.manifest, self._retired_manifest = None, None, None, None
            self._follower = None


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
