"""Schedules: garbage collection of each collection, then pruning of old successful runs
(the instance's growth stays bounded). Base folds have no schedule: the sensors request them
when a collection's cadence says so — in its own quiet window (``fold_window``) or past its
bounds (``compaction.cadence``), as ``compact --watch`` does."""

import dagster as dg

from .jobs import gc_job, prune_runs_job
from .partitions import collection_partitions


def _every_collection(context: dg.ScheduleEvaluationContext, what: str) -> list[dg.RunRequest]:
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [dg.RunRequest(run_key=f"{what}:{collection}:{day}", partition_key=collection, run_config={})
            for collection in context.instance.get_dynamic_partitions(collection_partitions.name)]


@dg.schedule(job=gc_job, cron_schedule="0 3 * * *", name="nightly_gc", default_status=dg.DefaultScheduleStatus.RUNNING)
def gc_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """One GC run per collection partition, each under the collection's writer key."""
    return _every_collection(context, "gc")


prune_runs_schedule = dg.ScheduleDefinition(job=prune_runs_job, cron_schedule="30 3 * * *", name="nightly_prune_runs",
                                            default_status=dg.DefaultScheduleStatus.RUNNING)
