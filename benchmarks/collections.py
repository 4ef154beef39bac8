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
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import dagster as dg
import numpy as np

from vector_pipeline import ChromaCompactor, open_snapshot, produce_embedding_delta
from vector_pipeline.config import Settings
from vector_pipeline.read.reader import close_readers
from vector_pipeline.read.snapshot_reader import SnapshotReader

from .collections_ticks import RequestLog, evaluate_tick, release_queued_runs, sensor_ticks
from .suite import DIMENSION, percentiles

log = logging.getLogger("benchmarks.collections")
PRODUCER_THREADS = 6  # each upload runs 5 PUTs at once: 30 of the client's 32 connections
SHARED = "shared"


def merchant(index: int) -> str:
    return f"merchant{index:04d}"


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
            "own_collection": percentiles(own), "shared_where": percentiles(filtered),
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
