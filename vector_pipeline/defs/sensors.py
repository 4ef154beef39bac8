"""Sensors: the SQS fast path and the S3 reconciliation of what the queue lost.

A tick groups the deltas it learned of by collection and returns, per collection: one
runless materialization of ``delta[c]`` (deltas in the batch, first/last delta id, vectors,
bytes, backlog, age of the oldest pending delta, the cadence decision), at most one
compaction run request and at most one ``base_fold`` request. Both follow
``compaction.cadence.due`` — the decision ``compact --watch`` follows, read the same way
(``defs/cadence.py``): compact when the oldest pending delta nears the collection's freshness
target, when its backlog passes ``backlog_max_deltas`` or when nothing is published yet, else
let its deltas accumulate; fold its base in its quiet window or past the bounds. None while a
compaction of c is queued or running (a fold while one runs for c). The reason of each
decision is in the run's tags, the event's metadata, the tick's log, its skip reason and its
cursor. A collection left to accumulate is listed again by the queue sensor once it falls due
(its due time travels in the cursor), as the loop lists it again every cycle; one with deltas
pending behind a queued or running compaction is carried in the cursor, unlisted, and listed in
the first tick after its run has ended (its deltas never wait for a new message). No run and no
partition per delta: a tick adds only the partitions of collections seen for the first time.

Messages are notifications (``delta.queue``): S3 is the truth for what is pending. The SQS
sensor deletes every message it read in the tick that registered its delta; a crash between
the two leaves the delta under ``delta/``, where the reconciliation sensor (and the next
compaction of c, which lists ``delta/<c>/``) finds it. The reconciliation sensor also decides
for every known collection with nothing pending, so a quiet collection's base is folded in its
window. The UI's preview runs the same body: it deletes the messages it read, which costs
nothing but that tick's event (the deltas wait under ``delta/`` for reconciliation).
"""

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from vector_pipeline.compaction.cadence import Decision
from vector_pipeline.compaction.compactor import ChromaCompactor
from vector_pipeline.config import Settings
from vector_pipeline.delta.backlog import Backlog, read_backlog, read_backlogs
from vector_pipeline.delta.queue import DeltaMessage, DeltaQueue

from .cadence import FOLD_REASON_TAG, RunHistory, cadence_tags, decide_all, reason, tiers_due
from .jobs import COMPACTION_JOB, FOLD_JOB, TIER_MERGE_RUN_CONFIG, base_fold_job, compaction_job
from .partitions import collection_partitions
from .resources import VectorPipelineResource

MAX_MESSAGES_PER_TICK = 2000
# A message the sensor read comes back after this long if no tick deleted it (a crash).
NOTIFICATION_VISIBILITY_SECONDS = 90
# Receiving stops after this long (plus one long poll of 2 s), so a tick stays within 10 s
# when receives are slow; what it did not read stays visible for the next tick.
RECEIVE_DEADLINE_SECONDS = 5
QUEUE_SENSOR_INTERVAL_SECONDS = 10
RECONCILIATION_INTERVAL_SECONDS = 300


def delta_event(collection: str, announced: list[DeltaMessage], backlog: Backlog, source: str,
                cadence: str = "") -> dg.AssetMaterialization:
    """The runless ``delta[collection]`` event of one tick: the batch it learned of, the backlog."""
    ids = sorted({m.ref.delta_id for m in announced}) or backlog.delta_ids
    bodies = [m.body for m in announced]
    return dg.AssetMaterialization(asset_key="delta", partition=collection, metadata={
        "source": source,
        "deltas_in_batch": dg.MetadataValue.int(len(ids)),
        "first_delta_id": ids[0] if ids else "",
        "last_delta_id": ids[-1] if ids else "",
        "vectors": dg.MetadataValue.int(sum(int(b.get("upsert_count", 0) or 0) for b in bodies)),
        "deletes": dg.MetadataValue.int(sum(int(b.get("delete_count", 0) or 0) for b in bodies)),
        "bytes": dg.MetadataValue.int(sum(backlog.sizes.get(i, 0) for i in ids)),
        "backlog": dg.MetadataValue.int(backlog.pending),
        "backlog_bytes": dg.MetadataValue.int(backlog.bytes),
        "oldest_pending_age_s": dg.MetadataValue.float(round(backlog.oldest_age_seconds(), 1)),
        "cadence": cadence,
    })


@dataclass
class TickPlan:
    """What a tick asks of Dagster (events, run requests, partitions of new collections), why
    (the cadence reason per collection) and which collections to look at again, when (epoch s)."""

    events: list[dg.AssetMaterialization] = field(default_factory=list)
    requests: list[dg.RunRequest] = field(default_factory=list)
    new_collections: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    deferred: dict[str, float] = field(default_factory=dict)

    def result(self, cursor: str | None) -> dg.SensorResult:
        adds = [collection_partitions.build_add_request(self.new_collections)] if self.new_collections else []
        if self.requests:
            return dg.SensorResult(run_requests=self.requests, asset_events=self.events,
                                   dynamic_partitions_requests=adds, cursor=cursor)
        skip = "; ".join(f"{c}: {r}" for c, r in sorted(self.reasons.items())) if self.events else "no new deltas"
        return dg.SensorResult(skip_reason=skip, asset_events=self.events, dynamic_partitions_requests=adds,
                               cursor=cursor)


def plan_tick(context: dg.SensorEvaluationContext, settings: Settings, announced: dict[str, list[DeltaMessage]],
              backlogs: dict[str, Backlog], source: str, tick_seconds: float, idle_too: bool = False,
              history: RunHistory | None = None) -> TickPlan:
    """Per collection in ``backlogs``: one ``delta[c]`` event when something is new or pending,
    and the requests ``cadence.due`` asks for (≤ 1 compaction, ≤ 1 base fold). ``idle_too``
    also decides for collections with nothing pending (their base fold)."""
    history = history or RunHistory.of(context.instance)
    known = set(context.instance.get_dynamic_partitions(collection_partitions.name))
    allowed = [b for _, b in sorted(backlogs.items()) if _allowed(context, settings, b)]
    decisions = decide_all(settings, history, [b for b in allowed if b.collection not in history.compacting
                                               and (b.pending or idle_too)], tick_seconds)
    plan = TickPlan()
    for backlog in allowed:
        collection = backlog.collection
        decision, busy = decisions.get(collection), collection in history.compacting
        if announced.get(collection) or backlog.pending:
            plan.reasons[collection] = reason(decision, busy)
            plan.events.append(delta_event(collection, announced.get(collection, []), backlog, source,
                                           plan.reasons[collection]))
            context.log.info(f"{collection}: {backlog.pending} pending; {plan.reasons[collection]}")
        _request(plan, settings, collection, backlog, decision, history)
    plan.new_collections = sorted({e.partition for e in plan.events if e.partition} - known)
    return plan


def _request(plan: TickPlan, settings: Settings, collection: str, backlog: Backlog, decision: Decision | None,
             history: RunHistory) -> None:
    if decision is None:  # a compaction is queued or running, or nothing is pending
        if backlog.pending and collection in history.compacting:
            plan.deferred[collection] = time.time()  # its deltas: looked at again in the tick its run has ended
        return
    if decision.should_compact:
        # No run_key: Dagster never re-requests a key whose run failed; the busy check keeps one per collection.
        plan.requests.append(dg.RunRequest(job_name=COMPACTION_JOB, partition_key=collection, tags={
            **cadence_tags(decision), "vector_pipeline/pending_deltas": str(backlog.pending),
            "vector_pipeline/first_delta_id": backlog.oldest_delta_id or "",
            "vector_pipeline/last_delta_id": max(backlog.sizes, default="")}))
    elif decision.compact_in_seconds is not None:
        plan.deferred[collection] = time.time() + decision.compact_in_seconds
    if collection in history.folding:
        return
    if decision.should_fold:
        plan.reasons.setdefault(collection, reason(decision))
        plan.requests.append(dg.RunRequest(job_name=FOLD_JOB, partition_key=collection, tags=cadence_tags(decision)))
    elif tiers_due(settings, collection):  # the compaction job's appends leave tier merges to this run
        plan.requests.append(dg.RunRequest(job_name=FOLD_JOB, partition_key=collection, run_config=TIER_MERGE_RUN_CONFIG,
                                           tags={**cadence_tags(decision), FOLD_REASON_TAG: "tiers"}))


def _allowed(context: dg.SensorEvaluationContext, settings: Settings, backlog: Backlog) -> bool:
    """Deltas of a collection outside ``VECTOR_COLLECTIONS`` are quarantined with the reason."""
    if not settings.collections or backlog.collection in settings.collections:
        return True
    reason = f"collection {backlog.collection!r} is not in VECTOR_COLLECTIONS"
    compactor = ChromaCompactor(settings=settings)
    for delta_id in backlog.delta_ids:
        compactor.quarantine(f"delta/{backlog.collection}/{delta_id}/", reason)
    context.log.warning(f"{reason}: {backlog.pending} deltas quarantined")
    return False


def _counted(cursor: dict[str, Any], received: int, deleted: int, receive_seconds: float, tick_seconds: float,
             plan: TickPlan, now: float) -> str:
    """Running message counts, this tick's own timing (receive: the SQS calls alone), its
    cadence reasons, and the collections to list again once due (collection → epoch s)."""
    deferred = {c: at for c, at in cursor.get("deferred", {}).items() if at > now}
    deferred.update((c, round(at, 1)) for c, at in plan.deferred.items())
    for request in plan.requests:
        if request.job_name == COMPACTION_JOB:
            deferred.pop(str(request.partition_key), None)
    return json.dumps({"messages_seen": int(cursor.get("messages_seen", 0)) + received,
                       "messages_deleted": int(cursor.get("messages_deleted", 0)) + deleted,
                       "receive_s": round(receive_seconds, 3), "tick_s": round(tick_seconds, 3),
                       "cadence": plan.reasons, "deferred": deferred})


def delta_sensors() -> list[dg.SensorDefinition]:
    """Both sensors, targeting the compaction and base fold jobs."""

    @dg.sensor(name="delta_queue_sensor", minimum_interval_seconds=QUEUE_SENSOR_INTERVAL_SECONDS,
               jobs=[compaction_job, base_fold_job], default_status=dg.DefaultSensorStatus.RUNNING,
               description="SQS fast path: delta announcements → one delta[c] event and, when the collection's "
                           "cadence says so, ≤ 1 compaction (and ≤ 1 base fold) per collection.")
    def delta_queue_sensor(context: dg.SensorEvaluationContext, vector_pipeline: VectorPipelineResource) -> dg.SensorResult:
        started = time.monotonic()
        settings = vector_pipeline.settings()
        cursor = json.loads(context.cursor) if context.cursor else {}
        queue = DeltaQueue(settings)
        messages, malformed = queue.receive(max_messages=MAX_MESSAGES_PER_TICK, wait_seconds=2,
                                            visibility_timeout=NOTIFICATION_VISIBILITY_SECONDS,
                                            deadline_seconds=RECEIVE_DEADLINE_SECONDS, drain_wait_seconds=0)
        received = time.monotonic()
        for bad in malformed:  # never valid, whoever reads it: out of the way at once
            queue.dead_letter(bad.receipt_handle, bad.raw_body, bad.reason)
        announced: dict[str, list[DeltaMessage]] = defaultdict(list)
        for message in messages:
            announced[message.ref.collection].append(message)
        now = time.time()
        history = RunHistory.of(context.instance)
        due_again = {c for c, at in cursor.get("deferred", {}).items() if at <= now}
        still_busy = due_again & history.compacting  # carried, unlisted, until their run has ended
        # One listing per collection announced, or left to accumulate (or waiting on a run) and now due.
        backlogs = {c: read_backlog(settings, c) for c in sorted((set(announced) | due_again) - still_busy)}
        plan = plan_tick(context, settings, announced, backlogs, "queue", QUEUE_SENSOR_INTERVAL_SECONDS,
                         history=history)
        plan.deferred.update(dict.fromkeys(still_busy, now))
        deleted = queue.ack(m.receipt_handle for m in messages)  # registered: S3 holds the rest
        return plan.result(_counted(cursor, len(messages), deleted, received - started,
                                    time.monotonic() - started, plan, now))

    @dg.sensor(name="delta_reconciliation_sensor", minimum_interval_seconds=RECONCILIATION_INTERVAL_SECONDS,
               jobs=[compaction_job, base_fold_job], default_status=dg.DefaultSensorStatus.RUNNING,
               description="S3 reconciliation: complete deltas under delta/ whose messages were lost; the base "
                           "folds of collections with nothing pending.")
    def delta_reconciliation_sensor(context: dg.SensorEvaluationContext, vector_pipeline: VectorPipelineResource) -> dg.SensorResult:
        settings = vector_pipeline.settings()
        backlogs = read_backlogs(settings)
        for collection in context.instance.get_dynamic_partitions(collection_partitions.name):
            backlogs.setdefault(collection, Backlog(collection, {}))  # nothing pending: a fold may be due
        plan = plan_tick(context, settings, {}, backlogs, "reconciliation", RECONCILIATION_INTERVAL_SECONDS,
                         idle_too=True)
        return plan.result(json.dumps({"pending": sum(b.pending for b in backlogs.values()), "cadence": plan.reasons}))

    return [delta_queue_sensor, delta_reconciliation_sensor]
