"""Jobs: validate one delta, compact, rebuild or fold a collection, roll back, collect garbage."""


from datetime import datetime, timedelta, timezone
from typing import Any

import dagster as dg

from vector_pipeline.maintenance import collect_garbage, rollback
from vector_pipeline.snapshot_store import PublishOutcome

from .assets import COMPACTION_TAG, delta
from .partitions import delta_partitions, ref_for_partition
from .resources import VectorPipelineResource

validate_delta_job = dg.define_asset_job("validate_delta", selection=[delta],
                                         description="Validate one delta partition (manifest, checksums, dimension).")


def compaction_job_name(collection: str) -> str:
    return f"compact_{collection}"


def candidate_op_name(collection: str) -> str:
    return f"{collection}__snapshot_candidate"


def collection_jobs(collection: str) -> list[Any]:
    selection = dg.AssetSelection.assets([collection, "snapshot_candidate"], [collection, "snapshot"])
    tags = {COMPACTION_TAG: collection}
    compact = dg.define_asset_job(
        compaction_job_name(collection), selection=selection, tags=tags,
        executor_def=dg.in_process_executor,
        description=f"Merge pending {collection} deltas into a new version, audit it, publish it.")
    rebuild = dg.define_asset_job(
        f"rebuild_{collection}", selection=selection, tags=tags, executor_def=dg.in_process_executor,
        config={"ops": {candidate_op_name(collection): {"config": {"rebuild_from_archive": True}}}},
        description=f"Rebuild {collection} from archive/ (optionally up to a delta id, with new HNSW "
                    "settings) into a new version, audited and published.")
    fold = dg.define_asset_job(
        fold_job_name(collection), selection=selection, tags=tags, executor_def=dg.in_process_executor,
        config={"ops": {candidate_op_name(collection): {"config": {"fold_segments": True}}}},
        description=f"Fold {collection}'s recent segments (and pending deltas) back into its base: one "
                    "segment, no masked ids; audited and published like a compaction.")
    return [compact, rebuild, fold]


def fold_job_name(collection: str) -> str:
    return f"fold_{collection}"


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
    retain_versions: int = 5
    grace_hours: float = 1.0
    partition_retention_days: float = 7.0


@dg.op
def collect_snapshot_garbage(context: dg.OpExecutionContext, config: GcConfig,
                             vector_pipeline: VectorPipelineResource) -> None:
    settings = vector_pipeline.settings()
    for collection in settings.collections:
        report = collect_garbage(settings, collection, retain_versions=config.retain_versions,
                                 grace=timedelta(hours=config.grace_hours))
        context.log.info(f"{collection}: deleted {report.deleted_versions}, kept {report.kept_versions}")
    removed = prune_delta_partitions(context.instance, timedelta(days=config.partition_retention_days))
    context.log.info(f"removed {removed} delta partitions older than {config.partition_retention_days} days")


def prune_delta_partitions(instance: dg.DagsterInstance, retention: timedelta, now: datetime | None = None) -> int:
    """Drop partitions of deltas produced before the retention (their data stays in archive/)."""
    from vector_pipeline.delta import delta_id_time

    horizon = (now or datetime.now(timezone.utc)) - retention
    removed = 0
    for key in instance.get_dynamic_partitions(delta_partitions.name):
        if delta_id_time(ref_for_partition(key).delta_id) < horizon:
            instance.delete_dynamic_partition(delta_partitions.name, key)
            removed += 1
    return removed


@dg.job(description="Delete unreferenced snapshot versions past retention and old delta partitions.")
def gc_job() -> None:
    collect_snapshot_garbage()
