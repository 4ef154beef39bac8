"""Collections by the thousand (``python -m benchmarks --collections``): one collection per
merchant, a few deltas each, on the embedded AWS.

Four figures, in order:

1. **Produce**: ``deltas_per_collection`` deltas of ``vectors_per_delta`` 384-d vectors per
   collection (the last one also replaces two ids of the first and deletes one of the
   second), each announced on SQS; a model of what every collection must hold.
2. **Sensor ticks**: the real ``delta_queue_sensor`` evaluated with ``build_sensor_context``
   against a sqlite ``DagsterInstance``, tick after tick until the queue is empty, each
   tick's partition adds applied to the instance and its compaction requests queued as runs
   (as the daemon would), so the next tick's busy check sees them; then
   ``delta_reconciliation_sensor`` once with everything pending and once after the drain.
   Per tick: wall time and every S3/SQS request by API operation (a ``before-send`` hook on
   the project's shared clients: each HTTP request, retries included), with the prefix of
   every listing.
3. **Drain**: ``workers`` processes, each running ``ChromaCompactor.compact_pending()``
   (what ``vector-pipeline compact`` runs) until nothing is pending; every collection's
   ``open_snapshot(c).count(c)`` is then checked against its model.
4. **Query routing**: a merchant's query routed to its own collection (its reader) against
   the same query on one shared collection holding every vector, filtered with
   ``where={"merchant": m}``; both through ``SnapshotReader``, p50/p95 over the same probes.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import dagster as dg
from dagster._core.utils import make_new_run_id
import numpy as np

from vector_pipeline import ChromaCompactor, open_snapshot, produce_embedding_delta
from vector_pipeline.io.aws import client
from vector_pipeline.config import Settings
from vector_pipeline.delta.queue import DeltaQueue
from vector_pipeline.read.reader import close_readers
from vector_pipeline.read.snapshot_reader import SnapshotReader

from .suite import DIMENSION, _percentiles

log = logging.getLogger("benchmarks.collections")
PRODUCER_THREADS = 6  # each upload runs 5 PUTs at once: 30 of the client's 32 connections
SHARED = "shared"


def merchant(index: int) -> str:
    return f"merchant{index:04d}"


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


# -- produce ---------------------------------------------------------------------------------------

class Model:
    """What every collection must hold after the drain: id → (vector, merchant)."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, np.ndarray]] = {}


def produce(settings: Settings, collections: int, deltas: int, vectors: int, seed: int = 7) -> tuple[Model, float]:
    model = Model()
    names = [merchant(i) for i in range(collections)]
    for name in names:
        model.records[name] = {}
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=PRODUCER_THREADS) as pool:
        list(pool.map(lambda i: _produce_collection(settings, names[i], deltas, vectors, model.records[names[i]],
                                                    np.random.default_rng(seed + i)), range(collections)))
    return model, time.perf_counter() - started


def _produce_collection(settings: Settings, name: str, deltas: int, vectors: int, held: dict[str, np.ndarray],
                        rng: np.random.Generator) -> None:
    """Deltas of one collection in order (its last delta replaces two ids of the first and
    deletes one id of the second, so the merge's last-writer-wins is part of the check)."""
    for number in range(deltas):
        ids = [f"{name}-{number}-{j}" for j in range(vectors)]
        deletes: list[str] = []
        if number == deltas - 1 and number > 0:
            ids[:2] = [f"{name}-0-0", f"{name}-0-1"][:min(2, vectors)]
            deletes = [f"{name}-1-{vectors - 1}"] if number > 1 else []
        data = rng.standard_normal((len(ids), DIMENSION)).astype(np.float32)
        data /= np.linalg.norm(data, axis=1, keepdims=True)
        produce_embedding_delta(ids, data.tolist(), documents=ids, metadatas=[{"merchant": name}] * len(ids),
                                collection_name=name, delete_ids=deletes or None, settings=settings)
        held.update(zip(ids, data))
        for gone in deletes:
            held.pop(gone, None)
        time.sleep(0.002)  # delta ids order by millisecond: the next delta of this collection is later


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


# -- drain -----------------------------------------------------------------------------------------

def drain(settings: Settings, workers: int) -> dict[str, Any]:
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        outcomes = list(pool.map(_compact_until_drained, [settings] * workers))
    seconds = time.perf_counter() - started
    results = [r for worker in outcomes for r in worker]
    published = [r for r in results if r["status"] == "ok"]
    return {"workers": workers, "seconds": seconds,
            "statuses": dict(Counter(r["status"] for r in results)),
            "collections_published": len({r["collection"] for r in published}),
            "compaction_s": _spread([r["duration_seconds"] for r in published]),
            "publish_s": _spread([r["publish_seconds"] for r in published if r["publish_seconds"]])}


def _compact_until_drained(settings: Settings) -> list[dict[str, Any]]:
    """One worker: ``compact_pending()`` (queue + ``delta/`` listing) until a pass publishes nothing."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for quiet in ("vector_pipeline", "botocore", "urllib3", "chromadb"):
        logging.getLogger(quiet).setLevel(logging.WARNING)
    compactor = ChromaCompactor(settings=settings)
    results: list[dict[str, Any]] = []
    while True:
        passed = compactor.compact_pending()
        log.info("worker pass: %s", dict(Counter(str(r.status) for r in passed)))
        results += [{"collection": r.collection, "status": str(r.status), "duration_seconds": r.duration_seconds,
                     "publish_seconds": r.publish_seconds} for r in passed]
        if not any(str(r.status) == "ok" for r in passed) and not compactor.list_pending_delta_keys():
            return results


def _spread(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    ordered = sorted(samples)
    return {"mean": float(np.mean(ordered)), "p50": ordered[len(ordered) // 2],
            "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], "max": ordered[-1]}


def verify(settings: Settings, model: Model) -> dict[str, Any]:
    """Every collection's published count against its model; ids of a sample too."""
    wrong: dict[str, tuple[int, int]] = {}
    names = sorted(model.records)
    for start in range(0, len(names), 100):  # readers closed per hundred: open files stay few
        for name in names[start:start + 100]:
            count = open_snapshot(name, settings=settings).count(name)
            if count != len(model.records[name]):
                wrong[name] = (count, len(model.records[name]))
        close_readers()
    return {"collections_checked": len(names), "vectors_expected": sum(len(r) for r in model.records.values()),
            "collections_wrong": {k: {"published": v[0], "model": v[1]} for k, v in wrong.items()}}


# -- query routing ---------------------------------------------------------------------------------

def build_shared(settings: Settings, model: Model, batch: int = 5000) -> dict[str, Any]:
    """The same vectors in one collection, each with its merchant (setup, not measured)."""
    started = time.perf_counter()
    rows = [(key, vector, name) for name, held in sorted(model.records.items()) for key, vector in held.items()]
    keys = []
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        keys.append(produce_embedding_delta([r[0] for r in chunk], [r[1].tolist() for r in chunk],
                                            documents=[r[0] for r in chunk],
                                            metadatas=[{"merchant": r[2]} for r in chunk],
                                            collection_name=SHARED, settings=settings, notify=False)["delta_key"])
    result = ChromaCompactor(settings=settings).compact_deltas(keys, SHARED)
    assert str(result.status) == "ok", result
    return {"vectors": len(rows), "seconds": time.perf_counter() - started}


def query_routing(settings: Settings, model: Model, merchants: int, queries: int, root: str,
                  seed: int = 11) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    names = sorted(model.records)
    picked = [names[i] for i in rng.choice(len(names), size=min(merchants, len(names)), replace=False)]
    probes = rng.standard_normal((queries, DIMENSION)).astype(np.float32)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    asks = [(picked[i % len(picked)], probes[i].tolist()) for i in range(queries)]
    routed = {name: SnapshotReader(name, root, settings) for name in picked}
    shared = SnapshotReader(SHARED, root, settings)
    for reader in (*routed.values(), shared):
        reader.refresh()  # cold start (download, open) is not part of the query figures
    own, filtered = [], []
    agree = 0
    try:
        for name, probe in asks:  # alternate, so both see the same machine load
            started = time.perf_counter()
            mine = routed[name].query(None, [probe], 10, None)
            own.append(time.perf_counter() - started)
            started = time.perf_counter()
            theirs = shared.query(None, [probe], 10, {"merchant": name})
            filtered.append(time.perf_counter() - started)
            agree += mine["ids"][0] == theirs["ids"][0]
    finally:
        for reader in (*routed.values(), shared):
            reader.close()
    return {"merchants_queried": len(picked), "queries": queries,
            "shared_vectors": sum(len(r) for r in model.records.values()),
            "vectors_per_merchant": float(np.mean([len(model.records[n]) for n in picked])),
            "own_collection": _percentiles(own), "shared_where": _percentiles(filtered),
            "same_top10": agree}


def run(settings: Settings, parameters: dict[str, Any], scratch: str, wait_for_in_flight: float = 180.0,
        save: Callable[[dict[str, Any]], None] = lambda partial: None, tick_budget: float = float("inf"),
        sensors_only: bool = False) -> dict[str, Any]:
    """The whole profile; ``parameters`` as ``__main__.COLLECTION_PROFILES``. ``save`` gets the
    figures so far after each step (a long run cut short keeps what it measured)."""
    requests = RequestLog(settings)
    model, produce_seconds = produce(settings, parameters["collections"], parameters["deltas_per_collection"],
                                     parameters["vectors_per_delta"])
    log.info("produced %d collections in %.0fs", len(model.records), produce_seconds)
    out: dict[str, Any] = {"produce_seconds": produce_seconds,
                           "deltas": parameters["collections"] * parameters["deltas_per_collection"]}
    from vector_pipeline.defs import build_definitions

    home = Path(scratch) / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        started = time.perf_counter()
        out["queue_ticks"], out["queue_after_ticks"] = sensor_ticks(settings, requests, instance, wait_for_in_flight,
                                                                    tick_budget)
        out["queue_drained_by_ticks_s"] = time.perf_counter() - started
        save(out)
        defs = build_definitions(settings)
        # Reconciliation registers what the queue ticks did not (at most MAX_ADDS_PER_TICK a tick).
        out["reconciliation_ticks"] = [evaluate_tick(defs, instance, requests, "delta_reconciliation_sensor")]
        while out["reconciliation_ticks"][-1]["partitions_added"]:
            out["reconciliation_ticks"].append(evaluate_tick(defs, instance, requests, "delta_reconciliation_sensor"))
        out["reconciliation_pending"] = out["reconciliation_ticks"][-1]
        out["partitions"] = {name: len(instance.get_dynamic_partitions(name)) for name in ("delta", "collection")}
        if sensors_only:  # (deleting the ticks' run records costs more than the ticks: left)
            save(out)
            return out
        out["runs_queued_by_ticks"] = release_queued_runs(instance)
        save(out)
        out["drain"] = drain(settings, parameters["workers"])
        save(out)
        out["verify"] = verify(settings, model)
        save(out)
        out["quiet_ticks"] = [evaluate_tick(defs, instance, requests, name)
                              for name in ("delta_queue_sensor", "delta_reconciliation_sensor")]
        save(out)
    out["shared_build"] = build_shared(settings, model)
    save(out)
    out["query_routing"] = query_routing(settings, model, parameters["query_merchants"], parameters["queries"],
                                         scratch + "/readers")
    return out
