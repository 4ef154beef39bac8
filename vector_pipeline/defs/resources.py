"""Resources: where the pipeline's bucket, queue and lock table live, as Dagster config.

Each maps onto the library's ``Settings``; nothing here talks to AWS by itself except
through the library. Values come from ``Settings.from_env()`` in ``definitions.py``; an
unset endpoint means real AWS.
"""


import dagster as dg
from dagster_aws.s3 import S3Resource
from dagster_aws.utils import ResourceWithBoto3Configuration

from vector_pipeline.config import HnswSettings, Settings
from vector_pipeline.lock import CompactionLock, lock_id_for


class SQSResource(ResourceWithBoto3Configuration):
    """The SQS delta queue (and its dead-letter queue, ``<name>-dlq``)."""

    queue_name: str


class DynamoDBLockResource(ResourceWithBoto3Configuration):
    """The DynamoDB compaction lock table: one lock per collection, with TTL and heartbeat."""

    table_name: str
    ttl_seconds: int = 900

    def lock(self, collection: str, settings: Settings) -> CompactionLock:
        return CompactionLock(lock_id_for(collection), table_name=self.table_name,
                              ttl_seconds=self.ttl_seconds, settings=settings)


class VectorPipelineResource(dg.ConfigurableResource):
    """The vector pipeline: bucket (S3), delta queue (SQS), lock table (DynamoDB), local cache."""

    s3: S3Resource
    sqs: SQSResource
    dynamodb_lock: DynamoDBLockResource
    bucket: str
    cache_dir: str
    embedding_provider: str = "minilm"
    collections: list[str] = ["words", "lines"]
    hnsw_search_ef: int = 100

    def settings(self) -> Settings:
        """The library's settings for exactly this resource's endpoint and names."""
        return Settings(
            vectors_bucket=self.bucket,
            delta_queue_name=self.sqs.queue_name,
            dynamodb_table_name=self.dynamodb_lock.table_name,
            lock_ttl_seconds=self.dynamodb_lock.ttl_seconds,
            aws_endpoint_url=self.s3.endpoint_url,
            aws_region=self.s3.region_name or "us-east-1",
            aws_access_key_id=self.s3.aws_access_key_id,
            aws_secret_access_key=self.s3.aws_secret_access_key,
            cache_dir=self.cache_dir,
            embedding_provider=self.embedding_provider,
            hnsw=HnswSettings(search_ef=self.hnsw_search_ef),
            collections=tuple(self.collections),
        )

    def lock(self, collection: str) -> CompactionLock:
        return self.dynamodb_lock.lock(collection, self.settings())


def pipeline_resource(settings: Settings) -> VectorPipelineResource:
    """The resource for ``settings`` (from ``Settings.from_env()`` in definitions.py)."""
    boto = dict(region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url,
                aws_access_key_id=settings.aws_access_key_id, aws_secret_access_key=settings.aws_secret_access_key)
    return VectorPipelineResource(
        s3=S3Resource(**boto),
        sqs=SQSResource(queue_name=settings.delta_queue_name, **boto),
        dynamodb_lock=DynamoDBLockResource(table_name=settings.dynamodb_table_name,
                                           ttl_seconds=settings.lock_ttl_seconds, **boto),
        bucket=settings.vectors_bucket,
        cache_dir=settings.cache_dir,
        embedding_provider=settings.embedding_provider,
        collections=list(settings.collections),
        hnsw_search_ef=settings.hnsw.search_ef,
    )
