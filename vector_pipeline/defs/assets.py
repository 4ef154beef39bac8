"""Assets: ``delta`` (one partition per producer batch) → ``<collection>/snapshot_candidate``
(written, not visible) → ``<collection>/snapshot`` (published by the pointer swap).

Write-audit-publish: the candidate asset writes a new immutable version under the lock;
the blocking check in ``checks.py`` audits it; only then does the snapshot asset move the
pointer (conditional PUT) and acknowledge messages and archive deltas.
"""


import time
from typing import Any

import dagster as dg

from vector_pipeline import metrics as vp_metrics
from vector_pipeline.audit import audit_candidate
from vector_pipeline.compactor import Candidate, ChromaCompactor
from vector_pipeline.config import HnswSettings
from vector_pipeline.delta import InvalidDeltaError, delta_id_time
from vector_pipeline.lock import CompactionLock
from vector_pipeline.maintenance import archived_delta_keys
from vector_pipeline.queue import DeltaQueue
from vector_pipeline.snapshot_store import PublishOutcome

from .partitions import delta_partitions, ref_for_partition
from .resources import VectorPipelineResource

COMPACTION_TAG = "vector_pipeline/compaction"
LOCK_WAIT_SECONDS = 120


@dg.asset(partitions_def=delta_partitions, group_name="deltas", kinds={"s3", "chromadb"})
def delta(context: dg.AssetExecutionContext, vector_pipeline: VectorPipelineResource) -> dg.MaterializeResult:
    """One producer batch of upserts and tombstones, validated (manifest, checksums, dimension)."""
    ref = ref_for_partition(context.partition_key)
    compactor = ChromaCompactor(settings=vector_pipeline.settings())
    try:
        loaded = compactor.validate_delta(ref)
    except InvalidDeltaError as exc:
        raise dg.Failure(description=f"delta {ref.key} is invalid and was quarantined: {exc.reason}",
                         metadata={"reason": exc.reason, "delta_key": ref.key}, allow_retries=False) from None
    except FileNotFoundError:
        raise dg.Failure(description=f"delta {ref.key} has no manifest (not complete, or lost)",
                         metadata={"delta_key": ref.key}) from None
    manifest = loaded.manifest
    context.log.info(f"{ref.key}: {len(loaded.ids)} vectors, {len(loaded.delete_ids)} deletes, valid")
    return dg.MaterializeResult(metadata={
        "collection": ref.collection,
        "delta_key": ref.key,
        "vectors": len(loaded.ids),
        "deletes": len(loaded.delete_ids),
        "bytes": dg.MetadataValue.int(int(manifest.get("total_bytes", 0))),
        "dimension": loaded.dimension,
        "embedding_provider": loaded.embedding_provider,
        "produced_at": dg.MetadataValue.timestamp(delta_id_time(ref.delta_id).timestamp()),
        "dagster/row_count": len(loaded.ids),
    })


class CompactionConfig(dg.Config):
    """What a compaction run merges: pending deltas (default) or a rebuild from archive/;
    ``fold_segments`` also folds the recent segments back into the base (the background merge)."""

    rebuild_from_archive: bool = False
    fold_segments: bool = False
    until_delta_id: str | None = None
    hnsw_search_ef: int | None = None
    delta_keys: list[str] = []
    receipt_handles: dict[str, str] = {}


def acquire_waiting(lock: CompactionLock, log: Any, wait_seconds: float = LOCK_WAIT_SECONDS) -> float:
    """Take the lock, waiting up to ``wait_seconds`` for a holder outside Dagster; seconds waited."""
    started = time.monotonic()
    while not lock.acquire():
        if time.monotonic() - started > wait_seconds:
            raise dg.Failure(description=f"lock {lock.lock_id} busy for {wait_seconds:.0f}s: retry later",
                             metadata={"holder": str(lock.holder().owner)})
        log.info(f"lock {lock.lock_id} busy; waiting")
        time.sleep(2)
    lock.start_heartbeat()
    return time.monotonic() - started


def snapshot_assets(collection: str) -> list[dg.AssetsDefinition]:
    candidate_key = dg.AssetKey([collection, "snapshot_candidate"])

    @dg.asset(key=candidate_key, deps=[delta], group_name=collection, kinds={"chromadb", "s3"},
              description=f"New immutable version of the {collection} snapshot: written, not yet published.",
              op_tags={COMPACTION_TAG: collection})
    def snapshot_candidate(context: dg.AssetExecutionContext, config: CompactionConfig,
                           vector_pipeline: VectorPipelineResource) -> dg.Output[dict[str, Any]]:
        settings = vector_pipeline.settings()
        compactor = ChromaCompactor(settings=settings)
        lock = vector_pipeline.lock(collection)
        started, started_at = time.monotonic(), time.time()
        lock_wait = acquire_waiting(lock, context.log)
        try:
            if config.rebuild_from_archive:
                keys = archived_delta_keys(settings, collection, config.until_delta_id)
            else:
                keys = sorted(set(config.delta_keys) | set(compactor.list_pending_delta_keys(collection)))
            context.log.info(f"merging up to {len(keys)} deltas into {collection}")
            hnsw = HnswSettings(search_ef=config.hnsw_search_ef) if config.hnsw_search_ef else None
            candidate = compactor.write_candidate(collection, keys, fence=lock.fence, lock_owner=lock.owner,
                                                  from_scratch=config.rebuild_from_archive, hnsw=hnsw,
                                                  fold_all=config.fold_segments)
        finally:
            lock.release()
        # started_at / lock_waited: for the run's metrics (acquire_waiting sleeps 2 s per busy try).
        return dg.Output({"candidate": candidate, "receipt_handles": dict(config.receipt_handles),
                          "started_at": started_at, "lock_waited": lock_wait > 1.0},
                         metadata=_candidate_metadata(candidate, time.monotonic() - started, lock_wait))

    @dg.asset(key=[collection, "snapshot"], ins={"candidate": dg.AssetIn(candidate_key)}, group_name=collection,
              kinds={"chromadb", "s3"}, op_tags={COMPACTION_TAG: collection},
              description=f"The published {collection} snapshot: what readers query (pointer latest.json).")
    def snapshot(context: dg.AssetExecutionContext, candidate: dict[str, Any],
                 vector_pipeline: VectorPipelineResource) -> dg.MaterializeResult:
        settings = vector_pipeline.settings()
        written: Candidate = candidate["candidate"]
        audit = audit_candidate(settings, written)  # never publish an unaudited candidate
        if not audit.passed:
            raise dg.Failure(description=f"audit of {written.version} failed: {audit.problem}", metadata=audit.facts)
        compactor = ChromaCompactor(settings=settings)
        lock = vector_pipeline.lock(collection)
        acquire_waiting(lock, context.log)
        try:
            if written.manifest is not None and compactor.publish_candidate(written) is PublishOutcome.CONFLICT:
                raise dg.Failure(description=f"the {collection} pointer moved since {written.version} was "
                                             "written: nothing published; the next run merges again")
            acked = compactor.acknowledge(written, candidate["receipt_handles"])
            acked += DeltaQueue(settings).ack_applied(
                collection, {r.delta_id for r in written.applied + written.already_applied}, written.quarantined)
        finally:
            lock.release()
        vp_metrics.publish(settings, vp_metrics.published_points(
            compactor.store, collection, "ok" if written.manifest is not None else "noop",
            time.time() - candidate.get("started_at", time.time()), len(written.applied), written.version,
            written.base_version, candidate.get("lock_waited", False)))
        pointer = compactor.store.read_pointer(collection)
        return dg.MaterializeResult(metadata={
            "published": written.manifest is not None,
            "version": pointer.version if pointer else "",
            "vector_count": dg.MetadataValue.int(int(pointer.document["vector_count"]) if pointer else 0),
            "dagster/row_count": int(pointer.document["vector_count"]) if pointer else 0,
            "deltas_applied": len(written.applied),
            "deltas_archived": len(written.applied) + len(written.already_applied),
            "messages_acked": acked,
            "quarantined": len(written.quarantined),
        })

    return [snapshot_candidate, snapshot]


def _candidate_metadata(candidate: Candidate, seconds: float, lock_wait: float) -> dict[str, Any]:
    manifest = candidate.manifest or {}
    return {
        "version": candidate.version or "(none: nothing pending)",
        "parent_version": candidate.base_version or "",
        "vector_count": dg.MetadataValue.int(int(manifest.get("vector_count", candidate.base_vector_count))),
        "bytes": dg.MetadataValue.int(int(manifest.get("total_bytes", 0))),
        "bytes_uploaded": dg.MetadataValue.int(int(manifest.get("uploaded_bytes", 0))),
        "bytes_downloaded": dg.MetadataValue.int(candidate.bytes_downloaded),
        "deltas_applied": len(candidate.applied),
        "deltas_already_applied": len(candidate.already_applied),
        "deltas_quarantined": dg.MetadataValue.json(candidate.quarantined),
        "deltas_missing": len(candidate.missing),
        "fold": str(candidate.fold or ""),
        "segments": len(manifest.get("segments", [])),
        "merge_s": dg.MetadataValue.float(round(candidate.merge_seconds, 3)),
        "duration_s": dg.MetadataValue.float(round(seconds, 3)),
        "lock_wait_s": dg.MetadataValue.float(round(lock_wait, 3)),
        "hnsw": dg.MetadataValue.json(manifest.get("hnsw", {})),
    }
