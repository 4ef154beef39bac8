"""Schedules: nightly folds of each collection's segments, then garbage collection of
versions and delta partitions."""

from typing import Any

import dagster as dg

from .jobs import fold_job_name, gc_job

gc_schedule = dg.ScheduleDefinition(job=gc_job, cron_schedule="0 3 * * *", name="nightly_gc",
                                    default_status=dg.DefaultScheduleStatus.RUNNING)


def fold_schedules(collections: list[str], jobs: list[Any]) -> list[dg.ScheduleDefinition]:
    by_name = {job.name: job for job in jobs}
    return [dg.ScheduleDefinition(job=by_name[fold_job_name(c)], cron_schedule="0 2 * * *", name=f"nightly_fold_{c}",
                                  default_status=dg.DefaultScheduleStatus.RUNNING) for c in collections]
