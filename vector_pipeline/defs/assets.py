"""Assets: ``delta`` (one partition per producer batch) → ``snapshot_candidate`` (written,
not visible) → ``snapshot`` (published by the pointer swap); the snapshot assets are
partitioned by collection, so lineage stays three boxes however many collections there are.

Write-audit-publish: the candidate asset writes a new immutable version under the lock;
the blocking check in ``checks.py`` audits it; only then does the snapshot asset move the
pointer (conditional PUT) and archive the applied deltas. Queue messages are the sensor's
to delete (``queue``): the run reads what is pending from ``delta/<collection>/``.
"""


import time
from collections.abc import Iterator
from typing import Any

import dagster as dg

from vector_pipeline.io import metrics as vp_metrics
from vector_pipeline.compaction.audit import audit_candidate
from vector_pipeline.table.catalog import CollectionCatalog, UnknownCollectionError
from vector_pipeline.compaction.compactor import ChromaCompactor
from vector_pipeline.format.keys import InvalidDeltaError, delta_id_time
from vector_pipeline.io.lock import CompactionLock
from vector_pipeline.compaction.maintenance import plan_rebuild
from vector_pipeline.compaction.retention import parse_time
from vector_pipeline.table.snapshot_store import PublishOutcome
from vector_pipeline.compaction.version_writer import Candidate

from .checks import audit_check, audit_check_result, candidate_recall, recall_check, recall_check_result
from .partitions import collection_partitions, delta_partitions, ref_for_partition
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
    """What a compaction run merges: the collection's pending deltas under delta/ (default,
    plus any ``delta_keys``), or a rebuild from archive/ (optionally up to a delta id, with new
    HNSW settings); ``fold_segments`` also folds the recent segments back into the base."""

    rebuild_from_archive: bool = False
    fold_segments: bool = False
    until_delta_id: str | None = None
    as_of: str | None = None  # a rebuild of the deltas produced up to this time (ISO 8601)
    hnsw_search_ef: int | None = None
    delta_keys: list[str] = []


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


@dg.asset(key="snapshot_candidate", partitions_def=collection_partitions, group_name="snapshots",
          deps=[dg.AssetDep(delta, partition_mapping=dg.AllPartitionMapping())], kinds={"chromadb", "s3"},
          check_specs=[audit_check, recall_check])
def snapshot_candidate(context: dg.AssetExecutionContext, config: CompactionConfig,
                       vector_pipeline: VectorPipelineResource) -> Iterator[dg.Output[Candidate] | dg.AssetCheckResult]:
    """A new immutable version of the collection (the partition): written, not yet published."""
    collection = context.partition_key
    settings = vector_pipeline.settings()
    compactor = ChromaCompactor(settings=settings)
    lock = vector_pipeline.lock(collection)
    started = time.monotonic()
    lock_wait = acquire_waiting(lock, context.log)
    try:
        hnsw = CollectionCatalog(settings).hnsw_with_search_ef(collection, config.hnsw_search_ef) \
            if config.hnsw_search_ef else None
        if config.rebuild_from_archive:
            plan = plan_rebuild(settings, collection, until_delta_id=config.until_delta_id,
                                as_of=parse_time(config.as_of) if config.as_of else None, hnsw=hnsw)
            keys, options = plan.keys, plan.write_options
        else:
            keys = sorted(set(config.delta_keys) | set(compactor.list_pending_delta_keys(collection)))
            options = {"fold_all": config.fold_segments, "hnsw": hnsw}
        context.log.info(f"merging up to {len(keys)} deltas into {collection}")
        candidate = compactor.write_candidate(collection, keys, fence=lock.fence, lock_owner=lock.owner, **options)
    except UnknownCollectionError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    except Exception:
        vp_metrics.publish(settings, vp_metrics.attempt_points("failed", time.monotonic() - started, lock_wait > 1.0))
        raise
    finally:
        lock.release()
    # acquire_waiting sleeps 2 s per busy try: a longer wait means the lock was held.
    vp_metrics.publish(settings, vp_metrics.attempt_points("ok", time.monotonic() - started, lock_wait > 1.0))
    audit = audit_check_result(settings, candidate)  # reads the candidate back whole
    recall = candidate_recall(settings, candidate) if audit.passed else None
    metadata = _candidate_metadata(candidate, time.monotonic() - started, lock_wait)
    if recall is not None:  # plotted over the versions the collection publishes
        metadata["recall_at_k"] = dg.MetadataValue.float(recall.recall_at_k)
        candidate.recall_at_k = recall.recall_at_k
    yield dg.Output(candidate, metadata=metadata)
    yield audit  # blocking: a failure stops the publish step
    yield recall_check_result(settings, candidate, recall)  # blocking below the collection's recall floor


@dg.asset(key="snapshot", partitions_def=collection_partitions, group_name="snapshots", kinds={"chromadb", "s3"},
          ins={"candidate": dg.AssetIn("snapshot_candidate")})
def snapshot(context: dg.AssetExecutionContext, candidate: Candidate,
             vector_pipeline: VectorPipelineResource) -> dg.MaterializeResult:
    """The published version of the collection (the partition): what readers query (pointer latest.json)."""
    collection = context.partition_key
    settings = vector_pipeline.settings()
    audit = audit_candidate(settings, candidate)  # never publish an unaudited candidate
    if not audit.passed:
        raise dg.Failure(description=f"audit of {candidate.version} failed: {audit.problem}", metadata=audit.facts)
    compactor = ChromaCompactor(settings=settings)
    lock = vector_pipeline.lock(collection)
    acquire_waiting(lock, context.log)
    try:
        if candidate.manifest is not None and compactor.publish_candidate(candidate) is PublishOutcome.CONFLICT:
            raise dg.Failure(description=f"the {collection} pointer moved since {candidate.version} was "
                                         "written: nothing published; the next run merges again")
        compactor.acknowledge(candidate, {})  # archive applied deltas, quarantine poison ones
    finally:
        lock.release()
    vp_metrics.publish(settings, vp_metrics.publish_points(
        compactor.store, collection, len(candidate.applied),
        candidate.version if candidate.manifest is not None else None, candidate.base_version))
    pointer = compactor.store.read_pointer(collection)
    count = int(pointer.document["vector_count"]) if pointer else 0
    return dg.MaterializeResult(metadata={
        "published": candidate.manifest is not None,
        "version": pointer.version if pointer else "",
        "vector_count": dg.MetadataValue.int(count),
        "dagster/row_count": count,
        "deltas_applied": len(candidate.applied),
        "deltas_archived": len(candidate.applied) + len(candidate.already_applied),
        "quarantined": len(candidate.quarantined),
        **({"recall_at_k": dg.MetadataValue.float(candidate.recall_at_k)}  # the published version's, plotted
           if candidate.manifest is not None and candidate.recall_at_k is not None else {}),
    })


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
