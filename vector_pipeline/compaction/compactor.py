"""Compaction: base version + pending deltas → a new immutable version → publish → ack.

Invariant: a delta's message is deleted, and the delta archived, only after the pointer
names a version that holds it; every failure before that leaves pointer, queue and
``delta/`` as they were, so the next run redoes the work. Re-applying an applied delta
is a no-op (the version's merge state lists applied delta ids); which delta wins an id is
``merge``'s rule.

The steps each live in a module of their own: intake (``intake``), the write
(``version_writer`` over the pure ``merge``), publish (the pointer's conditional PUT in
``snapshot_store``), acknowledge (message deletes here, archive and quarantine in
``delta/archive``); public so the Dagster layer can put its blocking check between write and
publish, each under the caller's ``CompactionLock``. The lock keeps compactors apart; the
conditional PUT makes a compactor that outlived its lock harmless.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from typing import Callable, Iterable, Mapping, Sequence

from .. import progress
from ..table.catalog import CollectionCatalog, UnknownCollectionError
from ..table.embedding import record_first_embedding
from ..config import HnswSettings, Settings
from ..delta.archive import archive_deltas, quarantine_delta
from ..format.keys import DeltaRef, parse_delta_key
from ..format.loaded_delta import LoadedDelta
from ..faults import checkpoint
from .intake import DeltaIntake
from ..io.lock import CompactionLock, lock_id_for
from ..format.merge_state import remember_state
from ..delta.queue import DeltaQueue
from ..table.snapshot_store import PublishOutcome, SnapshotStore
from .result import CompactionResult, CompactionStatus
from .version_writer import Candidate, VersionWriter
from .warm_cache import WarmCache

log = logging.getLogger(__name__)


class ChromaCompactor:
    """Merges deltas into new snapshot versions of one bucket, under the DynamoDB lock."""

    def __init__(self, bucket_name: str | None = None, table_name: str | None = None, *,
                 settings: Settings | None = None, background_tiers: bool = False) -> None:
        """``background_tiers``: appends merge no tier (``fold_tiers`` does, off the lock), only
        what keeps the segment bound; the loop that runs the background merges says so."""
        self.settings = (Settings.resolve(settings)).with_overrides(
            vectors_bucket=bucket_name, dynamodb_table_name=table_name)
        self.bucket = self.settings.vectors_bucket
        self.store = SnapshotStore(self.settings)
        self.s3 = self.store.s3
        self.catalog = CollectionCatalog(self.settings)
        self.intake = DeltaIntake(self.settings, self.store, self.catalog)
        self.cache = WarmCache(self.settings, self.store)
        self.writer = VersionWriter(self.settings, self.store, self.intake, self.cache, self.catalog,
                                    tiers_inline=not background_tiers)

    # -- the whole protocol ----------------------------------------------------------------

    def compact_deltas(self, delta_keys: Sequence[str], collection_name: str = "words", *,
                       receipt_handles: Mapping[str, str] | None = None) -> CompactionResult:
        """Apply ``delta_keys`` (any order) to ``collection_name`` and publish a version.

        ``receipt_handles`` maps delta keys to SQS receipt handles, deleted after publish.
        Raises ``UnknownCollectionError`` for a collection the catalog does not hold (and
        does not create) or the allow-list excludes, before anything is touched.
        """
        self.catalog.admits(collection_name)
        started = time.monotonic()
        lock = CompactionLock(lock_id_for(collection_name), settings=self.settings)
        if not lock.acquire():
            log.info("compaction of %s skipped: another compactor holds the lock", collection_name)
            return CompactionResult(CompactionStatus.BUSY, collection_name)
        lock.start_heartbeat()
        checkpoint(self.settings, "after_lock")
        try:
            result = self._compact_locked(delta_keys, collection_name, lock, receipt_handles or {}, started)
        except Exception as exc:
            log.exception("compaction of %s failed", collection_name)
            result = CompactionResult(CompactionStatus.FAILED, collection_name, error=f"{type(exc).__name__}: {exc}")
        finally:
            lock.release()
        result.duration_seconds = time.monotonic() - started
        result.fence = lock.fence
        log.info("compaction of %s: %s, %d deltas, version %s, %.2fs", collection_name, result.status,
                 result.deltas_processed, result.version, result.duration_seconds)
        return result

    def _compact_locked(self, delta_keys: Sequence[str], collection: str, lock: CompactionLock,
                        receipt_handles: Mapping[str, str], started: float) -> CompactionResult:
        candidate = self.write_candidate(collection, delta_keys, fence=lock.fence, lock_owner=lock.owner)
        result = CompactionResult(
            CompactionStatus.NOOP, collection, version=candidate.base_version,
            previous_version=candidate.base_version, vector_count=candidate.base_vector_count,
            already_applied=[r.key for r in candidate.already_applied], missing=candidate.missing,
            quarantined=candidate.quarantined, bytes_downloaded=candidate.bytes_downloaded)
        if candidate.manifest is not None:
            checkpoint(self.settings, "after_upload")
            if lock.lost:
                self.discard(candidate)
                raise RuntimeError("lock lost before publish (heartbeat found another owner)")
            if self.publish_candidate(candidate) is PublishOutcome.CONFLICT:
                result.status = CompactionStatus.FAILED
                result.error = "conflict: the pointer moved since this run read it"
                return result
            result.status = CompactionStatus.OK
            result.publish_seconds = time.monotonic() - started
            result.deltas_processed = len(candidate.applied)
            result.version = candidate.version
            result.vector_count = candidate.manifest.vector_count
            result.fold = str(candidate.fold)
            result.segments = len(candidate.manifest.segments)
            result.merge_seconds = candidate.merge_seconds
            result.bytes_uploaded = candidate.manifest.uploaded_bytes
            checkpoint(self.settings, "after_publish")
        try:
            result.messages_acked = self.acknowledge(candidate, receipt_handles)
        except Exception as exc:  # published all the same: redelivery acks and archives later
            log.exception("acknowledging after publish failed")
            result.error = f"published; acknowledging failed (redelivery will finish it): {exc}"
        return result

    # -- write (version_writer) -------------------------------------------------------------

    def write_candidate(self, collection: str, delta_keys: Sequence[str], *, fence: int | None = None,
                        lock_owner: str | None = None, from_scratch: bool = False,
                        hnsw: HnswSettings | None = None, fold_all: bool = False,
                        base_version: str | None = None) -> Candidate:
        """Merge the pending deltas into a new version and upload it, unpublished
        (``VersionWriter.write_candidate``)."""
        return self.writer.write_candidate(collection, delta_keys, fence=fence, lock_owner=lock_owner,
                                           from_scratch=from_scratch, hnsw=hnsw, fold_all=fold_all,
                                           base_version=base_version)

    # -- publish ---------------------------------------------------------------------------------

    def publish_candidate(self, candidate: Candidate) -> PublishOutcome:
        """Conditional PUT of the pointer; on success the work dir becomes the warm cache."""
        if candidate.manifest is None:
            raise ValueError("nothing to publish")
        outcome = self.store.publish(candidate.manifest, candidate.pointer_etag, candidate.pointer_document)
        if outcome is PublishOutcome.PUBLISHED and candidate.merge_state is not None:
            # Only a published merge's state enters the cache: the next run need not replay it.
            remember_state(self.bucket, candidate.collection, candidate.manifest, candidate.merge_state)
        if outcome is PublishOutcome.PUBLISHED and candidate.local_dir is not None:
            if self.cache.keep_published(candidate.local_dir, candidate.manifest):
                candidate.local_dir = None
        if outcome is PublishOutcome.PUBLISHED:
            record_first_embedding(self.catalog, candidate.collection, candidate.manifest)
        self.discard(candidate)
        return outcome

    def discard(self, candidate: Candidate) -> None:
        if candidate.local_dir is not None:
            shutil.rmtree(candidate.local_dir, ignore_errors=True)
            candidate.local_dir = None

    # -- acknowledge -----------------------------------------------------------------------------

    def acknowledge(self, candidate: Candidate, receipt_handles: Mapping[str, str]) -> int:
        """After publish: delete messages, archive applied deltas, quarantine poison ones."""
        done = candidate.applied + candidate.already_applied
        queue = DeltaQueue(self.settings) if receipt_handles else None
        handles = [receipt_handles[r.key] for r in done if r.key in receipt_handles]
        acked = queue.ack(handles) if queue and handles else 0
        with progress.stage(f"{candidate.collection}: archive", len(done), "deltas") as bar:
            archive_deltas(self.s3, self.settings, done[:1], on_archived=bar.advance)
            if done:
                checkpoint(self.settings, "mid_archive")
            archive_deltas(self.s3, self.settings, done[1:], on_archived=bar.advance)
        self._quarantine_all(candidate.quarantined, receipt_handles, queue)
        return acked

    def _quarantine_all(self, reasons: Mapping[str, str], receipt_handles: Mapping[str, str],
                        queue: DeltaQueue | None) -> None:
        """Quarantine each delta; its message, if this run holds it, goes to the dead-letter queue."""
        for key, reason in reasons.items():
            self.quarantine(key, reason)
            if queue and receipt_handles.get(key):
                queue.dead_letter(receipt_handles[key], json.dumps({"delta_key": key}), reason)

    def quarantine(self, delta_key: str, reason: str) -> str | None:
        """Move a poison delta's objects to ``quarantine/`` beside a ``reason.json``."""
        return quarantine_delta(self.s3, self.settings, delta_key, reason)

    # -- intake (intake.py) ------------------------------------------------------------------------

    def validate_delta(self, ref: DeltaRef) -> LoadedDelta:
        """Download and check one delta against the published version; quarantine it if poison."""
        return self.intake.validate(ref)

    def list_pending_delta_keys(self, collection_name: str | None = None) -> list[str]:
        """Complete deltas (a packed object, or a format-1 manifest) under ``delta/``: what
        reconciliation finds."""
        return self.intake.pending_keys(collection_name)

    # -- queue-driven compaction -------------------------------------------------------------------

    def compact_pending(self, collection_name: str | None = None, *, max_messages: int = 1000,
                        reconcile: bool = True, wait_seconds: int = 0, also: Iterable[str] = (),
                        decide: Callable[[str, list[str]], bool] | None = None) -> list[CompactionResult]:
        """Compact every collection with pending deltas, or only ``collection_name``.

        Messages say which collections have new deltas; ``delta/<collection>/`` says which
        deltas are pending, and is listed for every collection compacted. ``reconcile``
        also lists all of ``delta/`` (collections whose messages were lost). Messages are
        deleted once their delta is durably known (see ``queue``): after publish for the
        deltas applied; at once for deltas still pending after a busy or failed run, and for
        collections this call does not compact — their next run lists them. ``wait_seconds``
        long-polls the queue for the first message (``watch``'s idle wait). ``also`` names
        collections to list even without messages; ``decide(collection, pending_keys)`` False
        defers one (``cadence.due``): its deltas stay pending, its messages are deleted.
        """
        queue = DeltaQueue(self.settings)
        messages, malformed = queue.receive(max_messages=max_messages, visibility_timeout=self.settings.lock_ttl_seconds,
                                            wait_seconds=wait_seconds, drain_wait_seconds=0)
        for bad in malformed:
            queue.dead_letter(bad.receipt_handle, bad.raw_body, bad.reason)
        handles: dict[str, dict[str, str]] = {}
        for message in messages:
            handles.setdefault(message.ref.collection, {})[message.ref.key] = message.receipt_handle
        listed: dict[str, set[str]] = {}
        if reconcile and collection_name is None:
            for key in self.intake.pending_keys():
                listed.setdefault(parse_delta_key(key).collection, set()).add(key)
        targets = [collection_name] if collection_name else sorted(set(handles) | set(listed) | set(also))
        results = []
        for collection in targets:
            if collection not in listed:
                listed[collection] = set(self.intake.pending_keys(collection))
            held = handles.get(collection, {})
            keys = sorted(listed[collection] | set(held))
            if decide is not None and keys and not decide(collection, keys):
                queue.ack(handle for key, handle in held.items() if key in listed[collection])
                continue
            try:
                result = self.compact_deltas(keys, collection, receipt_handles=held)
            except UnknownCollectionError as exc:
                results.append(self._refuse_unknown_collection(collection, {k: held.get(k, "") for k in keys},
                                                               queue, str(exc)))
                continue
            if result.status in (CompactionStatus.BUSY, CompactionStatus.FAILED):
                # Still pending under delta/, where this collection's next run lists them.
                queue.ack(handle for key, handle in held.items() if key in listed[collection])
            results.append(result)
        for collection, held in handles.items():
            if collection not in targets:  # another consumer's collection: pending in delta/ for it
                pending = set(self.intake.pending_keys(collection))
                queue.ack(handle for key, handle in held.items() if key in pending)
        return results

    def _refuse_unknown_collection(self, collection: str, handles: Mapping[str, str],
                                   queue: DeltaQueue, reason: str) -> CompactionResult:
        quarantined = {key: reason for key in handles}
        self._quarantine_all(quarantined, handles, queue)
        return CompactionResult(CompactionStatus.NOOP, collection, quarantined=quarantined)
