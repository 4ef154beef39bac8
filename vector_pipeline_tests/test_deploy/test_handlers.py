"""The Lambda handlers end to end: real-shaped events (direct invokes, an SQS batch built
from the queue's own messages with a poisoned record, a busy lock) against the moto
server, in a Lambda-like process (init once, warm invocations); their EMF output
forwarded to the embedded CloudWatch as CloudWatch Logs does on AWS; the lock-timing
refusal at start-up; bad events refused by field.

Not covered here: the function package installed alone (test_package.py), IAM
(test_iam.py), text embeddings in the handlers (the MiniLM path is the library's, tested
in test_embeddings.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vector_pipeline.io.aws import client
from vector_pipeline.config import Settings
from vector_pipeline.io.lock import CompactionLock, lock_id_for
from vector_pipeline.io.metrics import Metric, SERVICE, SERVICE_DIMENSION, metrics_from_emf, put_metric_data
from vector_pipeline.delta.queue import DeltaQueue, parse_message

from ..conftest import vectors
from .lambda_process import LambdaProcess, lambda_environment


def sqs_event(settings: Settings, poisoned: bool = False) -> dict[str, Any]:
    """The event Lambda's SQS poller would deliver: the queue's own messages, as records."""
    sqs = client("sqs", settings)
    url = DeltaQueue(settings).url
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60,
                                   AttributeNames=["All"]).get("Messages", [])
    records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                "awsRegion": "us-east-1"} for m in messages]
    if poisoned:
        records.insert(1, {**records[0], "messageId": "poisoned-record", "body": "{not json"})
    return {"Records": records}


def produce_event(rng: Any, collection: str = "words", prefix: str = "w", count: int = 3) -> dict[str, Any]:
    return {"collection": collection,
            "items": [{"id": f"{prefix}{i}", "embedding": e, "document": f"doc {i}", "metadata": {"n": i}}
                      for i, e in enumerate(vectors(rng, count))]}


@pytest.fixture
def lambda_process(settings: Settings, tmp_path: Path):
    with LambdaProcess(lambda_environment(settings), tmp_path / "lambda-stdout.log") as process:
        assert process.init.get("ready"), process.init
        yield process


def test_producer_compactor_query_end_to_end_with_a_poisoned_record(lambda_process: LambdaProcess,
                                                                     settings: Settings, rng: Any) -> None:
    produced = lambda_process.invoke("producer_handler", produce_event(rng))["result"]
    assert produced["vectors"] == 3 and produced["delta_key"].startswith("delta/words/")
    assert produced["delta_id"] in produced["delta_key"]

    event = sqs_event(settings, poisoned=True)
    assert len(event["Records"]) == 2
    answer = lambda_process.invoke("compactor_handler", event)["result"]
    assert answer["batchItemFailures"] == [{"itemIdentifier": "poisoned-record"}]
    assert answer["status"] == "ok" and answer["deltas_processed"] == 1

    query = {"collection": "words", "query_embedding": vectors(rng, 1)[0], "n_results": 3}
    first = lambda_process.invoke("query_handler", query)["result"]
    assert sorted(first["ids"][0]) == ["w0", "w1", "w2"]
    # Warm invocation: the local copy under the cache dir answers even with the version's
    # segment files gone from S3 (only the pointer and manifest are read again).
    s3 = client("s3", settings)
    version_objects = [o["Key"] for o in s3.list_objects_v2(Bucket=settings.vectors_bucket,
                                                            Prefix="snapshot/words/")["Contents"]]
    for key in version_objects:
        if "/segments/" in key:
            s3.delete_object(Bucket=settings.vectors_bucket, Key=key)
    again = lambda_process.invoke("query_handler", {**query, "where": {"n": {"$gte": 1}}})["result"]
    assert sorted(again["ids"][0]) == ["w1", "w2"]


def test_busy_lock_reports_every_record_as_failure_then_redelivery_applies(
        lambda_process: LambdaProcess, settings: Settings, rng: Any) -> None:
    for prefix in ("a", "b"):
        lambda_process.invoke("producer_handler", produce_event(rng, prefix=prefix))
    event = sqs_event(settings)
    ids = sorted(r["messageId"] for r in event["Records"])
    holder = CompactionLock(lock_id_for("words"), settings=settings)
    assert holder.acquire()
    try:
        busy = lambda_process.invoke("compactor_handler", event)["result"]
    finally:
        holder.release()
    assert busy["status"] == "busy" and busy["deltas_processed"] == 0
    assert sorted(f["itemIdentifier"] for f in busy["batchItemFailures"]) == ids
    applied = lambda_process.invoke("compactor_handler", event)["result"]
    assert applied == {"status": "ok", "deltas_processed": 2, "batchItemFailures": []}

    # The metrics these invocations printed (EMF) reach CloudWatch, as Logs would extract them.
    emitted = metrics_from_emf(lambda_process.output().splitlines())
    assert {ns for ns, _ in emitted} == {settings.metrics_namespace}
    put_metric_data(settings, [point for _, point in emitted])
    cloudwatch = client("cloudwatch", settings)
    names = {m["MetricName"] for m in cloudwatch.list_metrics(Namespace=settings.metrics_namespace)["Metrics"]}
    assert {Metric.COMPACTION_LOCK_BUSY.value, Metric.COMPACTION_ATTEMPTS.value, Metric.COMPACTION_DURATION.value,
            Metric.DELTAS_PROCESSED.value, Metric.SNAPSHOT_BYTES.value, Metric.PRODUCER_CALLS.value,
            Metric.PRODUCER_ERRORS.value} <= names
    sums = {name: metric_sum(settings, name) for name in ("CompactionLockBusy", "CompactionAttempts",
                                                           "DeltasProcessed", "ProducerCalls", "ProducerErrors")}
    assert sums == {"CompactionLockBusy": 1, "CompactionAttempts": 2, "DeltasProcessed": 2,
                    "ProducerCalls": 2, "ProducerErrors": 0}


def metric_sum(settings: Settings, name: str) -> float:
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    points = client("cloudwatch", settings).get_metric_statistics(
        Namespace=settings.metrics_namespace, MetricName=name, StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(minutes=5), Period=3600, Statistics=["Sum"],
        Dimensions=[{"Name": SERVICE_DIMENSION, "Value": SERVICE}])["Datapoints"]
    return sum(p["Sum"] for p in points)


BAD_EVENTS = [  # (handler, event, the field its ValueError must name)
    ("producer_handler", {"items": []}, "'collection'"),
    ("producer_handler", {"collection": "nope", "items": [{"id": "x", "embedding": [1.0]}]}, "'collection'"),
    ("producer_handler", {"collection": "words", "items": [{"id": "x", "embedding": "1,2"}]}, "'items[0].embedding'"),
    ("producer_handler", {"collection": "words", "items": [{"embedding": [1.0]}]}, "'items[0].id'"),
    ("producer_handler", {"collection": "words", "items": "x"}, "'items'"),
    ("producer_handler", ["not", "an", "object"], "event must be a JSON object"),
    ("query_handler", {"collection": "words"}, "'query_text' or 'query_embedding'"),
    ("query_handler", {"collection": "words", "query_text": "a", "n_results": "5"}, "'n_results'"),
    ("compactor_handler", {"records": []}, "'Records'"),
    ("compactor_handler", {"Records": [{"messageId": "m", "body": "{}"}]}, "'Records[0].receiptHandle'"),
]


def test_bad_event_raises_value_error_naming_the_field(lambda_process: LambdaProcess, settings: Settings) -> None:
    for handler, event, field in BAD_EVENTS:  # one warm process for all: each is refused before any work
        answer = lambda_process.invoke(handler, event)
        assert answer.get("error") == "ValueError" and field in answer["message"], (handler, event, answer)
    assert not client("s3", settings).list_objects_v2(Bucket=settings.vectors_bucket).get("Contents")
    assert not client("sqs", settings).receive_message(QueueUrl=DeltaQueue(settings).url).get("Messages")


def test_lock_lifetime_not_comfortably_longer_than_the_heartbeat_is_refused_at_start(
        settings: Settings, tmp_path: Path) -> None:
    environment = lambda_environment(settings, COMPACTION_LOCK_TTL_SECONDS="60", COMPACTION_HEARTBEAT_SECONDS="45")
    with LambdaProcess(environment, tmp_path / "stdout.log") as process:
        assert process.init["init_error"] == "ValueError"
        assert "COMPACTION_LOCK_TTL_SECONDS=60" in process.init["message"]
        assert "COMPACTION_HEARTBEAT_SECONDS=45" in process.init["message"]


def test_s3_event_notification_on_a_delta_manifest_names_the_delta() -> None:
    body = ('{"Records": [{"eventSource": "aws:s3", "s3": {"object": {"key": '
            '"delta/words/01JABCDEFGHJKMNPQRSTVWXYZ0/manifest.json"}}}]}')
    assert parse_message(body).key == "delta/words/01JABCDEFGHJKMNPQRSTVWXYZ0/"


def test_text_items_are_embedded_and_text_queries_answer(lambda_process: LambdaProcess, settings: Settings) -> None:
    texts = {"t0": "walmart supercenter receipt", "t1": "fresh coffee beans", "t2": "gas station fuel"}
    event = {"collection": "lines", "items": [{"id": i, "text": t, "document": t} for i, t in texts.items()]}
    assert lambda_process.invoke("producer_handler", event)["result"]["vectors"] == 3
    assert lambda_process.invoke("compactor_handler", sqs_event(settings))["result"]["deltas_processed"] == 1
    found = lambda_process.invoke("query_handler", {"collection": "lines", "query_text": "walmart", "n_results": 1})
    assert found["result"]["ids"] == [["t0"]]


def test_a_failing_producer_call_is_counted_as_a_producer_error(settings: Settings, tmp_path: Path,
                                                                 rng: Any) -> None:
    environment = lambda_environment(settings, VECTORS_BUCKET="no-such-bucket")
    with LambdaProcess(environment, tmp_path / "stdout.log") as process:
        answer = process.invoke("producer_handler", produce_event(rng))
        assert answer["error"] == "RuntimeError" and "no-such-bucket" in answer["message"]
        emitted = {point.metric.value: point.value for _, point in metrics_from_emf(process.output().splitlines())}
    assert emitted == {"ProducerCalls": 1, "ProducerErrors": 1}
