"""Resources: where the pipeline's bucket, queue and lock table live, as Dagster config.

The AWS side is three dagster-aws style resources — ``S3Resource``, ``SQSResource``,
``DynamoDBLockResource`` — and they are the ones used: the library builds every client from
their endpoint, region and credentials, reads the queue named by ``SQSResource`` and takes
the lock in ``DynamoDBLockResource``'s table with its TTL (``VectorPipelineResource.settings``).
Every other library setting travels as the environment keys the CLI and the Lambda handlers
read (``Settings.to_env()`` ↔ ``Settings.from_env()``), so a Dagster run and a CLI run of one
environment behave alike. Secrets are only ever ``EnvVar``s: the UI shows the variable's
name, never its value, and a secret the code location's environment does not hold is refused
when the definitions load.
"""

import os

import dagster as dg
from dagster_aws.s3 import S3Resource
from dagster_aws.utils import ResourceWithBoto3Configuration

from vector_pipeline.config import SECRET_ENV_KEYS, Settings
from vector_pipeline.io.lock import CompactionLock, lock_id_for

# The environment keys the AWS resources own: left out of ``environment`` (one place each).
_AWS_OWNED_KEYS = frozenset({"DELTA_QUEUE_NAME", "DYNAMODB_TABLE_NAME", "COMPACTION_LOCK_TTL_SECONDS",
                             "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                             "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_DYNAMODB"})


class SQSResource(ResourceWithBoto3Configuration):
    """The SQS delta queue (and its dead-letter queue, ``<name>-dlq``)."""

    queue_name: str


class DynamoDBLockResource(ResourceWithBoto3Configuration):
    """The DynamoDB compaction lock table: one lock per collection, with TTL and heartbeat."""

    table_name: str
    ttl_seconds: int = 900


LOCAL_FAKE_SECRET = "testing"  # local_aws.FAKE_ACCESS_KEY (defs do not import the CLI)


class MissingSecretError(ValueError):
    """A secret setting whose environment variable the code location does not hold."""


class VectorPipelineResource(dg.ConfigurableResource):
    """The vector pipeline: bucket (S3), delta queue (SQS), lock table (DynamoDB), local cache."""

    s3: S3Resource
    sqs: SQSResource
    dynamodb_lock: DynamoDBLockResource
    # Every other non-secret setting, keyed as in the environment (config.py's table).
    environment: dict[str, str] = {}
    # The secrets the library reads besides AWS's (always EnvVar).
    openai_api_key: str | None = None
    pinecone_api_key: str | None = None

    def settings(self) -> Settings:
        """The library's settings: the AWS resources' fields, then ``environment``."""
        secrets = {"OPENAI_API_KEY": self.openai_api_key, "PINECONE_API_KEY": self.pinecone_api_key}
        base = Settings.from_env({**self.environment, **{k: v for k, v in secrets.items() if v}})
        general = base.aws_endpoint_url
        endpoints = dict(base.aws_service_endpoints)
        for service, resource in (("s3", self.s3), ("sqs", self.sqs), ("dynamodb", self.dynamodb_lock)):
            if resource.endpoint_url and resource.endpoint_url != general:
                endpoints[service] = resource.endpoint_url
        return base.with_overrides(
            delta_queue_name=self.sqs.queue_name, dynamodb_table_name=self.dynamodb_lock.table_name,
            lock_ttl_seconds=self.dynamodb_lock.ttl_seconds, aws_region=self.s3.region_name or base.aws_region,
            aws_service_endpoints=tuple(sorted(endpoints.items())),
            aws_access_key_id=self.s3.aws_access_key_id, aws_secret_access_key=self.s3.aws_secret_access_key)

    def lock(self, collection: str) -> CompactionLock:
        """The collection's lock, in ``dynamodb_lock``'s table with its TTL."""
        return CompactionLock(lock_id_for(collection), settings=self.settings())


def pipeline_resource(settings: Settings) -> VectorPipelineResource:
    """The resource for ``settings`` (from ``Settings.from_env()`` in definitions.py)."""
    env = settings.local_aws_environment()
    boto = dict(region_name=settings.aws_region, aws_access_key_id=settings.aws_access_key_id,
                aws_secret_access_key=_secret("AWS_SECRET_ACCESS_KEY", settings.aws_secret_access_key, settings))
    return VectorPipelineResource(
        s3=S3Resource(endpoint_url=settings.endpoint_url_for("s3"), **boto),
        sqs=SQSResource(queue_name=settings.delta_queue_name, endpoint_url=settings.endpoint_url_for("sqs"), **boto),
        dynamodb_lock=DynamoDBLockResource(table_name=settings.dynamodb_table_name, ttl_seconds=settings.lock_ttl_seconds,
                                           endpoint_url=settings.endpoint_url_for("dynamodb"), **boto),
        environment={k: v for k, v in env.items() if k not in SECRET_ENV_KEYS | _AWS_OWNED_KEYS},
        openai_api_key=_secret("OPENAI_API_KEY", settings.openai_api_key, settings),
        pinecone_api_key=_secret("PINECONE_API_KEY", settings.pinecone_api_key, settings),
    )


def _secret(key: str, value: str | None, settings: Settings) -> "dg.EnvVar | str | None":
    """The code location's own variable by name, so its value never reaches the UI. The one
    exception: the fixed fake credential of a local endpoint (moto takes any), not a secret."""
    if value is None:
        return None
    if os.environ.get(key) == value:
        return dg.EnvVar(key)
    if key == "AWS_SECRET_ACCESS_KEY" and settings.uses_custom_endpoints and value == LOCAL_FAKE_SECRET:
        return value
    raise MissingSecretError(f"{key} is set in the settings but not in the code location's environment: "
                             "Dagster takes secrets only as EnvVar (set the variable where the code location runs)")

