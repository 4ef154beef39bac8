"""``vector-pipeline compact --watch``, the compaction loop, as a user runs it: a real
subprocess over HTTP to the session's moto server, deltas produced while it runs.

Covers: the loop publishes what producers announce while it runs and the queue drains; one
line (or JSON object) per cycle; SIGTERM stops it after the cycle under way with exit 0, the
lock released and every delta either in the published version or still pending (nothing
lost); ``--max-cycles`` ends it; a missing queue or a bad ``--interval`` is a clear error.
Not covered: a second signal abandoning a cycle mid-way (the crash matrix of the reliability
suite covers a compactor dying at every step); timing (the ingest benchmark measures it).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from vector_pipeline import open_snapshot, produce_embedding_delta
from vector_pipeline.config import Settings
from vector_pipeline.io.lock import CompactionLock, lock_id_for
from vector_pipeline.delta.queue import DeltaQueue
from vector_pipeline.read.reader import close_readers

from vector_pipeline_tests.helpers import vectors

CLI = [sys.executable, "-m", "vector_pipeline.cli"]
ROOT = Path(__file__).resolve().parents[2]


class Watch:
    """The loop as a child process in a session of its own; its stdout lines, as they come."""

    def __init__(self, settings: Settings, *args: str) -> None:
        env = {**os.environ, **settings.local_aws_environment()}
        self.process = subprocess.Popen([*CLI, "compact", "--watch", "--json", *args], env=env, cwd=ROOT,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        start_new_session=True)
        self.lines: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self.cycles: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def next_line(self, timeout: float = 120.0) -> dict[str, Any]:
        line = self.lines.get(timeout=timeout)
        if "cycle" in line:
            self.cycles.append(line)
        return line

    def cycle_publishing(self, collection: str, timeout: float = 180.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.next_line(timeout=deadline - time.monotonic())
            if line.get("collections", {}).get(collection, {}).get("status") == "ok":
                return line
        raise TimeoutError(f"no cycle published {collection} in {timeout}s")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 120.0) -> tuple[int, dict[str, Any], str]:
        os.kill(self.process.pid, signum)
        code = self.process.wait(timeout=timeout)
        summary = None
        while summary is None:
            line = self.next_line(timeout=10)
            summary = line.get("summary")
        assert self.process.stderr is not None
        return code, summary, self.process.stderr.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def produce(settings: Settings, rng: np.random.Generator, start: int, count: int, per_delta: int = 5) -> None:
    for number in range(start, start + count):
        ids = [f"d{number}-{j}" for j in range(per_delta)]
        produce_embedding_delta(ids, vectors(rng, per_delta), collection_name="words", settings=settings)


def published_count(settings: Settings) -> int:
    close_readers()
    return open_snapshot("words", settings=settings).count("words")


def pending(settings: Settings) -> int:
    from vector_pipeline.compaction.compactor import ChromaCompactor

    return len(ChromaCompactor(settings=settings).list_pending_delta_keys("words"))


def test_watch_publishes_deltas_produced_while_it_runs_and_stops_cleanly_on_sigterm(
        settings: Settings, rng: np.random.Generator) -> None:
    watch = Watch(settings, "--interval", "1", "--reconcile-every", "5")
    try:
        produce(settings, rng, 0, 3)
        first = watch.cycle_publishing("words")
        assert first["collections"]["words"]["version"]
        produce(settings, rng, 3, 4)
        deadline = time.monotonic() + 180
        while published_count(settings) < 7 * 5 and time.monotonic() < deadline:
            watch.next_line()
        assert published_count(settings) == 35
        while True:  # a cycle after the last publish: the queue has drained
            line = watch.next_line()
            if line["queue_visible"] == 0 and line["queue_in_flight"] == 0 and not line["deltas"]:
                break
        assert DeltaQueue(settings).approximate_depth() == {"visible": 0, "in_flight": 0}
        produce(settings, rng, 7, 2)  # a cycle is likely under way when the signal comes
        code, summary, stderr = watch.stop(signal.SIGTERM)
    finally:
        watch.kill()
    assert code == 0, stderr[-2000:]
    assert summary["stopped_by"] == "signal" and summary["errors"] == 0
    assert summary["deltas"] == sum(c["deltas"] for c in watch.cycles)
    assert "stopping after the current cycle" in stderr
    holder = CompactionLock(lock_id_for("words"), settings=settings).holder()
    assert not holder.is_live, f"lock still held by {holder.owner}"
    # Nothing lost: each of the 9 deltas is in the published version or still pending.
    assert published_count(settings) + 5 * pending(settings) == 9 * 5
    assert all(set(c) >= {"cycle", "seconds", "deltas", "collections", "queue_visible", "reconciled"}
               for c in watch.cycles)
    assert watch.cycles[0]["reconciled"]


def test_watch_stops_after_max_cycles_with_a_line_per_cycle(settings: Settings) -> None:
    result = subprocess.run([*CLI, "compact", "--watch", "--interval", "1", "--max-cycles", "2"],
                            env={**os.environ, **settings.local_aws_environment()}, cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("cycle 1: 0 collections, 0 deltas") and "reconciled" in lines[0]
    assert "queue 0 visible, 0 in flight" in lines[1]
    assert lines[2].startswith("stopped (max_cycles) after 2 cycles")


def test_watch_refuses_a_missing_queue_and_a_bad_interval(settings: Settings) -> None:
    missing = settings.with_overrides(delta_queue_name="no-such-queue")
    result = subprocess.run([*CLI, "compact", "--watch", "--interval", "1"], env={**os.environ, **missing.local_aws_environment()},
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "no-such-queue" in result.stderr and "does not exist" in result.stderr
    result = subprocess.run([*CLI, "compact", "--watch", "--interval", "30"], env={**os.environ, **settings.local_aws_environment()},
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "1 to 20" in result.stderr


def test_watch_merges_tiers_in_the_background_never_inside_a_cycle(settings: Settings, rng: np.random.Generator) -> None:
    """A fan-in of 2: every cycle appends; the tier merge that follows runs in the loop's
    background thread, off the lock, and is published on top of the appends."""
    from vector_pipeline.table.catalog import CollectionCatalog, CollectionConfig

    from vector_pipeline_tests.test_reliability.helpers import folds_along_pointer_chain

    CollectionCatalog(settings).create(CollectionConfig.defaults_for("words", settings).changed(
        freshness_target_seconds=1, segment_fan_in=2, segment_max_count=10))
    folds = lambda: folds_along_pointer_chain(settings)  # noqa: E731

    watch = Watch(settings, "--interval", "1")
    try:
        for number in range(4):
            produce(settings, rng, number, 1)
            watch.cycle_publishing("words")
        deadline = time.monotonic() + 120
        while "fold_recent" not in folds() and time.monotonic() < deadline:
            time.sleep(0.5)
        code, summary, stderr = watch.stop(signal.SIGTERM)
    finally:
        watch.kill()
    assert code == 0, stderr[-2000:]
    assert "fold_recent" in folds()  # published by the background merge: no cycle merged a tier
    assert all(c["collections"]["words"]["fold"] == "append" for c in watch.cycles if "words" in c["collections"])
    assert published_count(settings) == 4 * 5
