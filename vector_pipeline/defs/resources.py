"""Resources: where the pipeline's bucket, queue and lock table live, as Dagster config.

``VectorPipelineResource`` carries every library setting as the same environment keys the
CLI and the Lambda handlers read (``Settings.to_env()`` ↔ ``Settings.from_env()``), so a
Dagster run and a CLI run of one environment behave alike. Secrets travel in fields of their
own, as ``EnvVar`` when the code location's environment holds them (the UI shows the
variable's name, never its value). The dagster-aws style sub-resources name the same
endpoints for ops that want a raw client. Nothing here talks to AWS except through the library.
"""

import os


import dagster as dg
from dagster_aws.s3 import S3Resource
from dagster_aws.utils import ResourceWithBoto3Configuration

from vector_pipeline.config import SECRET_ENV_KEYS, Settings
from vector_pipeline.io.lock import CompactionLock, lock_id_for


class SQSResource(ResourceWithBoto3Configuration):
    """The SQS delta queue (and its dead-letter queue, ``<name>-dlq``)."""

    queue_name: str


class DynamoDBLockResource(ResourceWithBoto3Configuration):
    """The DynamoDB compaction lock table: one lock per collection, with TTL and heartbeat."""

    table_name: str
    ttl_seconds: int = 900


class VectorPipelineResource(dg.ConfigurableResource):
    """The vector pipeline: bucket (S3), delta queue (SQS), lock table (DynamoDB), local cache."""

    s3: S3Resource
    sqs: SQSResource
    dynamodb_lock: DynamoDBLockResource
    # Every non-secret setting, keyed as in the environment (config.py's table).
    environment: dict[str, str] = {}
    # The secret settings (config.SECRET_ENV_KEYS), one field each, named as the key in lower case.
    aws_secret_access_key: str | None = None
    openai_api_key: str | None = None
    pinecone_api_key: str | None = None

    def settings(self) -> Settings:
        """The library's settings: exactly those this resource was built from."""
        secrets = {key: getattr(self, key.lower()) for key in SECRET_ENV_KEYS}
        return Settings.from_env({**self.environment, **{k: v for k, v in secrets.items() if v}})

    def lock(self, collection: str) -> CompactionLock:
        return CompactionLock(lock_id_for(collection), settings=self.settings())


def pipeline_resource(settings: Settings) -> VectorPipelineResource:
    """The resource for ``settings`` (from ``Settings.from_env()`` in definitions.py)."""
    env = settings.local_aws_environment()
    secrets = {key.lower(): _secret(key, env[key]) for key in SECRET_ENV_KEYS if key in env}
    boto = dict(region_name=settings.aws_region, aws_access_key_id=settings.aws_access_key_id,
                aws_secret_access_key=secrets.get("aws_secret_access_key"))
    return VectorPipelineResource(
        s3=S3Resource(endpoint_url=settings.endpoint_url_for("s3"), **boto),
        sqs=SQSResource(queue_name=settings.delta_queue_name, endpoint_url=settings.endpoint_url_for("sqs"), **boto),
        dynamodb_lock=DynamoDBLockResource(table_name=settings.dynamodb_table_name, ttl_seconds=settings.lock_ttl_seconds,
                                           endpoint_url=settings.endpoint_url_for("dynamodb"), **boto),
        environment={k: v for k, v in env.items() if k not in SECRET_ENV_KEYS},
        **secrets,
    )


def _secret(key: str, value: str) -> "str | dg.EnvVar":
    """The code location's own variable by name, so its value never reaches the UI."""
    return dg.EnvVar(key) if os.environ.get(key) == value else value
