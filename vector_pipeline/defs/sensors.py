"""Sensors: the SQS fast path and the S3 reconciliation of what the queue lost.

A tick groups the deltas it learned of by collection and returns, per collection: one
runless materialization of ``delta[c]`` (deltas in the batch, first/last delta id, vectors,
bytes, backlog, age of the oldest pending delta), and at most one compaction run request —
none while a compaction of c is queued or running, none when ``should_compact_now`` says
wait. No run and no partition per delta: a tick requests at most one run per collection and
adds only the partitions of collections seen for the first time.

Messages are notifications (``delta.queue``): S3 is the truth for what is pending. The SQS
sensor deletes every message it read in the tick that registered its delta; a crash between
the two leaves the delta under ``delta/``, where the reconciliation sensor (and the next
compaction of c, which lists ``delta/<c>/``) finds it. The UI's preview runs the same body:
it deletes the messages it read, which costs nothing but that tick's event (the deltas wait
under ``delta/`` for reconciliation).
"""

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field

import dagster as dg

from vector_pipeline.compaction.compactor import ChromaCompactor
from vector_pipeline.config import Settings
from vector_pipeline.delta.backlog import Backlog, read_backlog, read_backlogs
from vector_pipeline.delta.queue import DeltaMessage, DeltaQueue

from .jobs import COMPACTION_JOB, compaction_job
from .partitions import collection_partitions
from .resources import VectorPipelineResource

MAX_MESSAGES_PER_TICK = 2000
# A message the sensor read comes back after this long if no tick deleted it (a crash).
NOTIFICATION_VISIBILITY_SECONDS = 90
# Receiving stops after this long (plus one long poll of 2 s), so a tick stays within 10 s
# when receives are slow; what it did not read stays visible for the next tick.
RECEIVE_DEADLINE_SECONDS = 5
QUEUE_SENSOR_INTERVAL_SECONDS = 10
_ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
           dg.DagsterRunStatus.STARTED]


def should_compact_now(collection: str, backlog: Backlog) -> bool:
    """Whether ``collection`` compacts now, given its backlog: the one cadence decision of the
    sensors (today: whenever something is pending; a freshness/quiet-window policy plugs in here)."""
    return backlog.pending > 0


def delta_event(collection: str, announced: list[DeltaMessage], backlog: Backlog, source: str) -> dg.AssetMaterialization:
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
    })


@dataclass
class TickPlan:
    """What a tick asks of Dagster: events, run requests, partitions of new collections."""

    events: list[dg.AssetMaterialization] = field(default_factory=list)
    requests: list[dg.RunRequest] = field(default_factory=list)
    new_collections: list[str] = field(default_factory=list)

    def result(self, cursor: str | None) -> dg.SensorResult:
        if not self.events and not self.requests:
            return dg.SensorResult(skip_reason="no new deltas", cursor=cursor)
        adds = [collection_partitions.build_add_request(self.new_collections)] if self.new_collections else []
        return dg.SensorResult(run_requests=self.requests, asset_events=self.events,
                               dynamic_partitions_requests=adds, cursor=cursor)


def plan_tick(context: dg.SensorEvaluationContext, settings: Settings, announced: dict[str, list[DeltaMessage]],
              backlogs: dict[str, Backlog], source: str) -> TickPlan:
    """One ``delta[c]`` event and at most one compaction request per collection in ``backlogs``."""
    busy = _collections_compacting(context.instance)
    known = set(context.instance.get_dynamic_partitions(collection_partitions.name))
    events: list[dg.AssetMaterialization] = []
    requests: list[dg.RunRequest] = []
    for collection in sorted(backlogs):
        backlog = backlogs[collection]
        if not _allowed(context, settings, backlog):
            continue
        if announced.get(collection) or backlog.pending:
            events.append(delta_event(collection, announced.get(collection, []), backlog, source))
        if collection in busy:
            context.log.info(f"{collection}: a compaction is queued or running; its deltas wait for the next tick")
        elif should_compact_now(collection, backlog):
            # No run_key: Dagster never re-requests a key whose run failed; the busy check keeps one per collection.
            requests.append(dg.RunRequest(job_name=COMPACTION_JOB, partition_key=collection, tags={
                "vector_pipeline/pending_deltas": str(backlog.pending),
                "vector_pipeline/first_delta_id": backlog.oldest_delta_id or "",
                "vector_pipeline/last_delta_id": max(backlog.sizes, default="")}))
    new = sorted({e.partition for e in events if e.partition} - known)
    return TickPlan(events, requests, new)


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


def _collections_compacting(instance: dg.DagsterInstance) -> set[str]:
    """Collections with a compaction run queued or running (one query for all of them)."""
    records = instance.get_run_records(dg.RunsFilter(job_name=COMPACTION_JOB, statuses=_ACTIVE))
    return {r.dagster_run.tags.get("dagster/partition", "") for r in records}


def _counted(cursor: str | None, received: int, deleted: int, receive_seconds: float, tick_seconds: float) -> str:
    """Running message counts, and this tick's own timing (receive: the SQS calls alone)."""
    seen = json.loads(cursor) if cursor else {}
    return json.dumps({"messages_seen": int(seen.get("messages_seen", 0)) + received,
                       "messages_deleted": int(seen.get("messages_deleted", 0)) + deleted,
                       "receive_s": round(receive_seconds, 3), "tick_s": round(tick_seconds, 3)})


def delta_sensors() -> list[dg.SensorDefinition]:
    """Both sensors, targeting the compaction job."""

    @dg.sensor(name="delta_queue_sensor", minimum_interval_seconds=QUEUE_SENSOR_INTERVAL_SECONDS,
               jobs=[compaction_job], default_status=dg.DefaultSensorStatus.RUNNING,
               description="SQS fast path: delta announcements → one delta[c] event and ≤ 1 compaction per collection.")
    def delta_queue_sensor(context: dg.SensorEvaluationContext, vector_pipeline: VectorPipelineResource) -> dg.SensorResult:
        started = time.monotonic()
        settings = vector_pipeline.settings()
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
        backlogs = {c: read_backlog(settings, c) for c in sorted(announced)}  # one listing per collection
        plan = plan_tick(context, settings, announced, backlogs, "queue")
        deleted = queue.ack(m.receipt_handle for m in messages)  # registered: S3 holds the rest
        return plan.result(_counted(context.cursor, len(messages), deleted, received - started,
                                    time.monotonic() - started))

    @dg.sensor(name="delta_reconciliation_sensor", minimum_interval_seconds=300, jobs=[compaction_job],
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="S3 reconciliation: complete deltas under delta/ whose messages were lost.")
    def delta_reconciliation_sensor(context: dg.SensorEvaluationContext, vector_pipeline: VectorPipelineResource) -> dg.SensorResult:
        settings = vector_pipeline.settings()
        backlogs = read_backlogs(settings)
        plan = plan_tick(context, settings, {}, backlogs, "reconciliation")
        return plan.result(cursor=str(sum(b.pending for b in backlogs.values())))

    return [delta_queue_sensor, delta_reconciliation_sensor]

