"""Sensors: the SQS fast path and the S3 reconciliation of what the queue lost.

Each tick adds the partitions of new deltas (and of collections seen for the first time),
requests their validation, and requests one compaction run per collection with pending
deltas, none while one is queued or running for that collection. The run itself reads what
is pending from ``delta/<collection>/``, so a tick never hands over message handles.

Messages are notifications (``queue``): the SQS sensor reads them with a short visibility
timeout, and deletes a message once its delta's partition exists — the delta is durably
known then, in the bucket and in Dagster — which is the tick after the one that added it,
so a valid message is received about twice and never dead-lettered. The UI's preview runs
the same body: it can delete only messages already acted on, and dead-letters only
malformed ones (never valid); it never changes data in the bucket.
"""


import json
from typing import Any

import dagster as dg

from vector_pipeline.compaction.compactor import ChromaCompactor
from vector_pipeline.config import Settings
from vector_pipeline.format.keys import DeltaRef, parse_delta_key
from vector_pipeline.delta.queue import DeltaQueue

from .jobs import COMPACTION_JOB, validate_delta_job
from .partitions import collection_partitions, delta_partitions
from .resources import VectorPipelineResource

MAX_ADDS_PER_TICK = 500
MAX_MESSAGES_PER_TICK = 500
# A message the sensor read comes back after this long if no tick deleted it.
NOTIFICATION_VISIBILITY_SECONDS = 90
# Receiving stops after this long (plus one long poll of 2 s), so a tick stays within 10 s
# when receives are slow; what it did not read stays visible for the next tick.
RECEIVE_DEADLINE_SECONDS = 5
_ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
           dg.DagsterRunStatus.STARTED]


def plan_tick(context: dg.SensorEvaluationContext, settings: Settings, refs: list[DeltaRef],
              cursor: str | None, busy: set[str] | None = None) -> dg.SensorResult:
    """Partition adds, validation runs and one compaction request per collection (none for
    the ``busy`` ones: a compaction queued or running; looked up when not given)."""
    known = set(context.instance.get_dynamic_partitions(delta_partitions.name))
    new_keys = [r.partition_key for r in dict.fromkeys(refs) if r.partition_key not in known][:MAX_ADDS_PER_TICK]
    requests = [dg.RunRequest(job_name=validate_delta_job.name, partition_key=key, run_key=f"validate:{key}")
                for key in new_keys]
    collections = sorted({r.collection for r in refs if _allowed(context, settings, r.collection)})
    new_collections = sorted(set(collections) - set(context.instance.get_dynamic_partitions(collection_partitions.name)))
    busy = _collections_compacting(context.instance) if busy is None else busy
    for collection in collections:
        if collection in busy:
            context.log.info(f"{collection}: a compaction is queued or running; its deltas wait for the next tick")
            continue
        # No run_key: Dagster never re-requests a key whose run failed, and the active-run check
        # above already keeps one compaction per collection.
        requests.append(dg.RunRequest(job_name=COMPACTION_JOB, partition_key=collection,
                                      tags={"vector_pipeline/deltas": str(sum(r.collection == collection for r in refs))}))
    if not requests:
        return dg.SensorResult(skip_reason="no new deltas", cursor=cursor)
    adds = [delta_partitions.build_add_request(new_keys)] if new_keys else []
    adds += [collection_partitions.build_add_request(new_collections)] if new_collections else []
    return dg.SensorResult(run_requests=requests, cursor=cursor, dynamic_partitions_requests=adds)


def _allowed(context: dg.SensorEvaluationContext, settings: Settings, collection: str) -> bool:
    if settings.collections and collection not in settings.collections:
        context.log.warning(f"deltas for {collection!r}, not in VECTOR_COLLECTIONS: not compacted (quarantined "
                            "when validated)")
        return False
    return True


def _collections_compacting(instance: dg.DagsterInstance) -> set[str]:
    """Collections with a compaction run queued or running (one query for all of them)."""
    records = instance.get_run_records(dg.RunsFilter(job_name=COMPACTION_JOB, statuses=_ACTIVE))
    return {r.dagster_run.tags.get("dagster/partition", "") for r in records}


def _still_pending(settings: Settings, refs: list[DeltaRef]) -> list[DeltaRef]:
    """Of deltas registered by an earlier tick, those no run has applied yet (its run may have
    listed delta/ before they landed): one listing per collection, so no run is requested in vain."""
    compactor = ChromaCompactor(settings=settings)
    pending: list[DeltaRef] = []
    for collection in sorted({r.collection for r in refs}):
        listed = set(compactor.list_pending_delta_keys(collection))
        pending += [r for r in refs if r.collection == collection and r.key in listed]
    return pending


def sensors(jobs: list[Any]) -> list[dg.SensorDefinition]:
    """Both sensors, targeting ``jobs`` (validation and compaction)."""

    @dg.sensor(name="delta_queue_sensor", minimum_interval_seconds=30, jobs=jobs,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="SQS fast path: new delta announcements → partitions, validation, compaction.")
    def delta_queue_sensor(context: dg.SensorEvaluationContext, vector_pipeline: VectorPipelineResource) -> dg.SensorResult:
        settings = vector_pipeline.settings()
        queue = DeltaQueue(settings)
        messages, malformed = queue.receive(max_messages=MAX_MESSAGES_PER_TICK, wait_seconds=2,
                                            visibility_timeout=NOTIFICATION_VISIBILITY_SECONDS,
                                            deadline_seconds=RECEIVE_DEADLINE_SECONDS)
        for bad in malformed:  # never valid, whoever reads it: out of the way at once
            queue.dead_letter(bad.receipt_handle, bad.raw_body, bad.reason)
        known = set(context.instance.get_dynamic_partitions(delta_partitions.name))
        acted_on = [m for m in messages if m.ref.partition_key in known]
        acked = queue.ack(m.receipt_handle for m in acted_on)
        refs = [m.ref for m in messages if m.ref.partition_key not in known]
        # A collection with a compaction queued or running gets no request this tick whatever
        # its listing says: list delta/<c>/ only for the others (one listing per collection).
        busy = _collections_compacting(context.instance)
        refs += _still_pending(settings, [m.ref for m in acted_on if m.ref.collection not in busy])
        seen = json.loads(context.cursor) if context.cursor else {}
        cursor = json.dumps({"messages_seen": int(seen.get("messages_seen", 0)) + len(messages),
                             "messages_deleted": int(seen.get("messages_deleted", 0)) + acked})
        return plan_tick(context, settings, refs, cursor, busy)

    @dg.sensor(name="delta_reconciliation_sensor", minimum_interval_seconds=300, jobs=jobs,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="S3 reconciliation: complete deltas under delta/ whose messages were lost.")
    def delta_reconciliation_sensor(context: dg.SensorEvaluationContext, vector_pipeline: VectorPipelineResource) -> dg.SensorResult:
        settings = vector_pipeline.settings()
        refs = [parse_delta_key(key) for key in ChromaCompactor(settings=settings).list_pending_delta_keys()]
        return plan_tick(context, settings, refs, cursor=str(len(refs)))

    return [delta_queue_sensor, delta_reconciliation_sensor]
