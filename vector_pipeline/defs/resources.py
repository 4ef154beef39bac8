"""Resources: the pipeline's settings as Dagster config, built from the one model (``Settings``).

The AWS side is three dagster-aws style resources — ``S3Resource``, ``SQSResource``,
``DynamoDBLockResource`` — and they are the ones used: the library builds every client from
their endpoint, region and credentials, reads the queue named by ``SQSResource`` and takes
the lock in ``DynamoDBLockResource``'s table with its TTL (``VectorPipelineResource.settings``).
Every other setting is a field of ``VectorPipelineResource`` made from ``Settings``' own fields:
named as its environment key in lower case, described as in docs/configuration.md, holding the
value as the environment spells it (unset: the default). So adding a setting to ``Settings``
adds it here, and ``settings()`` reads the fields back through ``Settings.from_env``, as the
CLI and the Lambda handlers read theirs: a Dagster run and a CLI run of one environment behave
alike. Secrets (``Settings``' ``SecretStr`` fields) are only ever ``EnvVar``s: the UI shows the
variable's name, never its value, and a secret the code location's environment does not hold
is refused when the definitions load.
"""

import os

import dagster as dg
import pydantic
from dagster_aws.s3 import S3Resource
from dagster_aws.utils import ResourceWithBoto3Configuration

from vector_pipeline.config import Settings
from vector_pipeline.environment import service_endpoint_keys
from vector_pipeline.io.lock import CompactionLock, lock_id_for

# The environment keys the AWS resources own (their fields): not repeated as settings fields.
_AWS_OWNED_KEYS = frozenset({"DELTA_QUEUE_NAME", "DYNAMODB_TABLE_NAME", "COMPACTION_LOCK_TTL_SECONDS",
                             "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"})
_AWS_RESOURCE_SERVICES = ("s3", "sqs", "dynamodb")
# Every other environment key of Settings: one field each.
SETTING_KEYS = tuple(key for key in Settings.env_keys() if key not in _AWS_OWNED_KEYS)


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


class _PipelineResource(dg.ConfigurableResource):
    s3: S3Resource
    sqs: SQSResource
    dynamodb_lock: DynamoDBLockResource
    # Endpoints of services other than the three above (cloudwatch, logs, ...): service → URL.
    aws_service_endpoints: dict[str, str] = {}

    def environment(self) -> dict[str, str]:
        """The settings this resource holds besides the AWS resources', as environment keys."""
        held = {key: getattr(self, key.lower()) for key in SETTING_KEYS}
        return {**{key: value for key, value in held.items() if value is not None},
                **service_endpoint_keys(tuple(self.aws_service_endpoints.items()))}

    def settings(self) -> Settings:
        """The library's settings: the AWS resources' fields, then the settings fields."""
        base = Settings.from_env(self.environment())
        general = base.aws_endpoint_url
        endpoints = dict(base.aws_service_endpoints)
        for service, resource in zip(_AWS_RESOURCE_SERVICES, (self.s3, self.sqs, self.dynamodb_lock)):
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


VectorPipelineResource = pydantic.create_model(
    "VectorPipelineResource", __base__=_PipelineResource, __module__=__name__,
    __doc__="The vector pipeline: bucket (S3), delta queue (SQS), lock table (DynamoDB), and every other setting.",
    **{key.lower(): (str | None, pydantic.Field(None, description=Settings.model_fields[name].description))
       for key, name in Settings.env_keys().items() if key in SETTING_KEYS})


def pipeline_resource(settings: Settings) -> _PipelineResource:
    """The resource for ``settings`` (from ``Settings.from_env()`` in definitions.py)."""
    env = settings.local_aws_environment()
    secrets = Settings.secret_keys()
    boto = dict(region_name=settings.aws_region, aws_access_key_id=settings.aws_access_key_id,
                aws_secret_access_key=_secret("AWS_SECRET_ACCESS_KEY", env.get("AWS_SECRET_ACCESS_KEY"), settings))
    return VectorPipelineResource(
        s3=S3Resource(endpoint_url=settings.endpoint_url_for("s3"), **boto),
        sqs=SQSResource(queue_name=settings.delta_queue_name, endpoint_url=settings.endpoint_url_for("sqs"), **boto),
        dynamodb_lock=DynamoDBLockResource(table_name=settings.dynamodb_table_name, ttl_seconds=settings.lock_ttl_seconds,
                                           endpoint_url=settings.endpoint_url_for("dynamodb"), **boto),
        aws_service_endpoints={service: url for service, url in settings.aws_service_endpoints
                               if service not in _AWS_RESOURCE_SERVICES},
        **{key.lower(): _secret(key, value, settings) if key in secrets else value
           for key, value in env.items() if key in SETTING_KEYS},
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
