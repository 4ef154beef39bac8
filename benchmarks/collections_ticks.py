"""The sensor ticks of the collections profile (``collections.py``, step 2): the real
``delta_queue_sensor`` evaluated with ``build_sensor_context`` against a sqlite
``DagsterInstance``, tick after tick until the queue is empty, each tick's partition adds
applied to the instance and its compaction requests queued as bare run records (as the daemon
would), so the next tick's busy check sees them. Per tick: wall time and every S3/SQS request
by API operation (``RequestLog``: a ``before-send`` hook on the project's shared clients, each
HTTP request, retries included), with the prefix of every listing."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dagster as dg
from dagster._core.utils import make_new_run_id

from vector_pipeline.io.aws import client
from vector_pipeline.config import Settings
from vector_pipeline.delta.queue import DeltaQueue

log = logging.getLogger("benchmarks.collections")


# -- requests, by operation -----------------------------------------------------------------------

class RequestLog:
    """Every HTTP request the project's shared S3 and SQS clients send while ``recording``."""

    def __init__(self, settings: Settings) -> None:
        self._lock = threading.Lock()
        self.operations: Counter[str] = Counter()
        self.list_prefixes: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()  # waited on each operation (call to parsed answer)
        self._started = threading.local()
        self.recording = False
        for service in ("s3", "sqs"):
            events = client(service, settings).meta.events
            events.register("before-send", self._sent)
            events.register("before-call", self._call_started)
            events.register("after-call", self._call_ended)

    def _call_started(self, **_: Any) -> None:
        self._started.at = time.perf_counter()

    def _call_ended(self, event_name: str = "", **_: Any) -> None:
        if self.recording:
            with self._lock:
                self.seconds[event_name.rsplit(".", 1)[-1]] += time.perf_counter() - self._started.at

    def _sent(self, request: Any = None, event_name: str = "", **_: Any) -> None:
        if not self.recording:
            return
        operation = event_name.rsplit(".", 1)[-1]
        with self._lock:
            self.operations[operation] += 1
            if operation in ("ListObjectsV2", "ListObjects"):
                prefix = parse_qs(urlsplit(request.url).query).get("prefix", [""])[0]
                self.list_prefixes[_prefix_kind(prefix)] += 1

    def window(self) -> "_Window":
        return _Window(self)


class _Window:
    def __init__(self, requests: RequestLog) -> None:
        self.requests = requests

    def __enter__(self) -> "_Window":
        self.requests.operations.clear()
        self.requests.list_prefixes.clear()
        self.requests.seconds.clear()
        self.requests.recording = True
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self.requests.recording = False
        self.operations = dict(sorted(self.requests.operations.items()))
        self.list_prefixes = dict(sorted(self.requests.list_prefixes.items()))
        self.operation_seconds = {k: round(v, 3) for k, v in sorted(self.requests.seconds.items())}


def _prefix_kind(prefix: str) -> str:
    """``delta/<c>/`` (one collection), ``delta/`` (every pending delta), or the whole bucket."""
    if not prefix:
        return "(whole bucket)"
    parts = prefix.split("/")
    return f"{parts[0]}/<c>/" if len(parts) > 2 else prefix


# -- sensor ticks ----------------------------------------------------------------------------------

def sensor_ticks(settings: Settings, requests: RequestLog, instance: dg.DagsterInstance,
                 wait_for_in_flight: float = 180.0,
                 budget_seconds: float = float("inf")) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Queue-sensor ticks until the queue is empty; returns the ticks and the queue's depth
    after them. When every message left is in flight (read by an earlier tick, hidden for the
    sensor's visibility timeout), wait up to ``wait_for_in_flight`` seconds for them as the
    daemon's next ticks would; the wait is reported. No tick starts after ``budget_seconds``."""
    from vector_pipeline.defs import build_definitions

    defs = build_definitions(settings)
    queue = DeltaQueue(settings)
    ticks: list[dict[str, Any]] = []
    idle_since: float | None = None
    started = time.perf_counter()
    while True:
        depth = queue.approximate_depth()
        if (depth["visible"] == 0 and depth["in_flight"] == 0) or time.perf_counter() - started > budget_seconds:
            return ticks, depth
        if depth["visible"] == 0:
            idle_since = idle_since or time.perf_counter()
            if time.perf_counter() - idle_since >= wait_for_in_flight:
                return ticks, depth
            time.sleep(1.0)
            continue
        waited = 0.0 if idle_since is None else time.perf_counter() - idle_since
        idle_since = None
        ticks.append({**evaluate_tick(defs, instance, requests, "delta_queue_sensor"),
                      "waited_for_in_flight_s": waited, "queue_before": depth})


def evaluate_tick(defs: dg.Definitions, instance: dg.DagsterInstance, requests: RequestLog,
                  name: str) -> dict[str, Any]:
    """One tick, timed and counted; its partition adds applied, its compactions queued as runs."""
    sensor = defs.resolve_sensor_def(name)
    with requests.window() as window:
        with dg.build_sensor_context(instance=instance, instance_ref=instance.get_ref(), definitions=defs,
                                     sensor_name=name,
                                     resources={"vector_pipeline": defs.resources["vector_pipeline"]}) as context:
            result = sensor.evaluate_tick(context)
    adds: Counter[str] = Counter()
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        adds[request.partitions_def_name] += len(request.partition_keys)
    compactions = [r.partition_key for r in result.run_requests or [] if r.job_name == "compaction"]
    for collection in compactions:  # as the daemon's launch: the next tick's busy check sees them
        # A bare run record (NOT_STARTED, which the check counts as active): what the check reads,
        # without the job snapshot create_run_for_job computes for every run (seconds each here).
        instance.add_run(dg.DagsterRun(job_name="compaction", run_id=make_new_run_id(),
                                       status=dg.DagsterRunStatus.NOT_STARTED, tags={"dagster/partition": collection}))
    tick = {"sensor": name, "seconds": window.seconds, "requests": window.operations,
            "request_seconds": window.operation_seconds,
            "list_prefixes": window.list_prefixes, "partitions_added": dict(adds),
            "validation_requests": sum(r.job_name == "validate_delta" for r in result.run_requests or []),
            "compaction_requests": len(compactions), "skip": str(result.skip_message or "")}
    log.info("tick %s", tick)
    return tick


def release_queued_runs(instance: dg.DagsterInstance) -> int:
    """The runs the ticks queued are not executed (the drain below does the work): delete them."""
    records = instance.get_run_records(dg.RunsFilter(job_name="compaction", statuses=[dg.DagsterRunStatus.NOT_STARTED]))
    for record in records:
        instance.delete_run(record.dagster_run.run_id)
    return len(records)
