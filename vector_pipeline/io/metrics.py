"""Operational metrics: one CloudWatch namespace, the same names from Lambda and Dagster.

What it keeps: every process reports the same metrics, with the same single dimension
(``service``), so one alarm covers compactions run by the Lambda function and by Dagster.
Two ways out, chosen by ``Settings.metrics_sink``:

- ``emf``: CloudWatch's embedded metric format, printed on stdout by AWS Lambda Powertools'
  ``Metrics`` (on Lambda, CloudWatch Logs extracts the metrics: no API call, no latency);
- ``cloudwatch``: ``PutMetricData`` through boto3 (Dagster runs in containers, the CLI):
  a process outside Lambda has nobody reading its stdout for metrics.

``metrics_from_emf`` reads EMF blobs back into data points: what CloudWatch Logs does on
AWS, and what the tests use to forward a handler's output to the embedded CloudWatch.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, Iterable, Sequence

from .aws import client
from ..config import Settings

log = logging.getLogger(__name__)

SERVICE = "vector-pipeline"
SERVICE_DIMENSION = "service"


class MetricsSink(str, Enum):
    NONE = "none"
    EMF = "emf"
    CLOUDWATCH = "cloudwatch"


class Metric(str, Enum):
    """The metric names; alarms in deploy/template.yaml refer to these."""

    COMPACTION_ATTEMPTS = "CompactionAttempts"  # every attempt, busy ones included
    COMPACTION_LOCK_BUSY = "CompactionLockBusy"  # 1 when the lock was held by another
    COMPACTION_FAILED = "CompactionFailed"  # 1 when nothing could be published
    COMPACTION_DURATION = "CompactionDuration"  # seconds, lock to publish
    DELTAS_PROCESSED = "DeltasProcessed"
    SNAPSHOT_BYTES = "SnapshotBytes"  # total bytes of the published version
    SNAPSHOT_GROWTH = "SnapshotGrowthPercent"  # growth over the parent version; summed per day
    PRODUCER_CALLS = "ProducerCalls"
    PRODUCER_ERRORS = "ProducerErrors"
    READER_RECALL = "ReaderRecallAtK"  # recall@k of one sampled live query against exact search (0..1)


UNITS = {
    Metric.COMPACTION_DURATION: "Seconds",
    Metric.SNAPSHOT_BYTES: "Bytes",
    Metric.SNAPSHOT_GROWTH: "Percent",
    Metric.READER_RECALL: "None",
}


@dataclass(frozen=True)
class DataPoint:
    metric: Metric
    value: float

    @property
    def unit(self) -> str:
        return UNITS.get(self.metric, "Count")


def attempt_points(status: str, duration_seconds: float, lock_was_busy: bool = False) -> list[DataPoint]:
    """One compaction attempt ended in ``status`` (``CompactionStatus``); ``lock_was_busy``:
    it found the lock held first and waited (Dagster), which counts as a busy attempt too."""
    points = [DataPoint(Metric.COMPACTION_ATTEMPTS, 1), DataPoint(Metric.COMPACTION_LOCK_BUSY, 1),
              DataPoint(Metric.COMPACTION_FAILED, 0)] if lock_was_busy else []
    points += [
        DataPoint(Metric.COMPACTION_ATTEMPTS, 1),
        DataPoint(Metric.COMPACTION_LOCK_BUSY, 1 if status == "busy" else 0),
        DataPoint(Metric.COMPACTION_FAILED, 1 if status == "failed" else 0),
    ]
    if status != "busy":
        points.append(DataPoint(Metric.COMPACTION_DURATION, duration_seconds))
    return points


def publish_points(store: Any, collection: str, deltas_processed: int, version: str | None,
                   previous_version: str | None) -> list[DataPoint]:
    """What a publish (or a no-op) added: deltas, and the published version's size and
    growth over its parent, read from the manifests (``version`` None: nothing published)."""
    points = [DataPoint(Metric.DELTAS_PROCESSED, deltas_processed)]
    snapshot_bytes = version_bytes(store, collection, version)
    if snapshot_bytes is not None:
        points.append(DataPoint(Metric.SNAPSHOT_BYTES, snapshot_bytes))
        parent_bytes = version_bytes(store, collection, previous_version)
        if parent_bytes:
            points.append(DataPoint(Metric.SNAPSHOT_GROWTH, 100.0 * (snapshot_bytes - parent_bytes) / parent_bytes))
    return points


def compaction_points(store: Any, collection: str, status: str, duration_seconds: float, deltas_processed: int,
                      version: str | None, previous_version: str | None) -> list[DataPoint]:
    """Everything one whole compaction (``compact_deltas``: lock, write, publish) reports."""
    points = attempt_points(status, duration_seconds)
    if status != "busy":
        published = version if status == "ok" else None
        points += publish_points(store, collection, deltas_processed, published, previous_version)
    return points


def reader_recall_points(recalls: Iterable[float]) -> list[DataPoint]:
    """recall@k of live queries a reader re-answered exhaustively (their average over a
    period is the running recall the alarm watches)."""
    return [DataPoint(Metric.READER_RECALL, value) for value in recalls]


def producer_points(failed: bool) -> list[DataPoint]:
    return [DataPoint(Metric.PRODUCER_CALLS, 1), DataPoint(Metric.PRODUCER_ERRORS, 1 if failed else 0)]


def version_bytes(store: Any, collection: str, version: str | None) -> int | None:
    """``total_bytes`` of a version's manifest (None when there is no version)."""
    if not version:
        return None
    return store.read_manifest(collection, version).total_bytes


def publish(settings: Settings, points: Sequence[DataPoint], emf: Any | None = None) -> None:
    """Send ``points`` where ``settings.metrics_sink`` says. ``emf`` is the caller's
    Powertools ``Metrics`` (handlers flush it in their decorator); without one, EMF points
    are flushed here."""
    sink = MetricsSink(settings.metrics_sink)
    if sink is MetricsSink.NONE or not points:
        return
    if sink is MetricsSink.CLOUDWATCH:
        put_metric_data(settings, points)
        return
    target = emf if emf is not None else powertools_metrics(settings)
    for point in points:
        target.add_metric(name=point.metric.value, unit=point.unit, value=point.value)
    if emf is None:
        target.flush_metrics()


def powertools_metrics(settings: Settings) -> Any:
    from aws_lambda_powertools import Metrics

    return Metrics(namespace=settings.metrics_namespace, service=SERVICE)


def put_metric_data(settings: Settings, points: Iterable[DataPoint],
                    timestamp: datetime | None = None) -> None:
    """PutMetricData in the settings' namespace, with the ``service`` dimension (EMF's)."""
    when = timestamp or datetime.now(timezone.utc)
    data = [{"MetricName": p.metric.value, "Unit": p.unit, "Value": float(p.value), "Timestamp": when,
             "Dimensions": [{"Name": SERVICE_DIMENSION, "Value": SERVICE}]} for p in points]
    cloudwatch = client("cloudwatch", settings)
    for start in range(0, len(data), 1000):  # PutMetricData takes up to 1000 data points
        cloudwatch.put_metric_data(Namespace=settings.metrics_namespace, MetricData=data[start:start + 1000])


def recent_average(settings: Settings, metric: Metric, seconds: int = 3600) -> dict[str, Any] | None:
    """The metric's average and sample count over the last ``seconds`` (``service``
    dimension), from CloudWatch; None when nothing was reported or CloudWatch cannot say."""
    now = datetime.now(timezone.utc)
    try:
        found = client("cloudwatch", settings).get_metric_statistics(
            # One period over the window and a minute past now: a point stamped this instant counts.
            Namespace=settings.metrics_namespace, MetricName=metric.value, StartTime=now - timedelta(seconds=seconds),
            EndTime=now + timedelta(seconds=60), Period=seconds + 60, Statistics=["Average", "SampleCount"],
            Dimensions=[{"Name": SERVICE_DIMENSION, "Value": SERVICE}])["Datapoints"]
    except Exception:  # no CloudWatch here (or no access): status says nothing of it
        log.debug("no %s from CloudWatch", metric.value, exc_info=True)
        return None
    samples = sum(int(p["SampleCount"]) for p in found)
    if not samples:
        return None
    average = sum(p["Average"] * p["SampleCount"] for p in found) / samples
    return {"average": round(float(average), 4), "samples": samples, "seconds": seconds}


def metrics_from_emf(lines: Iterable[str]) -> list[tuple[str, DataPoint]]:
    """(namespace, point) for every metric in the EMF blobs among ``lines``; other lines
    (ordinary logs) are skipped."""
    found: list[tuple[str, DataPoint]] = []
    for line in lines:
        line = line.strip()
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for directive in blob["_aws"].get("CloudWatchMetrics", []):
            for definition in directive.get("Metrics", []):
                values = blob.get(definition["Name"])
                for value in values if isinstance(values, list) else [values]:
                    found.append((directive["Namespace"], DataPoint(Metric(definition["Name"]), float(value))))
    return found
