"""The thin Dagster layer over the library: assets, checks, sensors, jobs, resources.

Collections are data: the snapshot assets and the compaction job are partitioned by
collection (dynamic partitions the sensors add), so nothing here depends on which
collections exist, and a collection created at run time needs no reload.
"""


import dagster as dg

from vector_pipeline.config import Settings

from .assets import delta, snapshot, snapshot_candidate
from .checks import vector_count_matches
from .jobs import compaction_job, gc_job, rollback_job, validate_delta_job
from .resources import pipeline_resource
from .schedules import gc_schedule, nightly_fold
from .sensors import sensors


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    return dg.Definitions(
        assets=[delta, snapshot_candidate, snapshot],
        asset_checks=[vector_count_matches],
        jobs=[validate_delta_job, compaction_job, rollback_job, gc_job],
        sensors=sensors([validate_delta_job, compaction_job]),
        schedules=[nightly_fold, gc_schedule],
        resources={"vector_pipeline": pipeline_resource(settings)},
    )
