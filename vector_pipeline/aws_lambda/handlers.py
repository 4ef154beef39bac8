"""AWS Lambda entry points: producer, query and compactor (contract names).

Each handler parses its event into a typed model (``events.py``, Powertools' parser), calls
the library and shapes the answer;
Powertools provides the structured logger, the metrics (embedded metric format on stdout)
and, for the compactor, the SQS partial batch response.

The compactor's guarantee: a record is reported as a success only when the pointer names
a version holding its delta (applied now or earlier). A busy lock, a failed compaction, a
delta that is missing or was quarantined, and a malformed message are failures, so SQS
redelivers them and, after ``maxReceiveCount`` receives, moves them to the dead-letter
queue. A malformed record fails alone; the others of its batch still compact.

Configuration is read once per container (at import, the Lambda "init" phase), and a lock
lifetime that is not comfortably longer than its heartbeat interval is refused there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel

from ..io import metrics as vp_metrics
from ..compaction.compactor import ChromaCompactor
from ..compaction.result import CompactionResult, CompactionStatus
from ..config import Settings
from ..delta.produce import produce_embedding_delta
from ..format.keys import InvalidDeltaError
from ..chroma.embeddings import provider_from_settings
from .events import parse_produce_event, parse_query_event, sqs_records
from ..io.lock import refuse_unsafe_lock_timing
from ..delta.queue import parse_message
from ..read.reader import query_snapshot
from ..table.snapshot_store import SnapshotNotFoundError

SETTINGS = Settings.from_env()
refuse_unsafe_lock_timing(SETTINGS)

logger = Logger(service=vp_metrics.SERVICE)
metrics = Metrics(namespace=SETTINGS.metrics_namespace, service=vp_metrics.SERVICE)
# A batch whose every record failed is still an answer (its failures), not an exception.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

# The worst status of a batch's compactions names the batch.
_STATUS_ORDER = [CompactionStatus.NOOP, CompactionStatus.OK, CompactionStatus.BUSY, CompactionStatus.FAILED]


class RecordNotApplied(RuntimeError):
    """The record's delta is not in the published version: SQS must redeliver it."""


@logger.inject_lambda_context
@metrics.log_metrics
def producer_handler(event: Any, context: Any) -> dict[str, Any]:
    request = parse_produce_event(event, SETTINGS)
    failed = True
    try:
        embeddings = request.embeddings
        if embeddings is None:
            embeddings = provider_from_settings(SETTINGS).embed(request.texts or [])
        produced = produce_embedding_delta(request.ids, embeddings, request.documents, request.metadatas,
                                           collection_name=request.collection, delete_ids=request.delete_ids,
                                           settings=SETTINGS)
        failed = False
    finally:
        vp_metrics.publish(SETTINGS, vp_metrics.producer_points(failed), emf=_emf())
    logger.info("delta produced", extra={"delta_key": produced["delta_key"], "vectors": len(request.ids)})
    return {"delta_key": produced["delta_key"], "delta_id": produced["delta_id"], "vectors": len(request.ids)}


@logger.inject_lambda_context
def query_handler(event: Any, context: Any) -> dict[str, Any]:
    request = parse_query_event(event, SETTINGS)
    # One reader per container: its local copy under /tmp (the cache dir) survives warm starts.
    try:
        result = query_snapshot(
            query_texts=None if request.query_text is None else [request.query_text],
            query_embeddings=None if request.query_embedding is None else [request.query_embedding],
            n_results=request.n_results, where=request.where, collection_name=request.collection,
            snapshot_path=Path(SETTINGS.cache_dir) / "snapshots", settings=SETTINGS)
    except SnapshotNotFoundError as exc:  # a collection nobody compacted yet is unknown here
        raise ValueError(f"event field 'collection': {exc}") from None
    return _json_ready(result)


@logger.inject_lambda_context
@metrics.log_metrics
def compactor_handler(event: Any, context: Any) -> dict[str, Any]:
    batch = CompactorBatch(SETTINGS, sqs_records(event))
    response = process_partial_response(event=dict(event), record_handler=batch.handle_record,
                                         processor=processor, context=context)
    return {"status": batch.status, "deltas_processed": batch.deltas_processed, **response}


class CompactorBatch:
    """One compaction per collection of the batch, run when its first record is handled."""

    def __init__(self, settings: Settings, records: list[SqsRecordModel]) -> None:
        self.settings = settings
        self.compactor = ChromaCompactor(settings=settings)
        self.keys_by_collection: dict[str, list[str]] = {}
        for record in records:
            try:
                ref = parse_message(record.body)
            except InvalidDeltaError:
                continue  # fails alone when its record is handled
            self.keys_by_collection.setdefault(ref.collection, []).append(ref.key)
        self.results: dict[str, CompactionResult] = {}

    def handle_record(self, record: SQSRecord) -> str:
        ref = parse_message(record.body)
        if self.settings.collections and ref.collection not in self.settings.collections:
            raise InvalidDeltaError(f"collection {ref.collection!r} is not in VECTOR_COLLECTIONS", ref.key)
        result = self._compact(ref.collection)
        if result.status in (CompactionStatus.BUSY, CompactionStatus.FAILED):
            raise RecordNotApplied(f"{ref.key}: compaction {result.status}: {result.error or 'lock held'}")
        if ref.key in result.quarantined:
            raise InvalidDeltaError(f"quarantined: {result.quarantined[ref.key]}", ref.key)
        if ref.key in result.missing:
            raise RecordNotApplied(f"{ref.key}: no complete delta under that key (yet)")
        return ref.key

    def _compact(self, collection: str) -> CompactionResult:
        if collection not in self.results:
            result = self.compactor.compact_deltas(sorted(set(self.keys_by_collection[collection])), collection)
            self.results[collection] = result
            logger.info("compaction", extra={k: v for k, v in result.as_dict().items()
                                            if k in ("status", "collection", "deltas_processed", "version",
                                                     "duration_seconds", "error")})
            vp_metrics.publish(self.settings, vp_metrics.compaction_points(
                self.compactor.store, collection, str(result.status), result.duration_seconds,
                result.deltas_processed, result.version, result.previous_version), emf=_emf())
        return self.results[collection]

    @property
    def status(self) -> str:
        statuses = [r.status for r in self.results.values()] or [CompactionStatus.NOOP]
        return str(max(statuses, key=_STATUS_ORDER.index))

    @property
    def deltas_processed(self) -> int:
        return sum(r.deltas_processed for r in self.results.values())


def _emf() -> Metrics | None:
    """The handlers' Powertools metrics when the sink is EMF (flushed by ``log_metrics``)."""
    return metrics if vp_metrics.MetricsSink(SETTINGS.metrics_sink) is vp_metrics.MetricsSink.EMF else None


def _json_ready(value: Any) -> Any:
    """Chroma's results as plain JSON (numpy arrays and floats included)."""
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))
