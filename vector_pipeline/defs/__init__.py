"""The thin Dagster layer over the library: assets, checks, sensors, jobs, resources."""


import dagster as dg

from vector_pipeline.config import Settings

from .assets import delta, snapshot_assets
from .checks import snapshot_checks
from .jobs import collection_jobs, gc_job, rollback_job, validate_delta_job
from .pinecone import pinecone_definitions
from .resources import pipeline_resource
from .schedules import fold_schedules, gc_schedule
from .sensors import sensors


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    collections = list(settings.collections)
    compaction_jobs = [job for c in collections for job in collection_jobs(c)]
    definitions = dg.Definitions(
        assets=[delta, *[a for c in collections for a in snapshot_assets(c)]],
        asset_checks=[check for c in collections for check in snapshot_checks(c)],
        jobs=[validate_delta_job, *compaction_jobs, rollback_job, gc_job],
        sensors=sensors([validate_delta_job, *compaction_jobs]),
        schedules=[*fold_schedules(collections, compaction_jobs), gc_schedule],
        resources={"vector_pipeline": pipeline_resource(settings)},
    )
    if settings.pinecone_index_host:  # the Pinecone migration, while one is under way
        definitions = dg.Definitions.merge(definitions, pinecone_definitions(settings))
    return definitions
