"""Schedules: nightly folds of every collection's segments (the compaction job with
``fold_segments``), then garbage collection of each collection, then pruning of old
successful runs (the instance's growth stays bounded)."""

import dagster as dg

from .jobs import compaction_job, compaction_run_config, gc_job, prune_runs_job
from .partitions import collection_partitions


def _every_collection(context: dg.ScheduleEvaluationContext, what: str, run_config: dict | None = None
                      ) -> list[dg.RunRequest]:
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [dg.RunRequest(run_key=f"{what}:{collection}:{day}", partition_key=collection, run_config=run_config or {})
            for collection in context.instance.get_dynamic_partitions(collection_partitions.name)]


@dg.schedule(job=compaction_job, cron_schedule="0 2 * * *", name="nightly_fold",
             default_status=dg.DefaultScheduleStatus.RUNNING)
def nightly_fold(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """One fold run per collection partition (each a no-op when it has a single unmasked segment)."""
    return _every_collection(context, "fold", compaction_run_config(fold_segments=True))


@dg.schedule(job=gc_job, cron_schedule="0 3 * * *", name="nightly_gc", default_status=dg.DefaultScheduleStatus.RUNNING)
def gc_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """One GC run per collection partition, each under the collection's writer key."""
    return _every_collection(context, "gc")


prune_runs_schedule = dg.ScheduleDefinition(job=prune_runs_job, cron_schedule="30 3 * * *", name="nightly_prune_runs",
                                            default_status=dg.DefaultScheduleStatus.RUNNING)
