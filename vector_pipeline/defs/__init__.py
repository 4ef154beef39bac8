"""The thin Dagster layer over the library: assets, checks, sensors, jobs, resources.

Collections are data: every asset, check and writer job is partitioned by collection
(dynamic partitions the sensors add), so nothing here depends on which collections exist,
and a collection created at run time needs no reload. Deltas are events, not partitions.
"""


import dagster as dg

from vector_pipeline.config import Settings

from .assets import delta, snapshot, snapshot_candidate
from .jobs import FOLD_JOBS, UPKEEP_JOBS, WRITER_JOBS
from .pinecone import pinecone_definitions
from .resources import pipeline_resource
from .schedules import gc_schedule, prune_runs_schedule
from .sensors import delta_sensors


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    definitions = dg.Definitions(
        assets=[delta, snapshot_candidate, snapshot],
        jobs=[*WRITER_JOBS, *FOLD_JOBS, *UPKEEP_JOBS],
        sensors=delta_sensors(),
        schedules=[gc_schedule, prune_runs_schedule],
        resources={"vector_pipeline": pipeline_resource(settings)},
    )
    if settings.pinecone_index_host:  # the Pinecone migration, while one is under way
        definitions = dg.Definitions.merge(definitions, pinecone_definitions())
    return definitions
