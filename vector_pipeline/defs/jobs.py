"""Jobs: validate one delta; compact a collection (also its rebuild and fold, by config);
roll a collection back; collect garbage of every collection."""


from datetime import datetime, timedelta, timezone

import dagster as dg

from vector_pipeline.catalog import CollectionCatalog
from vector_pipeline.delta_keys import delta_id_time
from vector_pipeline.maintenance import collect_garbage, rollback
from vector_pipeline.snapshot_store import PublishOutcome

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
    collection: str
    version: str


@dg.op(tags={"kind": "s3"})
def rollback_pointer(context: dg.OpExecutionContext, config: RollbackConfig,
                     vector_pipeline: VectorPipelineResource) -> None:
    outcome = rollback(vector_pipeline.settings(), config.collection, config.version)
    if outcome is PublishOutcome.CONFLICT:
        raise dg.Failure(description="the pointer moved during the rollback: nothing changed")
    context.log.info(f"{config.collection} now points at {config.version}")


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
    catalog = CollectionCatalog(settings)
    for collection in catalog.names():
        retention = catalog.require(collection).retention
        keep = retention.versions_kept if config.retain_versions is None else config.retain_versions
        grace = retention.grace_hours if config.grace_hours is None else config.grace_hours
        report = collect_garbage(settings, collection, retain_versions=keep, grace=timedelta(hours=grace))
        context.log.info(f"{collection}: deleted {report.deleted_versions}, kept {report.kept_versions}")
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
