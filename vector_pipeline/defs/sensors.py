"""Sensors: the SQS fast path and the S3 reconciliation of what the queue lost.

Neither deletes a message nor changes data (the UI's preview runs the same body): the SQS
sensor only hides the messages it read for a lock's lifetime, and hands their receipt
handles to the compaction run, which deletes them after the pointer moved. Each tick adds
at most ``MAX_ADDS_PER_TICK`` partitions and requests at most one compaction per
collection, none while one is queued or running for it.
"""


import json
from typing import Any

import dagster as dg

from vector_pipeline.compactor import ChromaCompactor
from vector_pipeline.config import Settings
from vector_pipeline.delta import DeltaRef, parse_delta_key
from vector_pipeline.queue import DeltaQueue

from .assets import COMPACTION_TAG
from .jobs import candidate_op_name, compaction_job_name, validate_delta_job
from .partitions import delta_partitions
from .resources import VectorPipelineResource

MAX_ADDS_PER_TICK = 500
MAX_MESSAGES_PER_TICK = 500
_ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
           dg.DagsterRunStatus.STARTED]


def plan_tick(context: dg.SensorEvaluationContext, settings: Settings, refs: list[DeltaRef],
              receipt_handles: dict[str, str], cursor: str | None) -> dg.SensorResult:
    """Partition adds, validation runs and one compaction request per collection."""
    new_keys = []
    for ref in dict.fromkeys(refs):
        if len(new_keys) >= MAX_ADDS_PER_TICK:
            break
        if not context.instance.has_dynamic_partition(delta_partitions.name, ref.partition_key):
            new_keys.append(ref.partition_key)
    requests = [dg.RunRequest(job_name=validate_delta_job.name, partition_key=key, run_key=f"validate:{key}")
                for key in new_keys]
    by_collection: dict[str, list[str]] = {}
    for ref in refs:
        by_collection.setdefault(ref.collection, []).append(ref.key)
    for collection, keys in sorted(by_collection.items()):
        request = _compaction_request(context, settings, collection, sorted(set(keys)), receipt_handles)
        if request is not None:
            requests.append(request)
    if not requests:
        return dg.SensorResult(skip_reason="no new deltas", cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor,
                           dynamic_partitions_requests=[delta_partitions.build_add_request(new_keys)] if new_keys else [])


def _compaction_request(context: dg.SensorEvaluationContext, settings: Settings, collection: str,
                        keys: list[str], receipt_handles: dict[str, str]) -> dg.RunRequest | None:
    if collection not in settings.collections:
        context.log.warning(f"deltas for unconfigured collection {collection!r} (VECTOR_COLLECTIONS): not compacted")
        return None
    active = context.instance.get_run_records(
        dg.RunsFilter(job_name=compaction_job_name(collection), statuses=_ACTIVE), limit=1)
    if active:
        context.log.info(f"{collection}: a compaction is queued or running; its deltas wait for the next tick")
        return None
    handles = {k: receipt_handles[k] for k in keys if k in receipt_handles}
    # No run_key: Dagster never re-requests a key whose run failed, and the active-run check
    # above already keeps one compaction per collection.
    return dg.RunRequest(
        job_name=compaction_job_name(collection),
        tags={COMPACTION_TAG: collection, "vector_pipeline/deltas": str(len(keys))},
        run_config={"ops": {candidate_op_name(collection): {"config": {
            "delta_keys": keys, "receipt_handles": handles}}}})


def sensors(jobs: list[Any]) -> list[dg.SensorDefinition]:
    """Both sensors, targeting ``jobs`` (validation and every collection's compaction)."""

    @dg.sensor(name="delta_queue_sensor", minimum_interval_seconds=30, jobs=jobs,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="SQS fast path: new delta announcements → partitions, validation, compaction.")
    def delta_queue_sensor(context: dg.SensorEvaluationContext, vector_pipeline: VectorPipelineResource) -> dg.SensorResult:
        settings = vector_pipeline.settings()
        queue = DeltaQueue(settings)
        messages, malformed = queue.receive(max_messages=MAX_MESSAGES_PER_TICK, wait_seconds=2,
                                            visibility_timeout=settings.lock_ttl_seconds, deadline_seconds=15)
        for bad in malformed:
            context.log.warning(f"malformed message {bad.message_id} ({bad.reason}): left for the dead-letter queue")
        seen = int(json.loads(context.cursor)["messages_seen"]) if context.cursor else 0
        cursor = json.dumps({"messages_seen": seen + len(messages)})
        return plan_tick(context, settings, [m.ref for m in messages],
                         {m.ref.key: m.receipt_handle for m in messages}, cursor)

    @dg.sensor(name="delta_reconciliation_sensor", minimum_interval_seconds=300, jobs=jobs,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="S3 reconciliation: complete deltas under delta/ whose messages were lost.")
    def delta_reconciliation_sensor(context: dg.SensorEvaluationContext, vector_pipeline: VectorPipelineResource) -> dg.SensorResult:
        settings = vector_pipeline.settings()
        refs = [parse_delta_key(key) for key in ChromaCompactor(settings=settings).list_pending_delta_keys()]
        return plan_tick(context, settings, refs, {}, cursor=str(len(refs)))

    return [delta_queue_sensor, delta_reconciliation_sensor]
