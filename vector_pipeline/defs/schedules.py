"""Schedules: nightly folds of every collection's segments (the compaction job with
``fold_segments``), then garbage collection of versions and delta partitions."""

import dagster as dg

from .jobs import compaction_job, compaction_run_config, gc_job
from .partitions import collection_partitions

gc_schedule = dg.ScheduleDefinition(job=gc_job, cron_schedule="0 3 * * *", name="nightly_gc",
                                    default_status=dg.DefaultScheduleStatus.RUNNING)


@dg.schedule(job=compaction_job, cron_schedule="0 2 * * *", name="nightly_fold",
             default_status=dg.DefaultScheduleStatus.RUNNING)
def nightly_fold(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    """One fold run per collection partition (each a no-op when it has a single unmasked segment)."""
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return [dg.RunRequest(run_key=f"fold:{collection}:{day}", partition_key=collection,
                          run_config=compaction_run_config(fold_segments=True))
            for collection in context.instance.get_dynamic_partitions(collection_partitions.name)]
