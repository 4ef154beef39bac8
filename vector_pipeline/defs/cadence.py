"""The sensors' cadence: ``compaction.cadence.due`` per collection, read through the same
``CadenceReader`` as ``compact --watch``, with what only the Dagster instance knows — which
runs are queued or running, when a collection's base was last folded, how long its last
compaction took (the lead, with the sensor's own interval, as the loop's cycle).

Invariant: nothing is decided here — ``due`` decides; this module turns its ``Decision`` into
at most one compaction and one ``base_fold`` request per collection, each tagged with the
decision's reason, and reads the instance three times a tick whatever the number of
collections. The catalog is read at most once a ``CATALOG_TTL_SECONDS`` per collection (the
reader outlives ticks in the code server), the pointer once per decision; the decisions of a
tick's collections are read ``DECISION_THREADS`` at a time (independent GETs), so hundreds of
collections add a fraction of a second to a tick, not one round trip each in turn.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

import dagster as dg

from vector_pipeline.compaction.cadence import CompactDecision, Decision
from vector_pipeline.compaction.cadence_reader import CadenceReader
from vector_pipeline.config import Settings
from vector_pipeline.delta.backlog import Backlog

from .jobs import COMPACTION_JOB, FOLD_JOB

ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED]
RUNS_SCANNED = 1000  # newest fold and successful compaction runs read for last-fold times and leads
CADENCE_TAG = "vector_pipeline/cadence"
FOLD_REASON_TAG = "vector_pipeline/fold_reason"
DECISION_THREADS = 8
BUSY = "compaction_running"  # the reason given when a run of the collection is queued or running
_READERS: dict[Settings, CadenceReader] = {}


@dataclass(frozen=True)
class RunHistory:
    """What the instance says of each collection's runs, in three queries."""

    compacting: frozenset[str]
    folding: frozenset[str]
    last_fold_at: dict[str, datetime]
    last_compaction_seconds: dict[str, float]

    @classmethod
    def of(cls, instance: dg.DagsterInstance) -> "RunHistory":
        active = instance.get_run_records(dg.RunsFilter(job_name=COMPACTION_JOB, statuses=ACTIVE))
        folds = instance.get_run_records(dg.RunsFilter(job_name=FOLD_JOB), limit=RUNS_SCANNED)  # newest first
        done = instance.get_run_records(dg.RunsFilter(job_name=COMPACTION_JOB, statuses=[dg.DagsterRunStatus.SUCCESS]),
                                        limit=RUNS_SCANNED)
        last_fold: dict[str, datetime] = {}
        for record in folds:
            created = record.create_timestamp
            last_fold.setdefault(_partition(record), created if created.tzinfo else created.replace(tzinfo=timezone.utc))
        seconds: dict[str, float] = {}
        for record in done:
            if record.start_time is not None and record.end_time is not None:
                seconds.setdefault(_partition(record), record.end_time - record.start_time)
        return cls(frozenset(_partition(r) for r in active),
                   frozenset(_partition(r) for r in folds if r.dagster_run.status in ACTIVE), last_fold, seconds)


def _partition(record: dg.RunRecord) -> str:
    return record.dagster_run.tags.get("dagster/partition", "")


def reader_for(settings: Settings) -> CadenceReader:
    """One reader per deployment's settings, kept across ticks (its catalog cache is the point)."""
    reader = _READERS.get(settings)
    if reader is None:
        if len(_READERS) >= 8:  # settings changed (a reload): drop the old readers
            _READERS.clear()
        reader = _READERS[settings] = CadenceReader(settings)
    return reader


def tiers_due(settings: Settings, collection: str) -> bool:
    """The published version this tick's decision read has a tier at the fan-in (no request)."""
    return reader_for(settings).tier_merge_due(collection)


def decide(settings: Settings, history: RunHistory, backlog: Backlog, tick_seconds: float,
           now: datetime | None = None) -> Decision:
    """``due`` for ``backlog``'s collection; the lead is its last compaction's run time plus
    the sensor's interval (half the target before any compaction ran), as the loop's."""
    collection = backlog.collection
    last = history.last_compaction_seconds.get(collection)
    return reader_for(settings).decide(collection, backlog.delta_keys, now=now or datetime.now(timezone.utc),
                                       lead_seconds=None if last is None else last + tick_seconds,
                                       last_fold_at=history.last_fold_at.get(collection))


def decide_all(settings: Settings, history: RunHistory, backlogs: Iterable[Backlog], tick_seconds: float
               ) -> dict[str, Decision]:
    """``decide`` for each backlog's collection, ``DECISION_THREADS`` at a time, one ``now``."""
    todo = list(backlogs)
    now = datetime.now(timezone.utc)
    if len(todo) <= 1:
        return {b.collection: decide(settings, history, b, tick_seconds, now) for b in todo}
    with ThreadPoolExecutor(max_workers=DECISION_THREADS, thread_name_prefix="vp-cadence") as pool:
        decided = pool.map(lambda b: decide(settings, history, b, tick_seconds, now), todo)
        return {b.collection: d for b, d in zip(todo, decided)}


def reason(decision: Decision | None, busy: bool = False) -> str:
    """What a person reads in the tick's log, skip reason and cursor (no decision: a compaction
    of the collection is queued or running, or nothing is pending)."""
    if decision is None:
        return BUSY if busy else str(CompactDecision.NOTHING_PENDING)
    text = str(decision.compact)
    if decision.pending_age_seconds is not None:
        text += f" (oldest {decision.pending_age_seconds:.0f}s of {decision.target_seconds:.0f}s"
        text += f", due in {decision.compact_in_seconds:.0f}s)" if decision.compact is CompactDecision.ACCUMULATE \
            else ")"
    return text + (f", fold: {decision.fold}" if decision.should_fold else "")


def cadence_tags(decision: Decision) -> dict[str, str]:
    """The decision on a run's tags: why it was requested."""
    age = decision.pending_age_seconds
    return {CADENCE_TAG: str(decision.compact), FOLD_REASON_TAG: str(decision.fold),
            "vector_pipeline/pending_age_s": "" if age is None else f"{age:.1f}",
            "vector_pipeline/freshness_target_s": f"{decision.target_seconds:g}"}
