"""The compaction loop (``vector-pipeline compact --watch``): ``compact_pending`` cycle after cycle.

Invariant: the loop adds no protocol of its own — each cycle is one
``ChromaCompactor.compact_pending`` (every collection the queue announces, each under its
lock, acknowledged only after publish), so stopping between cycles, or abandoning one, leaves
pointer, queue and ``delta/`` as a crashed compactor would: consistent, redone by the next
run. A stop request (SIGINT, SIGTERM or SIGHUP, or ``stop()``) is honoured between cycles:
the current cycle finishes — its publish, acks and lock release included — and the loop
returns. The idle wait is the cycle's SQS long poll, so a stop waits at most
``wait_seconds`` when nothing comes. A second signal abandons the cycle at once (it raises
``processes.Interrupted``; ``compact_deltas`` releases its lock on the way out; what was not
published stays pending). Every ``reconcile_seconds`` a cycle also lists all of ``delta/``,
which finds collections whose messages were lost.

With ``cadence`` (the default), each collection with pending deltas is compacted only when
``compaction.cadence.due`` says so — read through ``compaction.cadence_reader``, as the Dagster
sensors read it (its oldest pending delta nears its freshness target, its backlog passed its
bound, or nothing is published yet); a deferred collection's deltas stay
pending and it is listed again every cycle, and the idle wait ends when the next one falls
due. A base fold ``due`` asks for runs in a thread of its own (``base_fold``: off the lock,
rebased at publish), one per collection at a time, while cycles go on appending; a stop does
not wait for it (a fold abandoned at any step leaves the pointer whole). Tier merges run the
same way: the loop's appends merge no tier (``ChromaCompactor(background_tiers=True)``), and
after a cycle that left a tier at the fan-in, ``fold_tiers`` merges it in that thread; so no
cycle rewrites more than its deltas, unless the background falls so far behind that the
segment bound makes an append merge the lowest tiers.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from contextlib import contextmanager
from datetime import datetime, timezone
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Iterator

from ..compaction.base_fold import BaseFold, fold_base, fold_tiers
from ..compaction.cadence import Decision
from ..compaction.cadence_reader import CadenceReader
from ..compaction.compactor import ChromaCompactor
from ..compaction.result import CompactionResult
from ..config import Settings
from .processes import SHUTDOWN_SIGNALS, Interrupted
from ..delta.queue import DeltaQueue

log = logging.getLogger(__name__)

MAX_LONG_POLL_SECONDS = 20  # SQS's own limit on WaitTimeSeconds
ERROR_BACKOFF_SECONDS = (1, 2, 5, 10, 30)


class WatchStop(str, Enum):
    """Why the loop returned."""

    SIGNAL = "signal"  # SIGINT, SIGTERM, SIGHUP or stop(): after the cycle under way
    MAX_CYCLES = "max_cycles"
    DURATION = "duration"

    def __str__(self) -> str:
        return self.value


@dataclass
class WatchCycle:
    """One cycle: what it compacted, how long it took, and the queue after it."""

    number: int
    started_at: float  # wall clock (time.time())
    seconds: float
    reconciled: bool
    results: list[CompactionResult]
    queue_visible: int | None = None
    queue_in_flight: int | None = None
    error: str | None = None  # the cycle itself failed (e.g. SQS unreachable); retried after a backoff
    deferred: dict[str, Decision] = field(default_factory=dict)  # collections left to accumulate

    @property
    def deltas(self) -> int:
        return sum(r.deltas_processed for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {"cycle": self.number, "started_at": self.started_at, "seconds": round(self.seconds, 3),
                "reconciled": self.reconciled, "deltas": self.deltas,
                "collections": {r.collection: {"status": str(r.status), "deltas": r.deltas_processed,
                                               "version": r.version, "vectors": r.vector_count, "fold": r.fold,
                                               "segments": r.segments, "seconds": round(r.duration_seconds, 3),
                                               "bytes_uploaded": r.bytes_uploaded,
                                               "error": r.error} for r in self.results},
                "queue_visible": self.queue_visible, "queue_in_flight": self.queue_in_flight, "error": self.error,
                "deferred": {c: d.as_dict() for c, d in self.deferred.items()}}

    def line(self) -> str:
        """The cycle's log line: collections, deltas, versions, seconds, queue depth."""
        parts = [f"{r.collection} {r.status} {r.deltas_processed} deltas → {r.version}" for r in self.results]
        queue = "queue ?" if self.queue_visible is None else \
            f"queue {self.queue_visible} visible, {self.queue_in_flight} in flight"
        return (f"cycle {self.number}: {len(self.results)} collections, {self.deltas} deltas, "
                f"{self.seconds:.2f}s{', reconciled' if self.reconciled else ''}; {queue}"
                + (f"; {'; '.join(parts)}" if parts else "") + (f"; error: {self.error}" if self.error else ""))


@dataclass
class WatchSummary:
    stopped_by: WatchStop
    cycles: int = 0
    deltas: int = 0
    seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"stopped_by": str(self.stopped_by), "cycles": self.cycles, "deltas": self.deltas,
                "seconds": round(self.seconds, 3), "statuses": self.statuses, "errors": self.errors}


class CompactionWatch:
    """Runs ``compact_pending`` in a loop until stopped, a cycle count or a duration is reached."""

    def __init__(self, settings: Settings, *, wait_seconds: int | None = None,
                 reconcile_seconds: float | None = None, max_cycles: int | None = None,
                 duration_seconds: float | None = None, collection: str | None = None, cadence: bool = True) -> None:
        self.settings = settings
        self.wait_seconds = settings.compact_watch_wait_seconds if wait_seconds is None else wait_seconds
        if not 1 <= self.wait_seconds <= MAX_LONG_POLL_SECONDS:
            raise ValueError(f"wait of {self.wait_seconds}s per poll: expected 1 to {MAX_LONG_POLL_SECONDS} "
                             "(SQS long polls last at most 20 s)")
        self.reconcile_seconds = (settings.compact_watch_reconcile_seconds if reconcile_seconds is None
                                  else reconcile_seconds)
        if self.reconcile_seconds < 0:
            raise ValueError("reconcile interval must be 0 (every cycle) or more seconds")
        if max_cycles is not None and max_cycles < 1:
            raise ValueError("max cycles must be at least 1")
        self.max_cycles = max_cycles
        self.duration_seconds = duration_seconds
        self.collection = collection
        self.compactor = ChromaCompactor(settings=settings, background_tiers=True)
        self.queue = DeltaQueue(settings)
        self._stop = threading.Event()
        self.cadence = cadence
        self.cadence_reader = CadenceReader(settings, store=self.compactor.store)
        self._deferred: dict[str, Decision] = {}  # collection -> the decision that deferred it
        self._lead: dict[str, float] = {}  # collection -> its last compaction's seconds
        self._folds: dict[str, threading.Thread] = {}
        self._folded_at: dict[str, datetime] = {}

    def stop(self) -> None:
        """Return after the cycle under way (callable from any thread or a signal handler)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, on_cycle: Callable[[WatchCycle], None] = lambda cycle: None) -> WatchSummary:
        started = time.monotonic()
        last_reconcile: float | None = None
        statuses: Counter[str] = Counter()
        summary = WatchSummary(WatchStop.SIGNAL)
        failures = 0
        while True:
            stop = self._stop_reason(summary.cycles, started)
            if stop is not None:
                summary.stopped_by = stop
                break
            reconcile = self.collection is None and (
                last_reconcile is None or time.monotonic() - last_reconcile >= self.reconcile_seconds)
            cycle = self._cycle(summary.cycles + 1, reconcile, started)
            if reconcile and cycle.error is None:
                last_reconcile = time.monotonic()
            summary.cycles += 1
            summary.deltas += cycle.deltas
            statuses.update(str(r.status) for r in cycle.results)
            log.info("%s", cycle.line())
            on_cycle(cycle)
            if cycle.error is not None:
                summary.errors += 1
                if summary.cycles == 1:  # a configuration error (no queue, no bucket): say so at once
                    raise RuntimeError(f"compaction loop: the first cycle failed: {cycle.error}")
                self._stop.wait(ERROR_BACKOFF_SECONDS[min(failures, len(ERROR_BACKOFF_SECONDS) - 1)])
                failures += 1
            else:
                failures = 0
        summary.seconds = time.monotonic() - started
        summary.statuses = dict(statuses)
        return summary

    def _stop_reason(self, cycles: int, started: float) -> WatchStop | None:
        if self._stop.is_set():
            return WatchStop.SIGNAL
        if self.max_cycles is not None and cycles >= self.max_cycles:
            return WatchStop.MAX_CYCLES
        if self.duration_seconds is not None and time.monotonic() - started >= self.duration_seconds:
            return WatchStop.DURATION
        return None

    def _cycle(self, number: int, reconcile: bool, loop_started: float) -> WatchCycle:
        wall, started = time.time(), time.monotonic()
        wait = self.wait_seconds
        if self.duration_seconds is not None:  # an idle wait does not outlast the duration
            wait = max(1, min(wait, int(self.duration_seconds - (started - loop_started))))
        if self._deferred:  # wake up when the first deferred collection falls due
            wait = max(1, min([wait] + [int(d.compact_in_seconds or 0) for d in self._deferred.values()]))
        results: list[CompactionResult] = []
        error = None
        deferred, self._deferred = self._deferred, {}
        try:
            results = self.compactor.compact_pending(
                self.collection, reconcile=reconcile, wait_seconds=wait, also=[] if self.collection else list(deferred),
                decide=self._decide if self.cadence else None)
            for result in results:
                if result.deltas_processed:
                    self._lead[result.collection] = result.duration_seconds
                if result.version and result.status == "ok":
                    self._merge_tiers_if_due(result.collection, result.version)
        except Exception as exc:  # noqa: BLE001 - the loop outlives a transient failure; the cycle says why
            log.exception("compaction cycle %d failed", number)
            error = f"{type(exc).__name__}: {exc}"
        cycle = WatchCycle(number, wall, 0.0, reconcile, results, error=error, deferred=dict(self._deferred))
        if error is not None:  # listed again next cycle
            self._deferred = {**deferred, **self._deferred}
        if error is None:
            try:
                depth = self.queue.approximate_depth()
                cycle.queue_visible, cycle.queue_in_flight = depth["visible"], depth["in_flight"]
            except Exception as exc:  # noqa: BLE001 - depth is for the log line only
                log.warning("queue depth unavailable: %s", exc)
        cycle.seconds = time.monotonic() - started
        return cycle

    def _decide(self, collection: str, pending_keys: list[str]) -> bool:
        """``cadence.due`` for one collection: compact it now? Starts a base fold it asks for."""
        lead = self._lead.get(collection)
        decision = self.cadence_reader.decide(collection, pending_keys, last_fold_at=self._folded_at.get(collection),
                                              lead_seconds=None if lead is None else lead + self.wait_seconds)
        if decision.should_fold:
            self._start_fold(collection, str(decision.fold))
        if not decision.should_compact:
            self._deferred[collection] = decision
        return decision.should_compact

    def _merge_tiers_if_due(self, collection: str, version: str) -> None:
        """After a publish: a tier merge in the background when a tier reached the fan-in (a
        failed look is logged: the next publish looks again, and the segment bound holds)."""
        try:
            due = self.cadence_reader.tier_merge_due(collection, self.compactor.store.read_manifest(collection, version))
        except Exception as exc:  # noqa: BLE001 - the cycle published; only the background merge waits
            log.warning("tier merge of %s not looked at: %s: %s", collection, type(exc).__name__, exc)
            return
        if due:
            self._start_fold(collection, "tier at the fan-in", fold_tiers, "tier merge")

    def _start_fold(self, collection: str, reason: str, fold_with: Callable[[Settings, str], BaseFold] = fold_base,
                    what: str = "base fold") -> None:
        running = self._folds.get(collection)
        if running is not None and running.is_alive():
            return
        if fold_with is fold_base:
            self._folded_at[collection] = datetime.now(timezone.utc)

        def fold() -> None:
            try:
                done = fold_with(self.settings, collection)
                log.info("%s of %s (%s): %s, version %s, %.1fs off the lock, %.2fs under it", what, collection,
                         reason, done.outcome, done.result.version, done.fold_seconds, done.locked_seconds)
            except Exception:  # noqa: BLE001 - a failed fold changes nothing visible; the next decision retries
                log.exception("%s of %s failed", what, collection)

        self._folds[collection] = threading.Thread(target=fold, name=f"vp-fold-{collection}", daemon=True)
        self._folds[collection].start()


@contextmanager
def stop_between_cycles(watch: CompactionWatch) -> Iterator[None]:
    """Within (main thread only): the first SIGINT/SIGTERM/SIGHUP asks ``watch`` to stop after
    its cycle; a second raises ``Interrupted`` (abandon the cycle; locks released on the way out)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signum: int, _frame: object) -> None:
        if watch.stopping:
            raise Interrupted(signum)
        log.warning("received %s: stopping after the current cycle (again to abandon it)",
                    signal.Signals(signum).name)
        watch.stop()

    previous = {signum: signal.signal(signum, request_stop) for signum in SHUTDOWN_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
