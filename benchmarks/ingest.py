"""Sustained ingest (``python -m benchmarks --ingest``): producers at a steady rate for a
while, a compaction loop, and readers timing when each delta becomes visible.

Per compaction loop (``watch``: ``vector-pipeline compact --watch`` as a subprocess;
``dagster``: ``dagster dev`` with its daemon, i.e. the project's sensors and compaction job,
against a temporary DAGSTER_HOME), one after the other, each on a collection of its own:

- **producers**: ``producers`` processes, each minting deltas of ``vectors_per_delta`` new
  384-d vectors on a schedule that together makes ``rate`` deltas a second (one behind its
  schedule produces at once; the achieved rate is measured, not assumed). Each delta's
  vectors come from a seed (its sequence number), so a reader can rebuild its first vector.
- **readers**: two processes, one per read mode, polling every ``poll_seconds``: *bounded*,
  ``open_snapshot(c).get_vectors(ids=...)`` with the default consistency (the published
  version: what the compaction loop made visible), and *pending*, ``query_snapshot(...,
  include_pending=True)`` with each delta's first vector (fresh reads). Freshness of a delta
  = first poll that answered it − the moment its producer returned (wall clock, one machine).
- **queue depth** (ApproximateNumberOfMessages, and in flight) every 2 s; the loop's cycles
  (the watch's JSON lines; the Dagster compaction runs' start and end).

After ``seconds`` the producers stop; the run waits (at most ``drain_seconds``) until both
readers saw every delta, then stops readers and loop. A delta never seen counts as infinitely
stale in the percentiles, so it cannot flatter them.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from vector_pipeline.config import Settings
from vector_pipeline.cli.processes import start_group, stop_process_group, wait_until_answering
from vector_pipeline.delta.queue import DeltaQueue

from .suite import DIMENSION

log = logging.getLogger("benchmarks.ingest")
ROOT = Path(__file__).resolve().parents[1]
READ_MODES = ("bounded", "pending")
QUEUE_SAMPLE_SECONDS = 2.0


def delta_vectors(seq: int, count: int) -> np.ndarray:
    vectors = np.random.default_rng(seq).standard_normal((count, DIMENSION)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def probe_id(seq: int) -> str:
    return f"{seq}-0"


# -- processes ---------------------------------------------------------------------------------

def _produce(settings: Settings, collection: str, index: int, producers: int, rate: float, count: int,
             seconds: float, ready: Any, go: Any, start: Any, path: str) -> None:
    """One producer: deltas ``index``, ``index + producers``, ... at ``rate / producers`` a
    second, from ``start`` (set once every producer has imported and reached ``ready``)."""
    from vector_pipeline import produce_embedding_delta

    ready.wait()
    go.wait()
    start_at = start.value
    with open(path, "a") as out:
        number = 0
        while True:
            seq = number * producers + index
            due = start_at + seq / rate
            if due - start_at >= seconds or time.time() >= start_at + seconds:
                return  # on schedule or behind it: producing ends with the window
            if due > time.time():
                time.sleep(due - time.time())
            started = time.time()
            result = produce_embedding_delta([f"{seq}-{j}" for j in range(count)], delta_vectors(seq, count).tolist(),
                                             metadatas=[{"producer": index}] * count, collection_name=collection,
                                             settings=settings)
            out.write(json.dumps({"seq": seq, "started_at": started, "produced_at": time.time(),
                                  "delta_key": result["delta_key"]}) + "\n")
            out.flush()
            number += 1


def _read(settings: Settings, collection: str, mode: str, produced_glob: str, stop_path: str, out_path: str,
          poll_seconds: float) -> None:
    """One reader: polls for every produced delta not yet seen; writes ``seq, seen_at`` lines."""
    from vector_pipeline import open_snapshot, query_snapshot

    logging.getLogger("vector_pipeline").setLevel(logging.WARNING)
    folder, pattern = os.path.split(produced_glob)
    offsets: dict[Path, int] = {}
    waiting: dict[int, np.ndarray | None] = {}
    polls: list[float] = []
    with open(out_path, "a") as out:
        while not os.path.exists(stop_path):
            for path in sorted(Path(folder).glob(pattern)):
                with open(path) as produced:
                    produced.seek(offsets.get(path, 0))
                    while (line := produced.readline()).endswith("\n"):
                        seq = json.loads(line)["seq"]
                        waiting[seq] = delta_vectors(seq, 1)[0] if mode == "pending" else None
                        offsets[path] = produced.tell()
            started = time.time()
            seen = _visible(open_snapshot, query_snapshot, settings, collection, mode, waiting)
            now = time.time()
            polls.append(now - started)
            for seq in seen:
                waiting.pop(seq)
                out.write(json.dumps({"seq": seq, "seen_at": now}) + "\n")
            out.flush()
            time.sleep(max(0.0, poll_seconds - (time.time() - started)))
    Path(out_path + ".polls").write_text(json.dumps(polls))


def _visible(open_snapshot: Any, query_snapshot: Any, settings: Settings, collection: str, mode: str,
             waiting: dict[int, np.ndarray | None]) -> list[int]:
    if not waiting:
        return []
    seqs = sorted(waiting)
    try:
        if mode == "bounded":
            answer = open_snapshot(collection, settings=settings).get_vectors(
                collection, ids=[probe_id(s) for s in seqs], include=[])
            return [int(key.split("-")[0]) for key in answer["ids"]]
        seen = []
        for start in range(0, len(seqs), 200):
            batch = seqs[start:start + 200]
            answer = query_snapshot(query_embeddings=[waiting[s].tolist() for s in batch], n_results=1,
                                    collection_name=collection, include=["distances"], include_pending=True,
                                    settings=settings)
            seen += [s for s, ids in zip(batch, answer["ids"]) if ids and ids[0] == probe_id(s)]
        return seen
    except Exception as exc:  # noqa: BLE001 - before the first publish there is no version to read
        log.debug("%s reader: %s", mode, exc)
        return []


# -- compaction loops ----------------------------------------------------------------------------

class WatchLoop:
    """``vector-pipeline compact --watch --json`` as a child process; its cycles, as JSON lines."""

    name = "watch"

    def __init__(self, settings: Settings, scratch: Path, wait_seconds: int = 5) -> None:
        self.settings = settings.with_overrides(cache_dir=str(scratch / "watch-cache"))
        self.out = scratch / "watch.jsonl"
        self.wait_seconds = wait_seconds

    def start(self) -> None:
        env = {**os.environ, **self.settings.local_aws_environment()}
        self.stdout = open(self.out, "w")
        self.stderr = open(self.out.with_suffix(".log"), "w")
        self.process = start_group([sys.executable, "-m", "vector_pipeline.cli", "compact", "--watch", "--json",
                                    "--interval", str(self.wait_seconds)], env=env, cwd=ROOT,
                                   stdout=self.stdout, stderr=self.stderr)

    def stop(self) -> dict[str, Any]:
        code = stop_process_group(self.process, signal.SIGTERM, grace_seconds=120)
        self.stdout.close()
        self.stderr.close()
        lines = [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]
        cycles = [line for line in lines if "cycle" in line]
        return {"exit_code": code, "summary": next((line["summary"] for line in lines if "summary" in line), None),
                "cycles": [{"started_at": c["started_at"], "seconds": c["seconds"], "deltas": c["deltas"],
                            "folds": [r.get("fold") for r in c["collections"].values() if r.get("fold")],
                            "bytes_uploaded": sum(r.get("bytes_uploaded") or 0 for r in c["collections"].values()),
                            "error": c["error"]} for c in cycles if c["deltas"] or c["error"]],
                "idle_cycles": sum(1 for c in cycles if not c["deltas"] and not c["error"])}


class DagsterLoop:
    """``dagster dev`` (webserver + daemon: the sensors report deltas and launch compaction runs)."""

    name = "dagster"

    def __init__(self, settings: Settings, scratch: Path) -> None:
        self.settings = settings.with_overrides(cache_dir=str(scratch / "dagster-cache"))
        self.home = scratch / "dagster_home"
        self.log = scratch / "dagster_dev.log"

    def start(self, timeout_seconds: float = 300) -> None:
        from vector_pipeline.cli.local_aws import free_port

        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "dagster.yaml", self.home / "dagster.yaml")
        port = free_port()
        env = {**os.environ, **self.settings.local_aws_environment(), "DAGSTER_HOME": str(self.home)}
        self.output = open(self.log, "w")
        self.process = start_group([sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(port),
                                    "-h", "127.0.0.1"], env=env, cwd=ROOT, stdout=self.output,
                                   stderr=subprocess.STDOUT)
        wait_until_answering(self.process, f"http://127.0.0.1:{port}/server_info", f"dagster dev (log: {self.log})",
                             timeout_seconds, poll_seconds=1.0, request_seconds=2.0)
        self.growth_before = self.growth()

    def _instance(self) -> Any:
        import dagster as dg

        if getattr(self, "instance", None) is None:
            self.instance = dg.DagsterInstance.from_config(str(self.home))
        return self.instance

    def run_queue(self) -> dict[str, int]:
        import dagster as dg

        instance = self._instance()
        return {status.value.lower(): instance.get_runs_count(dg.RunsFilter(statuses=[status]))
                for status in (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTED,
                               dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)}

    def growth(self) -> dict[str, Any]:
        """Rows the instance holds now: runs, event-log rows (every sqlite file), partitions, ticks."""
        import sqlite3

        instance = self._instance()
        events = 0
        for db in (self.home / "history" / "runs").glob("*.db"):
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
                tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if "event_logs" in tables:
                    events += connection.execute("SELECT count(*) FROM event_logs").fetchone()[0]
        return {"at": time.time(), "runs": instance.get_runs_count(), "event_rows": events,
                "partitions": {name: len(instance.get_dynamic_partitions(name)) for name in ("collection", "delta")},
                "ticks": sum(len(t) for t in self._ticks().values())}

    def _ticks(self) -> dict[str, list[Any]]:
        instance = self._instance()
        return {state.instigator_name: list(instance.get_ticks(state.instigator_origin_id, state.selector_id,
                                                                limit=1_000_000))
                for state in instance.all_instigator_state()}

    def stop(self) -> dict[str, Any]:
        import dagster as dg

        instance = self._instance()
        runs = []
        for record in instance.get_run_records(dg.RunsFilter(job_name="compaction")):
            if record.start_time and record.end_time:
                runs.append({"started_at": record.start_time, "seconds": record.end_time - record.start_time,
                             "ended_at": record.end_time, "status": record.dagster_run.status.value,
                             "deltas": int(record.dagster_run.tags.get("vector_pipeline/pending_deltas", 0) or 0)})
        counts = {job: instance.get_runs_count(dg.RunsFilter(job_name=job)) for job in ("validate_delta", "compaction")}
        ticks = []
        for tick in self._ticks().get("delta_queue_sensor", []):
            cursor = json.loads(tick.cursor) if tick.cursor and tick.cursor.startswith("{") else {}
            ticks.append({"at": tick.timestamp, "seconds": (tick.end_timestamp or tick.timestamp) - tick.timestamp,
                          "status": tick.status.value, "runs": len(tick.run_ids), "receive_s": cursor.get("receive_s"),
                          "body_s": cursor.get("tick_s")})
        queue, growth = self.run_queue(), self.growth()
        instance.dispose()
        code = stop_process_group(self.process, signal.SIGINT, grace_seconds=60)
        self.output.close()
        return {"exit_code": code, "cycles": sorted(runs, key=lambda r: r["started_at"]), "runs": counts,
                "run_queue_at_end": queue, "ticks": sorted(ticks, key=lambda t: t["at"]),
                "growth": [self.growth_before, growth]}


# -- one mode --------------------------------------------------------------------------------------

def run_mode(loop: WatchLoop | DagsterLoop, settings: Settings, parameters: dict[str, Any], scratch: Path) -> dict[str, Any]:
    collection = f"ingest_{loop.name}"
    folder = scratch / loop.name
    folder.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")
    queue = DeltaQueue(settings)
    load_before = os.getloadavg()
    loop.start()
    stop_path = folder / "stop"
    readers = [context.Process(target=_read, args=(
        settings.with_overrides(cache_dir=str(folder / f"reader-{mode}")), collection, mode,
        str(folder / "produced-*.jsonl"), str(stop_path), str(folder / f"seen-{mode}.jsonl"),
        parameters["poll_seconds"])) for mode in READ_MODES]
    for reader in readers:
        reader.start()
    depth: list[dict[str, float]] = []
    sampling = threading.Event()
    sampler = threading.Thread(target=_sample_queue, args=(queue, loop, depth, sampling), daemon=True)
    sampler.start()
    ready, go = context.Barrier(parameters["producers"] + 1), context.Barrier(parameters["producers"] + 1)
    start = context.Value("d", 0.0)
    producers = [context.Process(target=_produce, args=(
        settings, collection, index, parameters["producers"], parameters["rate"], parameters["vectors_per_delta"],
        parameters["seconds"], ready, go, start, str(folder / f"produced-{index}.jsonl")))
        for index in range(parameters["producers"])]
    for producer in producers:
        producer.start()
    ready.wait()  # every producer process has imported the library: the schedule starts now
    start.value = start_at = time.time() + 0.2
    go.wait()
    log.info("%s: producing %.1f deltas/s for %.0fs", loop.name, parameters["rate"], parameters["seconds"])
    for producer in producers:
        producer.join()
    produced_until = time.time()
    produced = _lines(folder.glob("produced-*.jsonl"))
    deadline = time.monotonic() + parameters["drain_seconds"]
    while time.monotonic() < deadline and all(r.is_alive() for r in readers) and not all(
            len(_lines([folder / f"seen-{mode}.jsonl"])) >= len(produced) for mode in READ_MODES):
        time.sleep(1.0)
    drained_after = time.time() - produced_until
    stop_path.touch()
    for reader in readers:
        reader.join(timeout=120)
    sampling.set()
    sampler.join()
    loop_result = loop.stop()
    return {"collection": collection, "start_at": start_at, "produced_until": produced_until,
            "drained_after_s": drained_after, "load_before": load_before, "load_after": os.getloadavg(),
            "produced": produced, "queue_depth": depth, "loop": loop_result,
            "seen": {mode: _lines([folder / f"seen-{mode}.jsonl"]) for mode in READ_MODES},
            "reader_polls": {mode: _polls(folder / f"seen-{mode}.jsonl.polls") for mode in READ_MODES},
            "producer_exit_codes": [p.exitcode for p in producers]}


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


def _polls(path: Path) -> list[float]:
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
        log.info("%s: %s", name, {k: v for k, v in modes[name].items() if k in ("achieved_rate", "freshness")})
    return {"modes": modes}
