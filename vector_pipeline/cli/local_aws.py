"""The embedded AWS (moto's server on loopback) and idempotent resource setup.

``MotoServer`` runs moto's server, with conditional writes made atomic as on AWS
(``moto_server.py``), as a child process in its own process group
(``processes.start_group``), so whoever started it can stop it — and everything it
spawned — by that group, on a signal too. A process of its own, not moto's in-process
threaded server: the tests SIGSTOP and SIGKILL compactors and whole pytest runs around it,
the suite's CPU-bound work would share its GIL, and benchmarks measure its memory apart.
``setup_resources`` creates the bucket, the delta queue with its dead-letter queue, and
the lock table with TTL, for whatever endpoint the settings name (real AWS included), and
refuses an S3 endpoint that does not enforce conditional writes (``io/conditional_writes.py``).
What is optional is only warned about where a store lacks it: the lock table's TTL (cleanup
of expired lock items, not correctness) and the bucket's default encryption (the objects
carry their own, ``VECTORS_SSE``).
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import urllib.request
from enum import Enum
from typing import Any, Sequence

from ..io.aws import client, error_code
from ..io.conditional_writes import checked_bucket
from ..config import Settings
from .processes import start_group, stop_process_group, wait_until_answering

log = logging.getLogger(__name__)

FAKE_ACCESS_KEY = "testing"
# A message that failed this often is poison: it moves to the dead-letter queue.
MAX_RECEIVE_COUNT = 5


class OptionalFeature(Enum):
    """What setup made of a feature the pipeline can run without."""

    ENABLED = "enabled"
    NOT_REQUESTED = "not requested"  # e.g. bucket default encryption with VECTORS_SSE=none
    UNSUPPORTED = "unsupported by the endpoint"  # warned about; the pipeline runs without it
    LEFT_AS_IS = "left as it was"  # the bucket existed: its settings are its owner's


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """``python -m vector_pipeline.cli.moto_server`` on 127.0.0.1, stopped by process group."""

    def __init__(self, port: int | None = None, server_command: Sequence[str] = ("-m", "vector_pipeline.cli.moto_server")) -> None:
        self.port = port or free_port()
        # What the Python interpreter runs: moto's server module, or a script wrapping it.
        self.server_command = tuple(server_command)
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_seconds: float = 30.0) -> "MotoServer":
        self.process = start_group(
            [sys.executable, *self.server_command, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_answering(self.process, f"{self.endpoint_url}/moto-api/", "moto server", timeout_seconds)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(str(exc)) from None
        log.info("moto server on %s (pid %d)", self.endpoint_url, self.process.pid)
        return self

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process_group(process)

    def settings(self, base: Settings | None = None) -> Settings:
        """``base`` pointed at this server, with the fake credentials moto accepts."""
        return (base or Settings()).replace(aws_endpoint_url=self.endpoint_url, aws_service_endpoints=(),
                                            aws_access_key_id=FAKE_ACCESS_KEY, aws_secret_access_key=FAKE_ACCESS_KEY)

    def __enter__(self) -> "MotoServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def setup_resources(settings: Settings) -> dict[str, Any]:
    """Create bucket, queues and lock table if absent; returns what exists now. Raises
    ``UnsafeEndpointError`` if the bucket's store ignores conditional writes."""
    bucket, encryption = _ensure_bucket(settings)
    checked = checked_bucket(client("s3", settings), settings, fresh=True)
    table, ttl = _ensure_lock_table(settings)
    return {
        "bucket": bucket,
        "queue_url": _ensure_queues(settings),
        "table": table,
        "conditional_writes": f"enforced (If-Match ETag {checked.etag_dialect.value})",
        "bucket_default_encryption": encryption.value,
        "lock_table_ttl": ttl.value,
    }


def _ensure_bucket(settings: Settings) -> tuple[str, OptionalFeature]:
    s3 = client("s3", settings)
    try:
        s3.head_bucket(Bucket=settings.vectors_bucket)
        return settings.vectors_bucket, OptionalFeature.LEFT_AS_IS
    except Exception as exc:
        if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise
    args: dict[str, Any] = {"Bucket": settings.vectors_bucket}
    if settings.aws_region != "us-east-1":
        args["CreateBucketConfiguration"] = {"LocationConstraint": settings.aws_region}
    s3.create_bucket(**args)
    log.info("created bucket %s", settings.vectors_bucket)
    if settings.sse == "none":
        return settings.vectors_bucket, OptionalFeature.NOT_REQUESTED
    default = {"SSEAlgorithm": settings.sse}  # the bucket's default follows the objects' own encryption
    if settings.sse_kms_key_id:
        default["KMSMasterKeyID"] = settings.sse_kms_key_id
    try:
        s3.put_bucket_encryption(Bucket=settings.vectors_bucket, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": default}]})
    except Exception as exc:
        if not error_code(exc):  # not an answer of the store (connection lost, ...)
            raise
        log.warning("bucket %s: default encryption refused (%s); going on: every object this project "
                    "writes carries its own (VECTORS_SSE=%s)", settings.vectors_bucket, error_code(exc), settings.sse)
        return settings.vectors_bucket, OptionalFeature.UNSUPPORTED
    return settings.vectors_bucket, OptionalFeature.ENABLED


def _ensure_queues(settings: Settings) -> str:
    sqs = client("sqs", settings)
    dlq_url = sqs.create_queue(QueueName=settings.dead_letter_queue_name,
                               Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attributes = {
        "VisibilityTimeout": str(settings.lock_ttl_seconds),
        "MessageRetentionPeriod": "1209600",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}),
    }
    try:
        url = sqs.create_queue(QueueName=settings.delta_queue_name, Attributes=attributes)["QueueUrl"]
    except Exception as exc:
        if error_code(exc) != "QueueAlreadyExists":
            raise
        url = sqs.get_queue_url(QueueName=settings.delta_queue_name)["QueueUrl"]
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return str(url)


def _ensure_lock_table(settings: Settings) -> tuple[str, OptionalFeature]:
    dynamodb = client("dynamodb", settings)
    name = settings.dynamodb_table_name
    try:
        dynamodb.describe_table(TableName=name)
    except Exception as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        dynamodb.create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "lock_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "lock_id", "KeyType": "HASH"}],
        )
        dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        log.info("created lock table %s", name)
    try:
        ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
            dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"})
    except Exception as exc:
        if not error_code(exc):
            raise
        log.warning("lock table %s: TTL not available on %s (%s); going on: an expired lock is taken over "
                    "all the same, only its item is not deleted by the table", name,
                    settings.endpoint_url_for("dynamodb") or "AWS", error_code(exc))
        return name, OptionalFeature.UNSUPPORTED
    return name, OptionalFeature.ENABLED
