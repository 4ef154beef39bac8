"""Schedules: nightly garbage collection of versions and delta partitions."""

import dagster as dg

from .jobs import gc_job

gc_schedule = dg.ScheduleDefinition(job=gc_job, cron_schedule="0 3 * * *", name="nightly_gc",
                                    default_status=dg.DefaultScheduleStatus.RUNNING)
