"""Jobs. Writers of a collection, each partitioned by collection and tagged with the one
concurrency key ``WRITER_TAG`` (the run queue admits one run per collection across them):
``compaction`` (also a fold, by config), ``rebuild`` (from archive/, launched as a backfill),
``rollback_job``, ``gc_job``. The base fold (``base_fold``, requested by the sensors when the
cadence says so) takes a key of its own, ``FOLD_TAG``: it merges off the collection's lock and
rebases onto what was appended meanwhile, so compactions of the collection go on beside it;
one fold per collection at a time. Instance upkeep, no key: ``prune_runs`` (old successful runs)
and ``upgrade_from_per_delta_layout`` (what the per-delta layout left in the instance).

Why a tag and not a ``pool``: pools are fixed names, one limit each; "one writer per
collection" is a limit per value, which the run queue's ``tag_concurrency_limits`` gives
with ``applyLimitPerUniqueValue`` (dagster.yaml, deploy/dagster/dagster.yaml).
"""

from datetime import datetime, timedelta, timezone

import dagster as dg

from vector_pipeline.compaction.base_fold import FoldOutcome, fold_base, fold_tiers
from vector_pipeline.compaction.maintenance import collect_garbage, rollback
from vector_pipeline.compaction.retention import parse_time
from vector_pipeline.table.snapshot_store import PublishOutcome

from .assets import COMPACTION_TAG, REBUILD_JOB, SNAPSHOT_HISTORY, snapshot, snapshot_candidate
from .history import collection_history
from .partitions import LEGACY_DELTA_PARTITIONS, collection_partitions
from .resources import VectorPipelineResource

WRITER_TAG = "vector_pipeline/writer"
FOLD_TAG = "vector_pipeline/fold"
COMPACTION_JOB = "compaction"
FOLD_JOB = "base_fold"


def writer_config(tag: str = WRITER_TAG) -> dg.PartitionedConfig:
    """Run config per collection partition (none by default) and ``tag`` (the writer tag) = the collection."""
    return dg.PartitionedConfig(partitions_def=collection_partitions, run_config_for_partition_key_fn=lambda _: {},
                                tags_for_partition_key_fn=lambda collection: {tag: collection})


compaction_job = dg.define_asset_job(
    COMPACTION_JOB, selection=[snapshot_candidate, snapshot], config=writer_config(),
    tags={COMPACTION_TAG: "true"}, executor_def=dg.in_process_executor,
    description="Merge a collection's pending deltas into a new version, audit it, publish it (requested by "
                "the sensors, one per collection at a time). By config: fold the recent segments back into "
                "the base (fold_segments).")

rebuild_job = dg.define_asset_job(
    REBUILD_JOB, selection=[snapshot_candidate, snapshot], config=writer_config(),
    tags={COMPACTION_TAG: "rebuild"}, executor_def=dg.in_process_executor,
    description="Rebuild collections from archive/ (launch as a backfill over chosen collections). Config of "
                "snapshot_candidate: until_delta_id or as_of (ISO 8601), hnsw_search_ef.")


def compaction_run_config(**candidate_config: object) -> dict:
    """Run config of the compaction (or rebuild) job with the candidate step's ``CompactionConfig``."""
    return {"ops": {"snapshot_candidate": {"config": candidate_config}}}


class FoldConfig(dg.Config):
    """``tiers``: merge the recent tiers that reached the fan-in instead of folding the base."""

    tiers: bool = False


TIER_MERGE_RUN_CONFIG = {"ops": {"fold_base_off_the_lock": {"config": {"tiers": True}}}}


@dg.op(tags={"kind": "chromadb"})
def fold_base_off_the_lock(context: dg.OpExecutionContext, config: FoldConfig,
                           vector_pipeline: VectorPipelineResource) -> None:
    """``compaction.base_fold.fold_base`` (or ``fold_tiers``) of the partition's collection, as
    ``compact --watch`` runs it."""
    collection = context.partition_key
    done = (fold_tiers if config.tiers else fold_base)(vector_pipeline.settings(), collection)
    what = "tier merge" if config.tiers else "base fold"
    context.log.info(f"{what} of {collection}: {done.outcome}, version {done.result.version}, "
                     f"{done.fold_seconds:.1f}s off the lock, {done.locked_seconds:.2f}s under it")
    if done.outcome is FoldOutcome.BUSY:
        raise dg.Failure(description=f"the lock of {collection} stayed held: nothing folded; the next decision retries")
    if done.outcome in (FoldOutcome.PUBLISHED, FoldOutcome.REBASED):  # a published version: snapshot[c]
        count = done.result.vector_count or 0
        metadata: dict = {"published": True, "version": done.result.version or "",
                          "vector_count": dg.MetadataValue.int(count), "dagster/row_count": count, "deltas_applied": 0,
                          "fold": str(done.outcome), "fold_kind": str(done.result.fold),
                          "rebased_onto": done.rebased_onto or "",
                          "fold_s": dg.MetadataValue.float(round(done.fold_seconds, 3)),
                          "locked_s": dg.MetadataValue.float(round(done.locked_seconds, 3))}
        metadata.update(collection_history(context.instance, "snapshot", collection, metadata, SNAPSHOT_HISTORY,
                                           wrote="published"))
        context.log_event(dg.AssetMaterialization(asset_key="snapshot", partition=collection, metadata=metadata))


@dg.job(name=FOLD_JOB, config=writer_config(FOLD_TAG),
        description="Fold a collection's (the partition's) published version into one base segment, off the lock, "
                    "rebased onto what was appended meanwhile (requested by the sensors: quiet window or bounds); "
                    "with tiers: true, merge the recent tiers that reached the fan-in (the compaction job's "
                    "appends leave them to it).")
def base_fold_job() -> None:
    fold_base_off_the_lock()


class RollbackConfig(dg.Config):
    """The version to point readers at, or the time whose current version to restore (ISO 8601)."""

    version: str | None = None
    as_of: str | None = None


@dg.op(tags={"kind": "s3"})
def rollback_pointer(context: dg.OpExecutionContext, config: RollbackConfig,
                     vector_pipeline: VectorPipelineResource) -> None:
    collection = context.partition_key
    as_of = parse_time(config.as_of) if config.as_of else None
    outcome = rollback(vector_pipeline.settings(), collection, config.version, as_of=as_of)
    if outcome is PublishOutcome.CONFLICT:
        raise dg.Failure(description="the pointer moved during the rollback: nothing changed")
    context.log.info(f"{collection} rolled back ({config.version or config.as_of})")


@dg.job(config=writer_config(),
        description="Point a collection's (the partition's) readers back at an existing version (conditional PUT).")
def rollback_job() -> None:
    rollback_pointer()


class GcConfig(dg.Config):
    """Overrides of the collection's own retention (collections/<name>.json) for this run."""

    retain_versions: int | None = None
    grace_hours: float | None = None


@dg.op
def collect_snapshot_garbage(context: dg.OpExecutionContext, config: GcConfig,
                             vector_pipeline: VectorPipelineResource) -> None:
    collection = context.partition_key
    grace = None if config.grace_hours is None else timedelta(hours=config.grace_hours)
    report = collect_garbage(vector_pipeline.settings(), collection, retain_versions=config.retain_versions, grace=grace)
    context.log.info(f"{collection}: deleted {report.deleted_versions}, kept {report.kept_versions}; expired "
                     f"{report.expired_archived_deltas} archived, {report.expired_quarantined_deltas} quarantined deltas")


@dg.job(config=writer_config(),
        description="Delete the collection's unreferenced snapshot versions past its retention, and expired deltas.")
def gc_job() -> None:
    collect_snapshot_garbage()


class PruneRunsConfig(dg.Config):
    """Successful runs older than ``keep_days`` are deleted with their events (failures stay)."""

    keep_days: float = 7.0
    batch: int = 1000


def prune_runs(instance: dg.DagsterInstance, keep: timedelta, now: datetime | None = None,
               batch: int = 1000) -> int:
    """Delete successful runs last updated before ``now - keep``; how many were deleted."""
    horizon = (now or datetime.now(timezone.utc)) - keep
    deleted = 0
    while True:
        records = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS],
                                                         updated_before=horizon), limit=batch)
        for record in records:
            instance.delete_run(record.dagster_run.run_id)
        deleted += len(records)
        if len(records) < batch:
            return deleted


@dg.op
def delete_old_successful_runs(context: dg.OpExecutionContext, config: PruneRunsConfig) -> None:
    deleted = prune_runs(context.instance, timedelta(days=config.keep_days), batch=config.batch)
    context.log.info(f"deleted {deleted} successful runs older than {config.keep_days} days")


@dg.job(description="Bound the instance: delete successful runs (and their events) older than keep_days.")
def prune_runs_job() -> None:
    delete_old_successful_runs()


LEGACY_VALIDATE_JOB = "validate_delta"


def remove_per_delta_layout(instance: dg.DagsterInstance, batch: int = 1000) -> dict[str, int]:
    """Delete the per-delta layout's runs (``validate_delta``, with their events, which held the
    per-delta ``delta`` materializations) and its dynamic partitions; counts of each."""
    runs = 0
    while True:
        records = instance.get_run_records(dg.RunsFilter(job_name=LEGACY_VALIDATE_JOB), limit=batch)
        for record in records:
            instance.delete_run(record.dagster_run.run_id)
        runs += len(records)
        if len(records) < batch:
            break
    keys = instance.get_dynamic_partitions(LEGACY_DELTA_PARTITIONS)
    for key in keys:
        instance.delete_dynamic_partition(LEGACY_DELTA_PARTITIONS, key)
    instance.wipe_asset_cached_status([dg.AssetKey("delta")])
    return {"runs_deleted": runs, "partitions_deleted": len(keys)}


@dg.op
def remove_per_delta_objects(context: dg.OpExecutionContext) -> None:
    removed = remove_per_delta_layout(context.instance)
    context.log.info(f"removed {removed['runs_deleted']} validate_delta runs and "
                     f"{removed['partitions_deleted']} per-delta partitions")


@dg.job(description="Upgrade: remove what the per-delta layout left (validate_delta runs, per-delta partitions). "
                    "Run once after deploying this version; safe to run again.")
def upgrade_from_per_delta_layout() -> None:
    remove_per_delta_objects()


WRITER_JOBS = [compaction_job, rebuild_job, rollback_job, gc_job]
FOLD_JOBS = [base_fold_job]
UPKEEP_JOBS = [prune_runs_job, upgrade_from_per_delta_layout]
