"""The thin Dagster layer over the library: assets, checks, sensors, jobs, resources.

Collections are data: the snapshot assets and the compaction job are partitioned by
collection (dynamic partitions the sensors add), so nothing here depends on which
collections exist, and a collection created at run time needs no reload.
"""


import dagster as dg

from vector_pipeline.config import Settings

from .assets import delta, snapshot, snapshot_candidate
from .jobs import compaction_job, gc_job, rollback_job, validate_delta_job
from .pinecone import pinecone_definitions
from .resources import pipeline_resource
from .schedules import gc_schedule, nightly_fold
from .sensors import sensors


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    definitions = dg.Definitions(
        assets=[delta, snapshot_candidate, snapshot],
        jobs=[validate_delta_job, compaction_job, rollback_job, gc_job],
        sensors=sensors([validate_delta_job, compaction_job]),
        schedules=[nightly_fold, gc_schedule],
        resources={"vector_pipeline": pipeline_resource(settings)},
    )
    if settings.pinecone_index_host:  # the Pinecone migration, while one is under way
        definitions = dg.Definitions.merge(definitions, pinecone_definitions())
    return definitions
