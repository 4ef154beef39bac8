"""The embedded AWS (moto's server on loopback) and idempotent resource setup.

``MotoServer`` runs ``moto.server`` as a child process in its own process group, so
whoever started it can stop it — and everything it spawned — by that group.
``setup_resources`` creates the bucket, the delta queue with its dead-letter queue, and
the lock table with TTL, for whatever endpoint the settings name (real AWS included).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from typing import Any

from .aws import client, error_code
from .config import Settings

log = logging.getLogger(__name__)

FAKE_ACCESS_KEY = "testing"
# A message that failed this often is poison: it moves to the dead-letter queue.
MAX_RECEIVE_COUNT = 5


def stop_process_group(process: "subprocess.Popen[Any]", first_signal: int = signal.SIGTERM,
                       grace_seconds: float = 20.0) -> int | None:
    """Stop a child started with ``start_new_session=True`` and all it spawned: the signal,
    then SIGKILL to the whole group after ``grace_seconds`` (dagster dev can ignore SIGTERM)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, first_signal)
            process.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=grace_seconds)
        except ProcessLookupError:
            pass
    return process.returncode


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """``python -m moto.server`` on 127.0.0.1, stopped by process group."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_seconds: float = 30.0) -> "MotoServer":
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.process.returncode}")
            try:
                urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1).close()
                log.info("moto server on %s (pid %d)", self.endpoint_url, self.process.pid)
                return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server did not answer on {self.endpoint_url} in {timeout_seconds}s")

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process_group(process)

    def settings(self, base: Settings | None = None) -> Settings:
        """``base`` pointed at this server, with the fake credentials moto accepts."""
        return replace(base or Settings(), aws_endpoint_url=self.endpoint_url,
                       aws_access_key_id=FAKE_ACCESS_KEY, aws_secret_access_key=FAKE_ACCESS_KEY)

    def __enter__(self) -> "MotoServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def setup_resources(settings: Settings) -> dict[str, Any]:
    """Create bucket, queues and lock table if absent; returns what exists now."""
    return {
        "bucket": _ensure_bucket(settings),
        "queue_url": _ensure_queues(settings),
        "table": _ensure_lock_table(settings),
    }


def _ensure_bucket(settings: Settings) -> str:
    s3 = client("s3", settings)
    try:
        s3.head_bucket(Bucket=settings.vectors_bucket)
        return settings.vectors_bucket
    except Exception as exc:
        if error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise
    args: dict[str, Any] = {"Bucket": settings.vectors_bucket}
    if settings.aws_region != "us-east-1":
        args["CreateBucketConfiguration"] = {"LocationConstraint": settings.aws_region}
    s3.create_bucket(**args)
    if settings.sse != "none":  # the bucket's default follows the objects' own encryption
        default = {"SSEAlgorithm": settings.sse}
        if settings.sse_kms_key_id:
            default["KMSMasterKeyID"] = settings.sse_kms_key_id
        s3.put_bucket_encryption(Bucket=settings.vectors_bucket, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": default}]})
    log.info("created bucket %s", settings.vectors_bucket)
    return settings.vectors_bucket


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


def _ensure_lock_table(settings: Settings) -> str:
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
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"})
    return name
