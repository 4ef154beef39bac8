"""Recall of live queries: a reader re-answers a sampled share of its real queries exactly,
in the background, and reports the recall@k it finds.

Invariant: nothing here runs on a query's path. A query only draws whether it is sampled
(``READER_RECALL_SAMPLE_RATE``) and, if so, hands its vectors and answer to a bounded queue
without waiting (a full queue drops the sample and counts it); one daemon thread per reader
scans the answering version's live records with numpy (``format/exact_search``, a page at a
time), computes each sampled query's recall@k (ties count as right) and sends it as the
``ReaderRecallAtK`` metric (``io/metrics``): its average over a period is the running
recall the alarm in ``deploy/template.yaml`` watches. Only plain queries of the version are
sampled (no ``where`` filter, no pending deltas): their exact answer is a scan of the version.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..format.version_manifest import VersionManifest
from ..config import Settings
from ..format.exact_search import ExactTopK, QueryRecall, distances, query_recall
from ..io import metrics

log = logging.getLogger(__name__)

MAX_PENDING = 8  # samples waiting for the worker; more are dropped, never waited for
WINDOW = 200  # sampled queries the running recall covers
IDLE_SECONDS = 60.0  # the worker stops after this long without a sample (the next one starts it)
PAGE_ROWS = 5000


@dataclass(frozen=True)
class Sample:
    client: Any  # the open version that answered (a SegmentedClient: every segment, masks)
    collection: str
    space: str
    vectors: np.ndarray
    found: list[list[str]]
    k: int


class LiveRecall:
    """One reader's sampling of its live queries, and their running recall@k."""

    def __init__(self, settings: Settings, collection: str, rng: random.Random | None = None) -> None:
        self.settings, self.collection = settings, collection
        self.rate = settings.reader_recall_sample_rate
        self._rng = rng or random.Random()
        self._pending: queue.Queue[Sample] = queue.Queue(maxsize=MAX_PENDING)
        self._window: deque[QueryRecall] = deque(maxlen=WINDOW)
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self.sampled = self.dropped = self.measured = self.failed = 0

    def offer(self, client: Any, manifest: VersionManifest, query_embeddings: Sequence[Sequence[float]],
              found_ids: Sequence[Sequence[str]], k: int) -> bool:
        """Sample some of the queries just answered (never blocks); True if any was queued."""
        if self.rate <= 0 or not query_embeddings:
            return False
        picked = [n for n in range(len(query_embeddings)) if self._rng.random() < self.rate]
        if not picked:
            return False
        space = manifest.space
        sample = Sample(client, self.collection, space, np.asarray([query_embeddings[n] for n in picked], dtype=np.float64),
                        [list(found_ids[n]) for n in picked], k)
        try:
            self._pending.put_nowait(sample)
        except queue.Full:
            self.dropped += len(picked)
            return False
        self.sampled += len(picked)
        self._start_worker()
        return True

    def running_recall(self) -> float | None:
        """recall@k over the last ``WINDOW`` sampled queries (None: none measured yet)."""
        with self._lock:
            slots = sum(r.slots for r in self._window)
            return None if not self._window else (1.0 if slots == 0 else sum(r.right for r in self._window) / slots)

    def wait(self, timeout: float = 60.0) -> bool:
        """Until every queued sample is measured (tests, benchmarks); False on timeout."""
        done = threading.Event()
        threading.Thread(target=lambda: (self._pending.join(), done.set()), daemon=True).start()
        return done.wait(timeout)

    def _start_worker(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name=f"vp-live-recall-{self.collection}",
                                                daemon=True)
                self._worker.start()

    def _work(self) -> None:
        while True:
            try:
                sample = self._pending.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                return
            try:
                recalls = measure(sample)
                with self._lock:
                    self._window.extend(recalls)
                    self.measured += len(recalls)
                metrics.publish(self.settings, metrics.reader_recall_points(r.value for r in recalls))
            except Exception as exc:  # the version may have been closed under it: the sample is lost, queries are not
                self.failed += 1  # one line (a host stopped at the process's end is expected); the traceback at debug
                log.warning("live recall of %s: a sample could not be measured (%s: %s)", self.collection,
                            type(exc).__name__, exc)
                log.debug("live recall of %s: the failed sample", self.collection, exc_info=True)
            finally:
                self._pending.task_done()


def measure(sample: Sample) -> list[QueryRecall]:
    """Each sampled query's recall@k: its answer against an exact scan of the same version
    (the answer's own distances are recomputed in the scan, whatever it included)."""
    exact = ExactTopK(sample.vectors, sample.k, sample.space)
    found_distance: list[dict[str, float]] = [{} for _ in sample.found]
    wanted = [set(ids) for ids in sample.found]
    for ids, rows in sample.client.embedding_pages(sample.collection, PAGE_ROWS):
        exact.feed(ids, rows)
        for n, names in enumerate(wanted):
            hits = [j for j, record_id in enumerate(ids) if record_id in names]
            if hits:
                near = distances(sample.space, sample.vectors[n:n + 1], np.asarray(rows[hits], dtype=np.float64))[0]
                found_distance[n].update({ids[j]: float(d) for j, d in zip(hits, near)})
    exact_ids, exact_distances = exact.result()
    return [query_recall(found, [found_distance[n].get(i, float("inf")) for i in found], exact_ids[n],
                         exact_distances[n], sample.k) for n, found in enumerate(sample.found)]
