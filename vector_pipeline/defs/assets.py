"""Assets, every one partitioned by collection: ``delta`` (what producers announced,
reported runless by the sensors) → ``snapshot_candidate`` (written, not visible) →
``snapshot`` (published by the pointer swap). Lineage stays three boxes however many
collections there are, and Dagster keeps no object per delta.

Write-audit-publish: the candidate asset writes a new immutable version under the lock;
the blocking check in ``checks.py`` audits it; only then does the snapshot asset move the
pointer (conditional PUT) and archive the applied deltas. The candidate reaches the publish
step as JSON in its materialization (``compaction.handoff``: its S3 manifest key and the
pointer ETag it read), never through an IO manager, so each step may run in its own
container. Validation happens once, in the compaction's intake (``deltas_valid``).

Metadata: numbers describe the version written (a run that wrote none records none, so no
plot dips to zero), and each collection's history rides in its own partition (``history``).
"""

import time
from enum import Enum
from typing import Any

import dagster as dg

from vector_pipeline.compaction.compactor import ChromaCompactor
from vector_pipeline.table.catalog import CollectionCatalog
from vector_pipeline.compaction.handoff import from_handoff, manifest_key, to_handoff
from vector_pipeline.compaction.maintenance import plan_rebuild
from vector_pipeline.compaction.retention import parse_time
from vector_pipeline.compaction.audit import audit_candidate
from vector_pipeline.compaction.version_writer import Candidate
from vector_pipeline.io import metrics as vp_metrics
from vector_pipeline.io.lock import CompactionLock
from vector_pipeline.table.catalog import UnknownCollectionError
from vector_pipeline.table.snapshot_store import PublishOutcome

from .checks import CANDIDATE, CANDIDATE_CHECKS, candidate_check_results
from .history import collection_history
from .partitions import collection_partitions
from .resources import VectorPipelineResource

COMPACTION_TAG = "vector_pipeline/compaction"
REBUILD_JOB = "rebuild"
LOCK_WAIT_SECONDS = 120
HANDOFF = "handoff"
# The figures of a collection's versions its partition's ``history`` shows (defs/history.py).
CANDIDATE_HISTORY = ["version", "vector_count", "bytes", "segments", "deltas_applied", "duration_s"]
SNAPSHOT_HISTORY = ["version", "vector_count", "deltas_applied", "recall_at_k"]


class CandidateOutcome(Enum):
    """What the candidate step wrote."""

    WRITTEN = "written"
    NOTHING_NEW = "nothing new"  # nothing pending, or only deltas the version already holds
    QUARANTINED = "every delta quarantined"

    @classmethod
    def of(cls, candidate: Candidate) -> "CandidateOutcome":
        if candidate.manifest is not None:
            return cls.WRITTEN
        return cls.QUARANTINED if candidate.quarantined else cls.NOTHING_NEW

delta = dg.AssetSpec(
    "delta", partitions_def=collection_partitions, group_name="deltas", kinds={"s3", "sqs"},
    description="Producer batches announced for the collection (the partition), reported by the sensors as "
                "runless events: deltas in the batch, first/last delta id, vectors, bytes, backlog, oldest age, "
                "the cadence decision.")


class CompactionConfig(dg.Config):
    """What a run merges: the collection's pending deltas under delta/ (plus any ``delta_keys``);
    in the ``rebuild`` job (or with ``rebuild_from_archive``) the archive up to ``until_delta_id``
    or ``as_of`` (ISO 8601), optionally with new HNSW settings; ``fold_segments`` also folds the
    recent segments back into the base."""

    rebuild_from_archive: bool = False
    fold_segments: bool = False
    until_delta_id: str | None = None
    as_of: str | None = None
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


@dg.asset(key=CANDIDATE, partitions_def=collection_partitions, group_name="snapshots", kinds={"chromadb", "s3"},
          deps=[delta], check_specs=CANDIDATE_CHECKS)
def snapshot_candidate(context: dg.AssetExecutionContext, config: CompactionConfig,
                       vector_pipeline: VectorPipelineResource) -> dg.MaterializeResult:
    """A new immutable version of the collection (the partition): written, not yet published."""
    collection = context.partition_key
    settings = vector_pipeline.settings()
    # Appends merge no tier: the sensors request a base_fold run with tiers: true for that (off the lock).
    compactor = ChromaCompactor(settings=settings, background_tiers=True)
    lock = vector_pipeline.lock(collection)
    started = time.monotonic()
    lock_wait = acquire_waiting(lock, context.log)
    try:
        hnsw = CollectionCatalog(settings).hnsw_with_search_ef(collection, config.hnsw_search_ef) \
            if config.hnsw_search_ef else None
        if config.rebuild_from_archive or context.job_def.name == REBUILD_JOB:
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
    compactor.discard(candidate)  # the publish step works from S3 (the handoff), not from this disk
    # acquire_waiting sleeps 2 s per busy try: a longer wait means the lock was held.
    seconds = time.monotonic() - started
    vp_metrics.publish(settings, vp_metrics.attempt_points("ok", seconds, lock_wait > 1.0))
    checks, recall = candidate_check_results(settings, candidate)
    if recall is not None:  # carried to the publish step (the handoff) and plotted over versions
        candidate.recall_at_k = recall.recall_at_k
    metadata = _candidate_metadata(candidate, seconds, lock_wait)
    metadata.update(collection_history(context.instance, CANDIDATE, collection, metadata, CANDIDATE_HISTORY,
                                       wrote="manifest_key"))
    return dg.MaterializeResult(metadata=metadata, check_results=checks)


@dg.asset(key="snapshot", partitions_def=collection_partitions, group_name="snapshots", kinds={"chromadb", "s3"},
          deps=[snapshot_candidate])
def snapshot(context: dg.AssetExecutionContext, vector_pipeline: VectorPipelineResource) -> dg.MaterializeResult:
    """The published version of the collection (the partition): what readers query (pointer latest.json)."""
    collection = context.partition_key
    settings = vector_pipeline.settings()
    compactor = ChromaCompactor(settings=settings)
    candidate = from_handoff(compactor.store, _handoff_of_this_run(context, collection))
    audit = audit_candidate(settings, candidate)  # never publish an unaudited candidate
    if not audit.passed:
        raise dg.Failure(description=f"audit of {candidate.version} failed: {audit.problem}", metadata=audit.facts)
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
    metadata: dict[str, Any] = {
        "published": candidate.manifest is not None,
        "version": pointer.version if pointer else "(none published)",
        **({} if pointer is None else {  # the published version's size (unchanged when nothing was published)
            "vector_count": dg.MetadataValue.int(pointer.document.vector_count),
            "dagster/row_count": pointer.document.vector_count}),
        "deltas_applied": len(candidate.applied),
        "deltas_archived": len(candidate.applied) + len(candidate.already_applied),
        "quarantined": len(candidate.quarantined),
        **({"recall_at_k": dg.MetadataValue.float(candidate.recall_at_k)}  # the published version's, plotted
           if candidate.manifest is not None and candidate.recall_at_k is not None else {}),
    }
    metadata.update(collection_history(context.instance, "snapshot", collection, metadata, SNAPSHOT_HISTORY,
                                       wrote="published"))
    return dg.MaterializeResult(metadata=metadata)


def _handoff_of_this_run(context: dg.AssetExecutionContext, collection: str) -> dict[str, Any]:
    """The candidate this run (or the run it re-executes) wrote for ``collection``."""
    run = context.run
    runs = {run.run_id, run.parent_run_id, run.root_run_id} - {None}
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(CANDIDATE), asset_partitions=[collection]), limit=1).records
    if not records or records[0].run_id not in runs or HANDOFF not in (records[0].asset_materialization.metadata or {}):
        raise dg.Failure(description=f"no candidate of {collection} written by this run: nothing to publish",
                         allow_retries=False)
    return dict(records[0].asset_materialization.metadata[HANDOFF].value)


def _candidate_metadata(candidate: Candidate, seconds: float, lock_wait: float) -> dict[str, Any]:
    """The run's facts, and the version's figures only when it wrote one (no zero-byte version)."""
    outcome = CandidateOutcome.of(candidate)
    applied = [r.delta_id for r in candidate.applied]
    metadata: dict[str, Any] = {
        "outcome": outcome.value,
        "version": candidate.version if outcome is CandidateOutcome.WRITTEN else f"(none: {outcome.value})",
        "manifest_key": manifest_key(candidate) or "",
        "parent_version": candidate.base_version or "",
        "deltas_applied": len(applied),
        "first_delta_id": min(applied, default=""),
        "last_delta_id": max(applied, default=""),
        "deltas_already_applied": len(candidate.already_applied),
        "deltas_quarantined": dg.MetadataValue.json(candidate.quarantined),
        "deltas_missing": len(candidate.missing),
        "duration_s": dg.MetadataValue.float(round(seconds, 3)),
        "lock_wait_s": dg.MetadataValue.float(round(lock_wait, 3)),
        HANDOFF: dg.MetadataValue.json(to_handoff(candidate)),
    }
    manifest = candidate.manifest
    if manifest is None:
        return metadata
    return {**metadata,
            "vector_count": dg.MetadataValue.int(manifest.vector_count),
            "bytes": dg.MetadataValue.int(manifest.total_bytes),
            "bytes_uploaded": dg.MetadataValue.int(manifest.uploaded_bytes),
            "bytes_downloaded": dg.MetadataValue.int(candidate.bytes_downloaded),
            "fold": str(candidate.fold or ""),
            "segments": len(manifest.segments),
            "merge_s": dg.MetadataValue.float(round(candidate.merge_seconds, 3)),
            "hnsw": dg.MetadataValue.json(dict(manifest.hnsw)),
            **({} if candidate.recall_at_k is None else {"recall_at_k": dg.MetadataValue.float(candidate.recall_at_k)})}
