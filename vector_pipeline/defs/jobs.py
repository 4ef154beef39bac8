"""Jobs: validate one delta; compact a collection (also its rebuild and fold, by config);
roll a collection back; collect garbage of every collection."""


from datetime import datetime, timedelta, timezone

import dagster as dg

from vector_pipeline.table.catalog import CollectionCatalog
from vector_pipeline.format.keys import delta_id_time
from vector_pipeline.compaction.maintenance import collect_garbage, rollback
from vector_pipeline.compaction.retention import parse_time
from vector_pipeline.table.snapshot_store import PublishOutcome

from .assets import COMPACTION_TAG, delta, snapshot, snapshot_candidate
from .partitions import delta_partitions, ref_for_partition
from .resources import VectorPipelineResource

validate_delta_job = dg.define_asset_job("validate_delta", selection=[delta],
                                         description="Validate one delta partition (manifest, checksums, dimension).")

COMPACTION_JOB = "compaction"
compaction_job = dg.define_asset_job(
    COMPACTION_JOB, selection=[snapshot_candidate, snapshot],
    tags={COMPACTION_TAG: "true"}, executor_def=dg.in_process_executor,
    description="Merge a collection's pending deltas into a new version, audit it, publish it. By config: "
                "rebuild from archive/ (rebuild_from_archive, until_delta_id, hnsw_search_ef) or fold the "
                "recent segments back into the base (fold_segments).")


def compaction_run_config(**candidate_config: object) -> dict:
    """Run config of the compaction job with the candidate step's ``CompactionConfig``."""
    return {"ops": {"snapshot_candidate": {"config": candidate_config}}}


class RollbackConfig(dg.Config):
    """The version to point readers at, or the time whose current version to restore (ISO 8601)."""

    collection: str
    version: str | None = None
    as_of: str | None = None


@dg.op(tags={"kind": "s3"})
def rollback_pointer(context: dg.OpExecutionContext, config: RollbackConfig,
                     vector_pipeline: VectorPipelineResource) -> None:
    as_of = parse_time(config.as_of) if config.as_of else None
    outcome = rollback(vector_pipeline.settings(), config.collection, config.version, as_of=as_of)
    if outcome is PublishOutcome.CONFLICT:
        raise dg.Failure(description="the pointer moved during the rollback: nothing changed")
    context.log.info(f"{config.collection} rolled back ({config.version or config.as_of})")


@dg.job(description="Point a collection's readers back at an existing version (conditional PUT).")
def rollback_job() -> None:
    rollback_pointer()


class GcConfig(dg.Config):
    """Overrides of every collection's own retention (collections/<name>.json) for this run."""

    retain_versions: int | None = None
    grace_hours: float | None = None
    partition_retention_days: float = 7.0


@dg.op
def collect_snapshot_garbage(context: dg.OpExecutionContext, config: GcConfig,
                             vector_pipeline: VectorPipelineResource) -> None:
    settings = vector_pipeline.settings()
    grace = None if config.grace_hours is None else timedelta(hours=config.grace_hours)
    for collection in CollectionCatalog(settings).names():
        report = collect_garbage(settings, collection, retain_versions=config.retain_versions, grace=grace)
        context.log.info(f"{collection}: deleted {report.deleted_versions}, kept {report.kept_versions}; expired "
                         f"{report.expired_archived_deltas} archived, {report.expired_quarantined_deltas} quarantined deltas")
    removed = prune_delta_partitions(context.instance, timedelta(days=config.partition_retention_days))
    context.log.info(f"removed {removed} delta partitions older than {config.partition_retention_days} days")


def prune_delta_partitions(instance: dg.DagsterInstance, retention: timedelta, now: datetime | None = None) -> int:
    """Drop partitions of deltas produced before the retention (their data stays in archive/)."""
    horizon = (now or datetime.now(timezone.utc)) - retention
    removed = 0
    for key in instance.get_dynamic_partitions(delta_partitions.name):
        if delta_id_time(ref_for_partition(key).delta_id) < horizon:
            instance.delete_dynamic_partition(delta_partitions.name, key)
            removed += 1
    return removed


@dg.job(description="Delete unreferenced snapshot versions past each collection's retention, and old delta partitions.")
def gc_job() -> None:
    collect_snapshot_garbage()
