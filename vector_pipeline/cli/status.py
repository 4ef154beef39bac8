"""What a bucket holds now, per collection: published version and counts, the versions stored
(a manifest each) and the prefixes GC left because a stored version shares their segments, pending and
quarantined deltas and the oldest pending one's age against the collection's freshness target
(with ``cadence.due``'s decision), lock holder and expiry; queue and dead-letter depth,
readers' live recall@k. Reads only; used by the CLI and the Dagster layer."""

from __future__ import annotations

import time
from typing import Any

from ..table.catalog import CollectionCatalog
from ..compaction.cadence import PendingStats, due
from ..compaction.compactor import ChromaCompactor
from ..compaction.stored import stored_versions
from ..config import Settings
from ..format.keys import QUARANTINE_PREFIX, parse_delta_key
from ..io import metrics
from ..io.lock import CompactionLock, lock_id_for
from ..migration.mirror import mirror_lag
from ..delta.queue import DeltaQueue
from ..table.snapshot_store import SnapshotStore


def collection_status(settings: Settings) -> dict[str, Any]:
    store = SnapshotStore(settings)
    catalog = CollectionCatalog(settings)
    pending: dict[str, list[str]] = {}
    for key in ChromaCompactor(settings=settings).list_pending_delta_keys():
        pending.setdefault(parse_delta_key(key).collection, []).append(key)
    collections = sorted(set(store.list_collections()) | set(pending) | set(catalog.names()))
    report: dict[str, Any] = {"bucket": settings.vectors_bucket, "endpoints": settings.describe_endpoints(),
                              "collections": {}}
    for collection in collections:
        pointer = store.read_pointer(collection)
        holder = CompactionLock(lock_id_for(collection), settings=settings).holder()
        manifest = None if pointer is None else store.read_manifest(collection, pointer.version)
        config = catalog.get_or_defaults(collection)
        decision = due(config, PendingStats.of(pending.get(collection, []), manifest))
        stored = stored_versions(store, catalog, collection)
        report["collections"][collection] = {
            "version": pointer.version if pointer else None,
            "vector_count": pointer.document.vector_count if pointer else None,
            "published_at": pointer.document.published_at if pointer else None,
            "versions_stored": len(stored.versions),
            # prefixes without a manifest: a deleted version's segments a stored version reads, or a write in progress
            "version_leftovers": [leftover.as_dict() for leftover in stored.leftovers],
            "pending_deltas": len(pending.get(collection, [])),
            "oldest_pending_age_s": decision.pending_age_seconds and round(decision.pending_age_seconds, 1),
            "freshness_target_s": config.freshness_target_seconds,
            "segments": None if manifest is None else len(manifest.segments),
            "cadence": decision.as_dict(),
            "quarantined_deltas": quarantined_count(store, collection),
            "lock_owner": holder.owner if holder.is_live else None,
            "lock_expires_in_s": round(holder.expires - time.time()) if holder.is_live else None,
            "lock_fence": holder.fence,
            "pinecone_mirror": mirror_lag(settings, collection, pointer.version if pointer else None),
        }
    queue = DeltaQueue(settings)
    report["queue"] = {**queue.approximate_depth(), "dead_lettered": queue.dead_letter_depth()}
    # Readers' live queries re-answered exactly (read/live_recall.py), over the last hour.
    report["reader_recall"] = metrics.recent_average(settings, metrics.Metric.READER_RECALL)
    return report


def quarantined_count(store: SnapshotStore, collection: str) -> int:
    """Deltas of ``collection`` under ``quarantine/`` (each beside the reason it was refused)."""
    paginator = store.s3.get_paginator("list_objects_v2")
    return sum(len(page.get("CommonPrefixes", [])) for page in paginator.paginate(
        Bucket=store.bucket, Prefix=f"{QUARANTINE_PREFIX}{collection}/", Delimiter="/"))
