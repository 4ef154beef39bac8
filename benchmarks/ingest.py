"""Sustained ingest (``python -m benchmarks --ingest``): producers at a steady rate for a
while, a compaction loop, readers timing when each delta becomes visible, and query timers
measuring query latency idle and during ingest.

Per compaction loop (``ingest_loops.py``: ``watch``, ``vector-pipeline compact --watch`` as a
subprocess; ``dagster``, ``dagster dev`` with its daemon, i.e. the project's sensors and
compaction job, against a temporary DAGSTER_HOME), one after the other, each on a collection of
its own:

- **seed**: one delta of ``seed_vectors`` vectors, not announced on the queue and compacted by
  the profile itself before the loop starts, so queries have a version to answer from before
  the producers start (the loop then appends to it: its first cycle is not a first publish).
- **query timers** (``ingest_queries.py``): one process per read kind (default reads; fresh
  reads, ``include_pending=True``) issuing ``query_snapshot(n_results=10)`` at ``query_rate``
  a second: ``idle_queries`` of them before the producers start (idle), then on through the
  window (during ingest); p50/p99 of each and the ratio of the p99s.
- **producers** (``ingest_processes.py``): ``producers`` processes, each minting deltas of
  ``vectors_per_delta`` new 384-d vectors on a schedule that together makes ``rate`` deltas a
  second (one behind its schedule produces at once; the achieved rate is measured, not
  assumed). Each delta's vectors come from a seed (its sequence number), so a reader can
  rebuild its first vector.
- **freshness readers**: two processes, one per read mode, polling every ``poll_seconds``:
  *bounded*, ``open_snapshot(c).get_vectors(ids=...)`` with the default consistency (the
  published version: what the compaction loop made visible), and *pending*,
  ``query_snapshot(..., include_pending=True)`` with each delta's first vector (fresh reads).
  Freshness of a delta = first poll that answered it − the moment its producer returned
  (wall clock, one machine).
- **queue depth** (ApproximateNumberOfMessages, and in flight) every 2 s; the loop's cycles
  (the watch's JSON lines; the Dagster compaction runs' start and end).

After ``seconds`` the producers stop; the run waits (at most ``drain_seconds``) until both
readers saw every delta, then stops readers, query timers and loop. A delta never seen counts
as infinitely stale in the percentiles, so it cannot flatter them. ``ingest_report.py`` sums up.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from vector_pipeline.config import Settings
from vector_pipeline.delta.queue import DeltaQueue

from .ingest_loops import DagsterLoop, WatchLoop
from .ingest_processes import produce, read_freshness
from .ingest_queries import QUERY_KINDS, time_queries
from .suite import DIMENSION

log = logging.getLogger("benchmarks.ingest")
READ_MODES = ("bounded", "pending")
QUEUE_SAMPLE_SECONDS = 2.0
CEILING_VECTORS = 2000  # records of the insert-ceiling measurement (a cycle's merge is of this order)


def seed_collection(settings: Settings, collection: str, vectors: int, freshness_target_s: float | None) -> float:
    """The collection's record (with ``freshness_target_s`` when given, else the default target),
    then one delta of ``vectors`` (ids ``seed-<j>``), not announced, compacted here: the version the
    idle queries answer from, published before the loop starts. Returns its seconds."""
    from vector_pipeline import ChromaCompactor, produce_embedding_delta
    from vector_pipeline.table.catalog import CollectionCatalog, CollectionConfig

    if freshness_target_s is not None:
        config = CollectionConfig.defaults_for(collection, settings)
        CollectionCatalog(settings).create(config.changed(freshness_target_seconds=freshness_target_s))
    data = np.random.default_rng(2_000_000).standard_normal((vectors, DIMENSION)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    started = time.time()
    key = produce_embedding_delta([f"seed-{j}" for j in range(vectors)], data.tolist(),
                                  metadatas=[{"producer": -1}] * vectors, collection_name=collection,
                                  settings=settings, notify=False)["delta_key"]
    result = ChromaCompactor(settings=settings).compact_deltas([key], collection)
    if str(result.status) != "ok":
        raise RuntimeError(f"the {collection} seed was not published: {result}")
    return time.time() - started


def _wait_for_files(paths: list[Path], processes: list[Any], timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline and not all(p.exists() for p in paths) and all(p.is_alive() for p in processes):
        time.sleep(0.2)


def run_mode(loop: WatchLoop | DagsterLoop, settings: Settings, parameters: dict[str, Any], scratch: Path) -> dict[str, Any]:
    collection = f"ingest_{loop.name}"
    folder = scratch / loop.name
    folder.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")
    load_before = os.getloadavg()
    stop_path = folder / "stop"
    readers = [context.Process(target=read_freshness, args=(
        settings.with_overrides(cache_dir=str(folder / f"reader-{mode}")), collection, mode,
        str(folder / "produced-*.jsonl"), str(stop_path), str(folder / f"seen-{mode}.jsonl"),
        parameters["poll_seconds"])) for mode in READ_MODES]
    timers = [context.Process(target=time_queries, args=(
        settings.with_overrides(cache_dir=str(folder / f"queries-{kind}")), collection, kind,
        parameters["query_rate"], parameters["idle_queries"],
        {"seeded": str(folder / "seeded"), "go": str(folder / "queries.go"), "idle_done": str(folder / f"queries-{kind}.idle"), "stop": str(stop_path),
         "out": str(folder / f"queries-{kind}.json")})) for kind in QUERY_KINDS]
    for child in readers + timers:  # they import while the seed is published and the loop starts
        child.start()
    try:
        seed_s = seed_collection(settings.with_overrides(cache_dir=str(folder / "seed")), collection,
                                 parameters["seed_vectors"], parameters.get("freshness_target_s"))
        (folder / "seeded").touch()  # the timers' warm-up (their cold start) while the loop starts
        loop.start()
    except BaseException:
        _abandon(readers + timers, stop_path)
        raise
    try:
        return _measure(loop, settings, parameters, folder, collection, readers, timers, load_before, seed_s)
    except BaseException:  # a signal or a failure: the readers and timers stop too, not poll a dead endpoint
        _abandon(readers + timers, stop_path)
        raise


def _abandon(children: list[Any], stop_path: Path) -> None:
    """Stop the readers and timers: asked first (the stop file), then terminated."""
    stop_path.touch()  # they end rather than wait for a go that never comes
    for child in children:
        child.join(timeout=5)
        if child.is_alive():
            child.terminate()


def _measure(loop: WatchLoop | DagsterLoop, settings: Settings, parameters: dict[str, Any], folder: Path,
             collection: str, readers: list[Any], timers: list[Any], load_before: tuple[float, float, float],
             seed_s: float) -> dict[str, Any]:
    """The idle queries, the producing window, the drain; the raw samples."""
    queue = DeltaQueue(settings)
    stop_path, go_path = folder / "stop", folder / "queries.go"
    go_path.touch()  # the timers' idle queries: against the seed, with the loop running
    depth: list[dict[str, float]] = []
    sampling = threading.Event()
    sampler = threading.Thread(target=_sample_queue, args=(queue, loop, depth, sampling), daemon=True)
    sampler.start()
    log.info("%s: seed published in %.1f s; %d idle queries per read kind", loop.name, seed_s,
             parameters["idle_queries"])
    _wait_for_files([folder / f"queries-{kind}.idle" for kind in QUERY_KINDS], timers,
                    120 + parameters["idle_queries"] / parameters["query_rate"])
    load_idle = os.getloadavg()
    start_at, producers = _produce_window(multiprocessing.get_context("spawn"), settings, collection, parameters, folder)
    produced_until = time.time()
    produced = _lines(folder.glob("produced-*.jsonl"))
    deadline = time.monotonic() + parameters["drain_seconds"]
    while time.monotonic() < deadline and all(r.is_alive() for r in readers) and not all(
            len(_lines([folder / f"seen-{mode}.jsonl"])) >= len(produced) for mode in READ_MODES):
        time.sleep(1.0)
    drained_after = time.time() - produced_until
    stop_path.touch()
    for child in readers + timers:
        child.join(timeout=120)
    sampling.set()
    sampler.join()
    loop_result = loop.stop()
    return {"collection": collection, "start_at": start_at, "produced_until": produced_until,
            "versions": versions_written(settings, collection),
            "drained_after_s": drained_after, "load_before": load_before, "load_idle": load_idle,
            "load_after": os.getloadavg(), "seed_published_s": seed_s,
            "produced": produced, "queue_depth": depth, "loop": loop_result,
            "seen": {mode: _lines([folder / f"seen-{mode}.jsonl"]) for mode in READ_MODES},
            "reader_polls": {mode: _read_json(folder / f"seen-{mode}.jsonl.polls") for mode in READ_MODES},
            "queries": {kind: _read_json(folder / f"queries-{kind}.json") for kind in QUERY_KINDS},
            "producer_exit_codes": [p.exitcode for p in producers]}


def _produce_window(context: Any, settings: Settings, collection: str, parameters: dict[str, Any],
                    folder: Path) -> tuple[float, list[Any]]:
    """The producers, started together on one schedule; returns when they are done."""
    ready, go = context.Barrier(parameters["producers"] + 1), context.Barrier(parameters["producers"] + 1)
    start = context.Value("d", 0.0)
    producers = [context.Process(target=produce, args=(
        settings, collection, index, parameters["producers"], parameters["rate"], parameters["vectors_per_delta"],
        parameters["seconds"], ready, go, start, str(folder / f"produced-{index}.jsonl")))
        for index in range(parameters["producers"])]
    for producer in producers:
        producer.start()
    ready.wait()  # every producer process has imported the library: the schedule starts now
    start.value = start_at = time.time() + 0.2
    go.wait()
    log.info("producing %.1f deltas/s for %.0fs", parameters["rate"], parameters["seconds"])
    for producer in producers:
        producer.join()
    return start_at, producers


def _sample_queue(queue: DeltaQueue, loop: WatchLoop | DagsterLoop, samples: list[dict[str, Any]],
                  done: threading.Event) -> None:
    while not done.wait(QUEUE_SAMPLE_SECONDS):
        try:
            sample: dict[str, Any] = {"at": time.time(), **queue.approximate_depth()}
            if isinstance(loop, DagsterLoop):
                sample["runs"] = loop.run_queue()
            samples.append(sample)
        except Exception as exc:  # noqa: BLE001 - a missed sample is a gap in the plot, no more
            log.warning("queue depth sample failed: %s", exc)


def _lines(paths: Any) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        if Path(path).exists():
            rows += [json.loads(line) for line in Path(path).read_text().splitlines() if line.endswith("}")]
    return rows


def _read_json(path: Path) -> list[Any]:
    return json.loads(path.read_text()) if path.exists() else []


def run(settings: Settings, parameters: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """Every mode in ``parameters["modes"]``, one after the other; raw samples (``ingest_report`` sums up)."""
    from .ingest_report import summarize

    from vector_pipeline.cli.local_aws import setup_resources

    modes: dict[str, Any] = {}
    for name in parameters["modes"]:
        # A bucket and queue per mode: what one loop left pending is not the next one's work.
        own = settings.with_overrides(vectors_bucket=f"ingest-{name}", delta_queue_name=f"ingest-{name}-deltas")
        setup_resources(own)
        loop: WatchLoop | DagsterLoop = WatchLoop(own, scratch) if name == "watch" else DagsterLoop(own, scratch)
        raw = run_mode(loop, own, parameters, scratch)
        modes[name] = summarize(raw, parameters)
        log.info("%s: %s", name, {k: v for k, v in modes[name].items() if k in ("achieved_rate", "freshness", "query_latency")})
    return {"modes": modes, "insert_ceiling": insert_ceiling(settings, CEILING_VECTORS)}


def versions_written(settings: Settings, collection: str) -> dict[str, dict[str, int]]:
    """What the published versions wrote, by fold kind, along the pointer chain: versions and
    bytes uploaded. A fold published by rebasing (a background one) adds the bytes of the
    version it wrote off the lock, and counts as rebased: the cycles' own figures miss it."""
    from vector_pipeline.table.snapshot_store import SnapshotStore

    store = SnapshotStore(settings)
    kinds: dict[str, dict[str, int]] = {}
    pointer = store.read_pointer(collection)
    version = pointer.version if pointer else None
    while version:
        manifest = store.read_manifest(collection, version)
        row = kinds.setdefault(manifest.fold or "first", {"versions": 0, "bytes": 0, "rebased": 0})
        row["versions"] += 1
        row["bytes"] += manifest.uploaded_bytes
        if manifest.rebased_fold:
            row["rebased"] += 1
            row["bytes"] += store.read_manifest(collection, manifest.rebased_fold).uploaded_bytes
        version = manifest.parent_version
    return kinds


def insert_ceiling(settings: Settings, vectors: int) -> dict[str, Any]:
    """chroma's own bulk insert of ``vectors`` new 384-d records into an empty collection, in this
    process once the loops have stopped: the ceiling of a loop's merge on this machine, in the run."""
    import tempfile

    from .suite import chroma_upsert_seconds

    data = np.random.default_rng(3_000_000).standard_normal((vectors, DIMENSION)).astype(np.float32)
    ids = [f"ceiling-{j}" for j in range(vectors)]
    with tempfile.TemporaryDirectory(prefix="bench-ceiling-") as empty:
        seconds = chroma_upsert_seconds(settings, Path(empty), "ceiling", ids, data.tolist(), [{"producer": -1}] * vectors)
    return {"vectors": vectors, "seconds": round(seconds, 3), "per_s": round(vectors / seconds, 1),
            "load": os.getloadavg()[0]}
