"""What ``cadence.due`` reads of a collection — its catalog settings and its published
version's segments — for every scheduler that follows it (``compact --watch``, the Dagster
sensors): one path from the bucket to a ``Decision``.

Invariant: read-only, and cheap enough to run for hundreds of collections every tick. A
decision reads the collection's pointer (one small GET); the catalog record is kept for
``ttl_seconds`` (a ``collections set`` reaches the decisions within it) and the published
version's manifest while the pointer names that version (a published version never changes).
A stale read only delays a decision: ``due`` decides *when*, never *what* a compaction holds.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Callable, Iterable

from ..format.segments import tier_merge_due
from ..format.version_manifest import VersionManifest, segments_of
from ..config import Settings
from ..table.catalog import CollectionCatalog, CollectionConfig
from ..table.snapshot_store import SnapshotStore
from .cadence import Decision, PendingStats, due

CATALOG_TTL_SECONDS = 60.0


class CadenceReader:
    """``due`` for a collection from what the bucket says, with the catalog and manifests cached."""

    def __init__(self, settings: Settings, *, ttl_seconds: float = CATALOG_TTL_SECONDS,
                 store: SnapshotStore | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.ttl_seconds = ttl_seconds
        self.catalog = CollectionCatalog(settings)
        self.store = store or SnapshotStore(settings)
        self._clock = clock
        self._configs: dict[str, tuple[float, CollectionConfig]] = {}  # collection -> (read at, config)
        self._manifests: dict[str, tuple[str, VersionManifest]] = {}  # collection -> (version, manifest)

    def config(self, collection: str) -> CollectionConfig:
        """The collection's settings (the deployment's defaults before its record exists)."""
        cached = self._configs.get(collection)
        if cached is None or self._clock() - cached[0] > self.ttl_seconds:
            config = self.catalog.get_or_defaults(collection)
            cached = self._configs[collection] = (self._clock(), config)
        return cached[1]

    def published_manifest(self, collection: str) -> VersionManifest | None:
        """The manifest of the version the pointer names now (None: nothing published)."""
        pointer = self.store.read_pointer(collection)
        if pointer is None:
            self._manifests.pop(collection, None)
            return None
        cached = self._manifests.get(collection)
        if cached is None or cached[0] != pointer.version:
            cached = self._manifests[collection] = (pointer.version,
                                                    self.store.read_manifest(collection, pointer.version))
        return cached[1]

    def tier_merge_due(self, collection: str, manifest: VersionManifest | None = None) -> bool:
        """``manifest`` (by default the one the last look at ``collection`` read: no request) has a
        tier at the fan-in, under the collection's segment policy."""
        if manifest is None:
            cached = self._manifests.get(collection)
            manifest = None if cached is None else cached[1]
        return manifest is not None and tier_merge_due(segments_of(manifest),
                                                       self.config(collection).apply_to(self.settings))

    def decide(self, collection: str, pending_keys: Iterable[str], *, lead_seconds: float | None = None,
               last_fold_at: datetime | None = None, now: datetime | None = None) -> Decision:
        """``due`` for ``collection`` with these pending delta keys: compact now? fold its base?"""
        stats = PendingStats.of(pending_keys, self.published_manifest(collection), lead_seconds=lead_seconds,
                                last_fold_at=last_fold_at)
        return due(self.config(collection), stats, now)
