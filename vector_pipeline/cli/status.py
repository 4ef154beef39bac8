"""What a bucket holds now, per collection: published version and counts, pending and
quarantined deltas, lock holder and expiry; queue and dead-letter depth. Reads only; used by the CLI and the Dagster layer."""

from __future__ import annotations

import time
from typing import Any

from ..table.catalog import CollectionCatalog
from ..compaction.compactor import ChromaCompactor
from ..config import Settings
from ..format.keys import QUARANTINE_PREFIX, parse_delta_key
from ..io.lock import CompactionLock, lock_id_for
from ..migration.mirror import mirror_lag
from ..delta.queue import DeltaQueue
from ..table.snapshot_store import SnapshotStore


def collection_status(settings: Settings) -> dict[str, Any]:
    store = SnapshotStore(settings)
    pending: dict[str, int] = {}
    for key in ChromaCompactor(settings=settings).list_pending_delta_keys():
        collection = parse_delta_key(key).collection
        pending[collection] = pending.get(collection, 0) + 1
    collections = sorted(set(store.list_collections()) | set(pending) | set(CollectionCatalog(settings).names()))
    report: dict[str, Any] = {"bucket": settings.vectors_bucket, "endpoints": settings.describe_endpoints(),
                              "collections": {}}
    for collection in collections:
        pointer = store.read_pointer(collection)
        holder = CompactionLock(lock_id_for(collection), settings=settings).holder()
        report["collections"][collection] = {
            "version": pointer.version if pointer else None,
            "vector_count": pointer.document.get("vector_count") if pointer else None,
            "published_at": pointer.document.get("published_at") if pointer else None,
            "versions_stored": len(store.list_versions(collection)),
            "pending_deltas": pending.get(collection, 0),
            "quarantined_deltas": quarantined_count(store, collection),
            "lock_owner": holder.owner if holder.is_live else None,
            "lock_expires_in_s": round(holder.expires - time.time()) if holder.is_live else None,
            "lock_fence": holder.fence,
            "pinecone_mirror": mirror_lag(settings, collection, pointer.version if pointer else None),
        }
    queue = DeltaQueue(settings)
    report["queue"] = {**queue.approximate_depth(), "dead_lettered": queue.dead_letter_depth()}
    return report


def quarantined_count(store: SnapshotStore, collection: str) -> int:
    """Deltas of ``collection`` under ``quarantine/`` (each beside the reason it was refused)."""
    paginator = store.s3.get_paginator("list_objects_v2")
    return sum(len(page.get("CommonPrefixes", [])) for page in paginator.paginate(
        Bucket=store.bucket, Prefix=f"{QUARANTINE_PREFIX}{collection}/", Delimiter="/"))
