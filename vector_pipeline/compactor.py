"""Compaction: base version + pending deltas → a new immutable version → publish → ack.

Invariant: a delta's message is deleted, and the delta archived, only after the pointer
names a version that holds it; every failure before that leaves pointer, queue and
``delta/`` as they were, so the next run redoes the work. Re-applying an applied delta
is a no-op (the version's merge state lists applied delta ids), and for every id the
delta with the greatest ``delta_id`` wins — a late delta cannot overwrite a newer one;
inside one delta a delete wins over its own upsert.

The steps (``write_candidate`` → ``publish_candidate`` → ``acknowledge``) are public so
the Dagster layer can put its blocking check between write and publish; each runs under
the caller's ``CompactionLock``. The lock keeps compactors apart; the conditional PUT of
the pointer makes a compactor that outlived its lock harmless.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Mapping, Sequence

import chromadb

from . import manifest as mf
from . import progress
from .aws import sse_args
from .chroma_client import ChromaDBClient
from .config import HnswSettings, Settings
from .delta import (
    ARCHIVE_PREFIX, DELTA_PREFIX, QUARANTINE_PREFIX, DeltaRef, InvalidDeltaError, LoadedDelta,
    check_collection_name, delta_id_time, fetch_delta, parse_delta_key,
)
from .embeddings import EmbeddingMismatchError, check_same_embedding
from .faults import checkpoint
from .lock import CompactionLock, lock_id_for
from .queue import DeltaQueue
from .segments import (
    MASKS_FILE, SEGMENTS_DIR, FoldKind, FoldPlan, Segment, plan_fold, read_masks, segments_of, write_masks,
)
from .snapshot_store import (
    SNAPSHOT_FORMAT, STATE_FILE, UnsupportedFormatError, MergeState, PublishOutcome, SnapshotStore, is_local_copy_of,
    mark_local_copy, next_version,
)

log = logging.getLogger(__name__)

_FETCH_WORKERS = 6


class CompactionStatus(str, Enum):
    OK = "ok"
    BUSY = "busy"  # another compactor holds the lock: nothing was touched
    NOOP = "noop"  # every delta was already applied (or none was given)
    FAILED = "failed"  # nothing visible changed; messages stay for redelivery

    def __str__(self) -> str:
        return self.value


@dataclass
class CompactionResult:
    status: CompactionStatus
    collection: str
    deltas_processed: int = 0
    version: str | None = None
    previous_version: str | None = None
    vector_count: int | None = None
    already_applied: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)
    messages_acked: int = 0
    bytes_downloaded: int = 0
    bytes_uploaded: int = 0
    duration_seconds: float = 0.0
    fence: int | None = None
    fold: str | None = None  # append | fold_recent | fold_all (segments.py)
    segments: int | None = None
    merge_seconds: float = 0.0
    publish_seconds: float | None = None  # from the call until readers could see the version
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in (CompactionStatus.OK, CompactionStatus.NOOP)

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Enum) else v) for k, v in self.__dict__.items()}


@dataclass
class Candidate:
    """A written, not yet published version (or the reason there is nothing to publish)."""

    collection: str
    base_version: str | None
    pointer_etag: str | None
    manifest: dict[str, Any] | None
    local_dir: Path | None
    applied: list[DeltaRef] = field(default_factory=list)
    already_applied: list[DeltaRef] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)
    base_vector_count: int = 0
    expected_vector_count: int = 0
    bytes_downloaded: int = 0
    fold: FoldKind | None = None  # how the merge placed the deltas among the segments
    merge_seconds: float = 0.0  # net effect + the segment written (not transfers)

    @property
    def version(self) -> str | None:
        return None if self.manifest is None else str(self.manifest["version"])


class ChromaCompactor:
    """Merges deltas into new snapshot versions of one bucket, under the DynamoDB lock."""

    def __init__(self, bucket_name: str | None = None, table_name: str | None = None, *,
                 settings: Settings | None = None) -> None:
        self.settings = (settings or Settings.from_env()).with_overrides(
            vectors_bucket=bucket_name, dynamodb_table_name=table_name)
        self.bucket = self.settings.vectors_bucket
        self.store = SnapshotStore(self.settings)
        self.s3 = self.store.s3
        self.cache_root = Path(self.settings.cache_dir) / "compactor" / self.bucket
        # Past this age a delta without manifest is poison, not an upload in progress.
        self.missing_manifest_grace_seconds = 4 * self.settings.lock_ttl_seconds

    # -- the whole protocol ----------------------------------------------------------------

    def compact_deltas(self, delta_keys: Sequence[str], collection_name: str = "words", *,
                       receipt_handles: Mapping[str, str] | None = None) -> CompactionResult:
        """Apply ``delta_keys`` (any order) to ``collection_name`` and publish a version.

        ``receipt_handles`` maps delta keys to SQS receipt handles, deleted after publish.
        """
        check_collection_name(collection_name)
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
            result.vector_count = int(candidate.manifest["vector_count"])
            result.fold = str(candidate.fold)
            result.segments = len(candidate.manifest["segments"])
            result.merge_seconds = candidate.merge_seconds
            result.bytes_uploaded = int(candidate.manifest.get("uploaded_bytes", 0))
            checkpoint(self.settings, "after_publish")
        try:
            result.messages_acked = self.acknowledge(candidate, receipt_handles)
        except Exception as exc:  # published all the same: redelivery acks and archives later
            log.exception("acknowledging after publish failed")
            result.error = f"published; acknowledging failed (redelivery will finish it): {exc}"
        return result

    # -- write ---------------------------------------------------------------------------------

    def write_candidate(self, collection: str, delta_keys: Sequence[str], *, fence: int | None = None,
                        lock_owner: str | None = None, from_scratch: bool = False,
                        hnsw: HnswSettings | None = None, fold_all: bool = False) -> Candidate:
        """Merge the pending deltas into a new version and upload it, unpublished.

        ``from_scratch`` merges onto an empty collection instead of the published version
        (a rebuild); the version still follows the pointer's number and ETag. ``fold_all``
        folds every segment back into the base even without deltas (the background merge).
        """
        pointer = self.store.read_pointer(collection)
        pointer_manifest = None if pointer is None else self._pointer_manifest(collection, pointer.version,
                                                                              from_scratch)
        base_manifest = None if from_scratch else pointer_manifest
        candidate = Candidate(collection, None if pointer is None else pointer.version,
                              None if pointer is None else pointer.etag, None, None)
        self._drop_stale_workdirs(collection)
        workdir = self.cache_root / collection / f".work-{uuid.uuid4().hex[:12]}"
        try:
            state = self._prepare_workdir(candidate, base_manifest, workdir)
            scratch = Path(tempfile.mkdtemp(prefix="vp-fetch-", dir=self.settings.scratch_dir))
            try:  # deltas are read once and dropped: memory-backed scratch when there is one
                deltas = self._load_pending(candidate, delta_keys, state, base_manifest, scratch)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            fold_all = fold_all and _has_recent_or_masked(base_manifest)
            if not deltas and not fold_all:
                self._return_to_cache(workdir, base_manifest)
                return candidate
            if hnsw is None:
                hnsw = HnswSettings.from_dict(base_manifest["hnsw"]) if base_manifest else self.settings.hnsw
            version = next_version(candidate.base_version)
            with progress.stage(f"{collection}: merge", len(deltas), "deltas") as bar:
                segments = self._merge(candidate, deltas, state, workdir, hnsw, base_manifest, version, fold_all)
                bar.advance(len(deltas))
            manifest = self._manifest(candidate, version, deltas, segments, hnsw, base_manifest, fence, lock_owner)
            manifest["rebuilt_from_scratch"] = from_scratch
            base_names = {b.name for b in segments_of(base_manifest)}
            untouched = [s.path for s in segments if s.name in base_names]
            candidate.manifest = self.store.upload_version(workdir, manifest, pointer_manifest, untouched)
            candidate.local_dir = workdir
            return candidate
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise

    def _pointer_manifest(self, collection: str, version: str, from_scratch: bool) -> dict[str, Any] | None:
        try:
            return self.store.read_manifest(collection, version)
        except UnsupportedFormatError:
            if not from_scratch:
                raise
            # A rebuild is the way off an older format: it needs nothing of that version.
            log.warning("rebuilding %s over %s, a version of an older snapshot format", collection, version)
            return None

    def _return_to_cache(self, workdir: Path, base_manifest: dict[str, Any] | None) -> None:
        """Nothing was merged: the work dir still holds the base version's exact bytes."""
        if base_manifest is None or not is_local_copy_of(workdir, base_manifest):
            shutil.rmtree(workdir, ignore_errors=True)
            return
        workdir.rename(self.cache_root / str(base_manifest["collection"]) / str(base_manifest["version"]))

    def _prepare_workdir(self, candidate: Candidate, base_manifest: dict[str, Any] | None,
                         workdir: Path) -> MergeState:
        """The base version, copied into a private work dir (from cache or S3)."""
        workdir.parent.mkdir(parents=True, exist_ok=True)
        if base_manifest is None:
            workdir.mkdir(parents=True)
            return MergeState()
        cached = self.cache_root / candidate.collection / str(base_manifest["version"])
        if not is_local_copy_of(cached, base_manifest):
            self._drop_other_cached_versions(candidate.collection, keep=None)
            self.store.download_version(base_manifest, self.cache_root)
            candidate.bytes_downloaded = int(base_manifest.get("total_bytes", 0))
        # The cache holds exactly the published bytes; the merge writes into a move of it.
        # If this run fails, the next one downloads again: correctness over a warm cache.
        cached.rename(workdir)
        candidate.base_vector_count = int(base_manifest["vector_count"])
        return self.store.read_state(workdir)

    def _load_pending(self, candidate: Candidate, delta_keys: Sequence[str], state: MergeState,
                      base_manifest: dict[str, Any] | None, scratch: Path) -> list[LoadedDelta]:
        refs = self._sorted_refs(candidate, delta_keys)
        loaded: list[LoadedDelta] = []
        expected = collection_embedding(base_manifest)
        candidate.already_applied = [r for r in refs if r.delta_id in state.applied_delta_ids]
        pending = [r for r in refs if r.delta_id not in state.applied_delta_ids]
        # Small deltas are latency-bound: fetch several at once, then check them in id order.
        with progress.stage(f"{candidate.collection}: fetch deltas", len(pending), "deltas") as bar, \
                ThreadPoolExecutor(max_workers=_FETCH_WORKERS) as pool:
            fetched = list(bar.track(pool.map(lambda r: self._load_one(candidate, r, scratch / r.delta_id), pending)))
        for ref, delta in zip(pending, fetched):
            if delta is None:
                continue
            try:
                if expected is None and delta.ids:
                    expected = (delta.embedding_provider, delta.dimension)
                elif expected is not None and delta.ids:
                    check_same_embedding(ref.key, delta.embedding_provider, delta.dimension, *expected)
            except EmbeddingMismatchError as exc:
                candidate.quarantined[ref.key] = str(exc)
                continue
            loaded.append(delta)
        return loaded

    def _sorted_refs(self, candidate: Candidate, delta_keys: Sequence[str]) -> list[DeltaRef]:
        refs: dict[str, DeltaRef] = {}
        for key in delta_keys:
            try:
                ref = parse_delta_key(key, prefixes=(DELTA_PREFIX, ARCHIVE_PREFIX))
            except InvalidDeltaError as exc:
                candidate.quarantined[str(key)] = exc.reason
                continue
            if ref.collection != candidate.collection:
                candidate.quarantined[str(key)] = f"delta of collection {ref.collection!r}, not {candidate.collection!r}"
                continue
            refs[ref.delta_id] = ref
        return [refs[delta_id] for delta_id in sorted(refs)]

    def _load_one(self, candidate: Candidate, ref: DeltaRef, scratch: Path) -> LoadedDelta | None:
        try:
            delta = fetch_delta(self.s3, self.bucket, ref, scratch)
        except InvalidDeltaError as exc:
            candidate.quarantined[ref.key] = exc.reason
            return None
        except FileNotFoundError:
            age = time.time() - delta_id_time(ref.delta_id).timestamp()
            if age > self.missing_manifest_grace_seconds:
                # A producer that died mid-upload, or a message for a delta that never existed.
                candidate.quarantined[ref.key] = f"no manifest {age:.0f}s after the delta was created"
            else:
                log.warning("delta %s has no manifest yet (%.0fs old): left for later", ref.key, age)
                candidate.missing.append(ref.key)
            return None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)  # its records are in memory now
        candidate.bytes_downloaded += int(delta.manifest.get("total_bytes", 0))
        checkpoint(self.settings, "mid_download")
        return delta

    def _merge(self, candidate: Candidate, deltas: list[LoadedDelta], state: MergeState, workdir: Path,
               hnsw: HnswSettings, base_manifest: dict[str, Any] | None, version: str,
               fold_all: bool = False) -> list[Segment]:
        """Apply the net effect of ``deltas`` in one pass, writing one segment; returns the
        new version's segments."""
        started = time.monotonic()
        upserts, deletes = _net_effect(deltas, state)
        candidate.expected_vector_count = (candidate.base_vector_count
                                           + sum(1 for i in upserts if i not in state.location)
                                           - sum(1 for i in deletes if i in state.location))
        segments = segments_of(base_manifest)
        plan = plan_fold(segments, len(upserts), self.settings, fold_all=fold_all)
        masks = read_masks(workdir)
        if plan.kind is FoldKind.APPEND and segments and not upserts:
            new_segment = None  # deletes only: masks change, no segment is written
        else:
            new_segment = self._write_segment(candidate.collection, workdir, plan, masks, state, upserts, deletes,
                                              hnsw, name=version.split("-", 1)[0])
        kept = {s.name: set(masks.get(s.name, ())) for s in plan.keep}
        for record_id in [*upserts, *deletes]:  # the older copy, where it stays, is masked
            if state.location.get(record_id) in kept:
                kept[state.location[record_id]].add(record_id)
        self._relocate(state, plan, new_segment, upserts, deletes)
        write_masks(workdir, kept)
        result = [Segment(s.name, s.stored, len(kept[s.name])) for s in plan.keep]
        result += [new_segment] if new_segment else []
        count = sum(s.live for s in result)
        candidate.merge_seconds = time.monotonic() - started
        log.info("merged %d deltas (%s): %d upserts, %d deletes in %.2fs (%d → %d vectors, %d segments)",
                 len(deltas), plan.kind, len(upserts), len(deletes), candidate.merge_seconds,
                 candidate.base_vector_count, count, len(result))
        if count != candidate.expected_vector_count:
            raise RuntimeError(f"merge produced {count} vectors, expected {candidate.expected_vector_count}")
        state.applied_delta_ids.update(d.ref.delta_id for d in deltas)
        (workdir / STATE_FILE).write_bytes(state.to_bytes())
        candidate.applied = [d.ref for d in deltas]
        candidate.fold = plan.kind
        return result

    def _write_segment(self, collection: str, workdir: Path, plan: FoldPlan, masks: Mapping[str, set[str]],
                       state: MergeState, upserts: dict[str, tuple[LoadedDelta, int]], deletes: set[str],
                       hnsw: HnswSettings, name: str) -> Segment:
        """The one segment this run writes: a move of ``plan.copy_from`` (or empty), plus the
        live records of ``plan.read_from``, plus the deltas' upserts, minus what is gone."""
        target = workdir / SEGMENTS_DIR / name
        target.parent.mkdir(parents=True, exist_ok=True)
        doomed: set[str] = set()
        if plan.copy_from is not None:
            (workdir / plan.copy_from.path).rename(target)
            doomed = (set(masks.get(plan.copy_from.name, ()))
                      | {i for i in deletes if state.location.get(i) == plan.copy_from.name}) - set(upserts)
        with ChromaDBClient(target, mode="snapshot", settings=self.settings, hnsw=hnsw) as db:
            if doomed:
                db.delete_vectors(collection, sorted(doomed))
            for source in plan.read_from:
                self._carry_live_records(db, collection, workdir / source.path,
                                         [i for i, where in state.location.items() if where == source.name
                                          and i not in upserts and i not in deletes])
                shutil.rmtree(workdir / source.path)
            self._apply_upserts(db, collection, upserts)
            checkpoint(self.settings, "mid_merge")
            return Segment(name, db.count(collection))

    def _carry_live_records(self, db: ChromaDBClient, collection: str, source_dir: Path, ids: list[str]) -> None:
        if not ids:
            return
        with ChromaDBClient(source_dir, mode="read", settings=self.settings) as source:
            records = source.get_vectors(collection, ids=ids, include=["embeddings", "documents", "metadatas"])
        if len(records["ids"]) != len(ids):
            raise RuntimeError(f"segment {source_dir.name} holds {len(records['ids'])} of its {len(ids)} live ids")
        db.upsert_vectors(collection, records["ids"], records["embeddings"],
                          documents=records["documents"], metadatas=records["metadatas"])

    @staticmethod
    def _relocate(state: MergeState, plan: FoldPlan, new_segment: Segment | None,
                  upserts: Mapping[str, Any], deletes: set[str]) -> None:
        for record_id in deletes:
            state.location.pop(record_id, None)
        if new_segment is None:
            return
        folded = plan.folded
        if folded:  # an append folds nothing: no need to walk every live id
            for record_id, where in state.location.items():
                if where in folded:
                    state.location[record_id] = new_segment.name
        for record_id in upserts:
            state.location[record_id] = new_segment.name
        held = sum(1 for where in state.location.values() if where == new_segment.name)
        if held != new_segment.stored:  # the segment must hold exactly the ids located in it
            raise RuntimeError(f"segment {new_segment.name} holds {new_segment.stored} records, "
                               f"the merge state places {held} there")

    def _apply_upserts(self, db: ChromaDBClient, collection: str,
                       upserts: dict[str, tuple[LoadedDelta, int]]) -> None:
        if not upserts:
            db.ensure_collection(collection)  # a version always holds its collection
            return
        ids = list(upserts)
        picks = [upserts[i] for i in ids]
        db.upsert_vectors(
            collection, ids,
            [d.embeddings[p] for d, p in picks],
            documents=[d.documents[p] for d, p in picks],
            metadatas=[d.metadatas[p] for d, p in picks],
        )

    def _manifest(self, candidate: Candidate, version: str, deltas: list[LoadedDelta], segments: list[Segment],
                  hnsw: HnswSettings, base: dict[str, Any] | None, fence: int | None,
                  lock_owner: str | None) -> dict[str, Any]:
        first = next((d for d in deltas if d.ids), None)
        embedding = collection_embedding(base) or (
            (first.embedding_provider, first.dimension) if first else ("", 0))
        return {
            "format": SNAPSHOT_FORMAT,
            "collection": candidate.collection,
            "version": version,
            "parent_version": candidate.base_version,
            "created_at": datetime.now(timezone.utc).isoformat(),
            "vector_count": sum(s.live for s in segments),
            "parent_vector_count": candidate.base_vector_count,
            "applied_delta_ids": [d.ref.delta_id for d in deltas],
            "delta_upserts": sum(len(d.ids) for d in deltas),
            "delta_deletes": sum(len(d.delete_ids) for d in deltas),
            "chromadb_version": chromadb.__version__,
            "hnsw": hnsw.as_dict(),
            "embedding_provider": embedding[0],
            "dimension": embedding[1],
            "fence": fence,
            "lock_owner": lock_owner,
            "segments": [s.as_dict() for s in segments],
            "fold": str(candidate.fold),
            "state_file": STATE_FILE,
            "masks_file": MASKS_FILE,
        }

    # -- publish ---------------------------------------------------------------------------------

    def publish_candidate(self, candidate: Candidate) -> PublishOutcome:
        """Conditional PUT of the pointer; on success the work dir becomes the warm cache."""
        if candidate.manifest is None:
            raise ValueError("nothing to publish")
        outcome = self.store.publish(candidate.manifest, candidate.pointer_etag)
        if outcome is PublishOutcome.PUBLISHED and candidate.local_dir is not None:
            try:  # only a warm cache for the next run: a failure here must not undo the publish
                self._drop_other_cached_versions(candidate.collection, keep=None)
                mark_local_copy(candidate.local_dir, candidate.manifest)
                candidate.local_dir.rename(self.cache_root / candidate.collection / str(candidate.version))
                candidate.local_dir = None
            except OSError:
                log.warning("could not keep %s as the warm cache", candidate.version, exc_info=True)
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
            if done:
                self.move_delta(done[0].key, done[0].archive_key)
                bar.advance()
                checkpoint(self.settings, "mid_archive")
            with ThreadPoolExecutor(max_workers=_FETCH_WORKERS) as pool:
                list(bar.track(pool.map(lambda ref: self.move_delta(ref.key, ref.archive_key), done[1:])))
        self._quarantine_all(candidate.quarantined, receipt_handles, queue)
        return acked

    def _quarantine_all(self, reasons: Mapping[str, str], receipt_handles: Mapping[str, str],
                        queue: DeltaQueue | None) -> None:
        """Quarantine each delta; its message, if this run holds it, goes to the dead-letter queue."""
        for key, reason in reasons.items():
            self.quarantine(key, reason)
            if queue and receipt_handles.get(key):
                queue.dead_letter(receipt_handles[key], _message_body(key), reason)

    def quarantine(self, delta_key: str, reason: str) -> str | None:
        """Move a poison delta's objects to ``quarantine/`` beside a ``reason.json``."""
        try:
            ref = parse_delta_key(delta_key)
        except InvalidDeltaError:
            log.warning("not quarantined (key outside delta/): %r: %s", delta_key, reason)
            return None
        target = f"{QUARANTINE_PREFIX}{ref.collection}/{ref.delta_id}/"
        self.s3.put_object(Bucket=self.bucket, Key=target + "reason.json", ContentType="application/json",
                           Body=mf.dumps({"delta_key": ref.key, "reason": reason,
                                          "quarantined_at": datetime.now(timezone.utc).isoformat()}),
                           **sse_args(self.settings))
        self.move_delta(ref.key, target + "delta/")
        log.warning("quarantined %s: %s", ref.key, reason)
        return target

    def move_delta(self, source_prefix: str, target_prefix: str) -> int:
        """Copy every object, then delete the sources; idempotent, safe to re-run after a crash."""
        keys = [o["Key"] for page in self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=source_prefix) for o in page.get("Contents", [])]
        # The manifest goes last, as when the delta was written, and is deleted first.
        keys.sort(key=lambda k: k.endswith(mf.MANIFEST_NAME))
        for key in keys:
            self.s3.copy_object(Bucket=self.bucket, Key=target_prefix + key[len(source_prefix):],
                                CopySource={"Bucket": self.bucket, "Key": key}, **sse_args(self.settings))
        for start in range(0, len(keys), 1000):
            batch = sorted(keys[start:start + 1000], key=lambda k: not k.endswith(mf.MANIFEST_NAME))
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch]})
        return len(keys)

    # -- validation of one delta (the Dagster ``delta`` asset) ------------------------------------

    def validate_delta(self, ref: DeltaRef) -> LoadedDelta:
        """Download and check one delta against the published version; quarantine it if poison.

        Raises ``InvalidDeltaError`` (after quarantining) or ``FileNotFoundError``.
        """
        pointer = self.store.read_pointer(ref.collection)
        scratch = Path(tempfile.mkdtemp(prefix="vp-validate-"))
        try:
            delta = fetch_delta(self.s3, self.bucket, ref, scratch)
            expected = collection_embedding(
                None if pointer is None else self.store.read_manifest(ref.collection, pointer.version))
            if expected is not None and delta.ids:
                check_same_embedding(ref.key, delta.embedding_provider, delta.dimension, *expected)
            return delta
        except EmbeddingMismatchError as exc:
            self.quarantine(ref.key, str(exc))
            raise InvalidDeltaError(str(exc), ref.key) from None
        except InvalidDeltaError as exc:
            if not exc.reason.startswith("quarantined earlier"):
                self.quarantine(ref.key, exc.reason)
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    # -- queue-driven compaction -------------------------------------------------------------------

    def compact_pending(self, collection_name: str | None = None, *, max_messages: int = 1000,
                        reconcile: bool = True) -> list[CompactionResult]:
        """Drain the queue (and, with ``reconcile``, list ``delta/``) and compact each collection."""
        queue = DeltaQueue(self.settings)
        messages, malformed = queue.receive(max_messages=max_messages, visibility_timeout=self.settings.lock_ttl_seconds)
        for bad in malformed:
            queue.dead_letter(bad.receipt_handle, bad.raw_body, bad.reason)
        by_collection: dict[str, dict[str, str]] = {}
        others = []
        for message in messages:
            if collection_name and message.ref.collection != collection_name:
                others.append(message.receipt_handle)
                continue
            by_collection.setdefault(message.ref.collection, {})[message.ref.key] = message.receipt_handle
        queue.release(others)
        if reconcile:
            for key in self.list_pending_delta_keys(collection_name):
                by_collection.setdefault(parse_delta_key(key).collection, {}).setdefault(key, "")
        results = []
        for collection, handles in sorted(by_collection.items()):
            if collection not in self.settings.collections:
                results.append(self._refuse_unknown_collection(collection, handles, queue))
                continue
            result = self.compact_deltas(list(handles), collection,
                                         receipt_handles={k: h for k, h in handles.items() if h})
            if result.status in (CompactionStatus.BUSY, CompactionStatus.FAILED):
                queue.release(h for h in handles.values() if h)
            results.append(result)
        return results

    def _refuse_unknown_collection(self, collection: str, handles: Mapping[str, str],
                                   queue: DeltaQueue) -> CompactionResult:
        reason = f"collection {collection!r} is not configured (VECTOR_COLLECTIONS={','.join(self.settings.collections)})"
        quarantined = {key: reason for key in handles}
        self._quarantine_all(quarantined, handles, queue)
        return CompactionResult(CompactionStatus.NOOP, collection, quarantined=quarantined)

    def list_pending_delta_keys(self, collection_name: str | None = None) -> list[str]:
        """Complete deltas (manifest present) under ``delta/``: what reconciliation finds."""
        prefix = DELTA_PREFIX + (f"{collection_name}/" if collection_name else "")
        keys = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                if obj["Key"].endswith("/" + mf.MANIFEST_NAME):
                    try:
                        keys.append(parse_delta_key(obj["Key"]).key)
                    except InvalidDeltaError as exc:
                        log.warning("ignoring %s: %s", obj["Key"], exc.reason)
        return sorted(set(keys))

    def _drop_stale_workdirs(self, collection: str) -> None:
        """Work dirs of runs that died or whose audit failed, older than a lock's lifetime."""
        root = self.cache_root / collection
        if root.is_dir():
            horizon = time.time() - self.settings.lock_ttl_seconds
            for child in root.glob(".work-*"):
                if child.stat().st_mtime < horizon:
                    shutil.rmtree(child, ignore_errors=True)

    def _drop_other_cached_versions(self, collection: str, keep: str | None) -> None:
        root = self.cache_root / collection
        if not root.is_dir():
            return
        for child in root.iterdir():
            if child.name != keep and not child.name.startswith(".work-"):
                shutil.rmtree(child, ignore_errors=True)


def collection_embedding(manifest: dict[str, Any] | None) -> tuple[str, int] | None:
    """(provider, dimension) a version fixes for its collection; None while it holds no
    vector yet (never published, or only tombstones), so the first upserting delta decides."""
    if manifest is None or not int(manifest.get("dimension", 0)):
        return None
    return str(manifest["embedding_provider"]), int(manifest["dimension"])


def _message_body(delta_key: str) -> str:
    return json.dumps({"delta_key": delta_key})


def _net_effect(deltas: list[LoadedDelta], state: MergeState) -> tuple[dict[str, tuple[LoadedDelta, int]], set[str]]:
    """Upserts (id → the delta and row that wins) and deletes of ``deltas`` (ascending
    ``delta_id``) that beat what ``state`` holds; the winners are recorded in ``state``."""
    upserts: dict[str, tuple[LoadedDelta, int]] = {}
    deletes: set[str] = set()
    for delta in deltas:  # later deltas overwrite earlier ones
        dropped = set(delta.delete_ids)
        for position, record_id in enumerate(delta.ids):
            if record_id in dropped or state.winner(record_id) > delta.ref.delta_id:
                continue
            upserts[record_id] = (delta, position)
            deletes.discard(record_id)
            state.upsert_winner[record_id] = delta.ref.delta_id
            state.delete_winner.pop(record_id, None)
        for record_id in delta.delete_ids:
            if state.winner(record_id) > delta.ref.delta_id:
                continue
            upserts.pop(record_id, None)
            deletes.add(record_id)
            state.delete_winner[record_id] = delta.ref.delta_id
            state.upsert_winner.pop(record_id, None)
    return upserts, deletes


def _has_recent_or_masked(manifest: dict[str, Any] | None) -> bool:
    segments = segments_of(manifest)
    return len(segments) > 1 or any(s.masked for s in segments)
