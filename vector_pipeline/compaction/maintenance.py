"""Rebuild from archive (optionally as of a time), fold segments, rollback (to a version or
to the one current at a time). Garbage collection and expiry live in ``retention``.

Each runs under the collection's ``CompactionLock`` and changes what readers see only by the
same conditional PUT of the pointer as a compaction. A rebuild holds exactly the deltas it
names: all archived ones (up to a delta id or a time) when the archive is whole; over an
expired archive, the oldest kept version that holds only deltas in range, plus the
archived deltas after it — and a clear error when no kept version is old enough.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .base_fold import fold_base, fold_tiers
from ..compaction.compactor import ChromaCompactor
from ..compaction.result import CompactionResult, CompactionStatus
from ..config import HnswSettings, Settings
from ..format.keys import ARCHIVE_PREFIX, delta_id_time, new_delta_id
from ..delta.reader import list_deltas
from ..io.lock import CompactionLock, lock_id_for
from .retention import GcReport, Timeline, applied_delta_ids, archive_expired, collect_garbage
from ..table.snapshot_store import PublishOutcome, SnapshotNotFoundError, SnapshotStore
from .warm_cache import WarmCache

__all__ = ["GcReport", "RebuildPlan", "archived_delta_keys", "collect_garbage", "fold_segments",
           "latest_delta_id_at", "plan_rebuild", "rebuild_from_archive", "rollback"]

log = logging.getLogger(__name__)

_CROCKFORD_MAX = "Z"


def latest_delta_id_at(at: datetime) -> str:
    """The greatest delta id a delta produced at or before ``at`` can have."""
    return new_delta_id(int(at.timestamp() * 1000))[:10] + _CROCKFORD_MAX * 16


def archived_delta_keys(settings: Settings, collection: str, until_delta_id: str | None = None) -> list[str]:
    """Complete deltas under ``archive/<collection>/``, oldest first, optionally up to an id."""
    store = SnapshotStore(settings)
    return [ref.archive_key for ref in list_deltas(store.s3, store.bucket, f"{ARCHIVE_PREFIX}{collection}/")
            if until_delta_id is None or ref.delta_id <= until_delta_id]


@dataclass
class RebuildPlan:
    """The archived deltas a rebuild applies, and how (``write_candidate``'s options)."""

    keys: list[str]
    write_options: dict[str, Any]


def plan_rebuild(settings: Settings, collection: str, *, until_delta_id: str | None = None,
                 as_of: datetime | None = None, hnsw: HnswSettings | None = None) -> RebuildPlan:
    """From scratch over the whole archive; over an expired one, from the oldest kept
    version that holds only deltas in range (``RuntimeError`` naming the earliest restorable
    point when there is none)."""
    if as_of is not None:
        until_delta_id = min(filter(None, [until_delta_id, latest_delta_id_at(as_of)]))
    keys = archived_delta_keys(settings, collection, until_delta_id)
    store = SnapshotStore(settings)
    expired = archive_expired(store, collection)
    if expired is None:
        return RebuildPlan(keys, {"from_scratch": True, "hnsw": hnsw})
    base = _restorable_base(store, collection, until_delta_id, expired)
    if hnsw is not None and HnswSettings.from_dict(store.read_manifest(collection, base).hnsw) != hnsw:
        raise ValueError(f"the archive of {collection} expired through {expired['through_delta_id']}: a rebuild "
                         f"starts from version {base} and keeps its HNSW settings; new ones need the whole archive")
    return RebuildPlan(keys, {"base_version": base, "fold_all": True})


def rebuild_from_archive(settings: Settings, collection: str, *, until_delta_id: str | None = None,
                         as_of: datetime | None = None, hnsw: HnswSettings | None = None) -> CompactionResult:
    """A new version holding exactly the deltas up to ``until_delta_id`` / ``as_of`` (all by
    default), published."""
    plan = plan_rebuild(settings, collection, until_delta_id=until_delta_id, as_of=as_of, hnsw=hnsw)
    return _write_and_publish(settings, collection, plan.keys, **plan.write_options)


def _restorable_base(store: SnapshotStore, collection: str, until_delta_id: str | None,
                     expired: dict[str, Any]) -> str:
    """The oldest kept published version that holds every expired delta and none past the
    rebuild's end: the rebuild re-applies as much of the archive as is left."""
    pointer = store.read_pointer(collection)
    timeline = Timeline.of(None if pointer is None else pointer.document)
    kept = [v for v in store.list_versions(collection) if v in timeline.published]
    for version in sorted(kept):
        try:
            applied = applied_delta_ids(store, collection, version)
        except SnapshotNotFoundError:
            continue
        if expired["through_delta_id"] in applied and (until_delta_id is None or max(applied) <= until_delta_id):
            return version
    oldest = sorted(kept)[0] if kept else None
    earliest = "no kept version holds the expired deltas" if oldest is None else \
        f"the earliest restorable point is {delta_id_time(max(applied_delta_ids(store, collection, oldest))).isoformat()}"
    raise RuntimeError(f"the archive of {collection} expired through delta {expired['through_delta_id']} "
                       f"({delta_id_time(expired['through_delta_id']).isoformat()}); {earliest}")


def fold_segments(settings: Settings, collection: str) -> CompactionResult:
    """The base fold: a new base segment holding what the published version's segments hold,
    written off the lock and rebased onto whatever was appended meanwhile (``base_fold``);
    noop when the version has a single unmasked segment."""
    return fold_base(settings, collection).result


def merge_tiers(settings: Settings, collection: str) -> CompactionResult:
    """The background tier merge: the recent tiers that reached the fan-in, merged into one
    segment off the lock and rebased (``base_fold.fold_tiers``); noop when none did."""
    return fold_tiers(settings, collection).result


def _write_and_publish(settings: Settings, collection: str, keys: list[str], **write_options: Any) -> CompactionResult:
    compactor = ChromaCompactor(settings=settings)
    started = time.monotonic()
    with CompactionLock(lock_id_for(collection), settings=settings) as lock:
        candidate = compactor.write_candidate(collection, keys, fence=lock.fence, lock_owner=lock.owner,
                                              **write_options)
        if candidate.manifest is None:
            return CompactionResult(CompactionStatus.NOOP, collection, version=candidate.base_version)
        outcome = compactor.publish_candidate(candidate)
    status = CompactionStatus.OK if outcome is PublishOutcome.PUBLISHED else CompactionStatus.FAILED
    return CompactionResult(status, collection, deltas_processed=len(candidate.applied), version=candidate.version,
                            previous_version=candidate.base_version,
                            vector_count=candidate.manifest.vector_count, fence=lock.fence,
                            bytes_downloaded=candidate.bytes_downloaded,
                            bytes_uploaded=candidate.manifest.uploaded_bytes,
                            duration_seconds=time.monotonic() - started, fold=str(candidate.fold),
                            segments=len(candidate.manifest.segments),
                            merge_seconds=candidate.merge_seconds,
                            error=None if status is CompactionStatus.OK else "conflict: the pointer moved")


def rollback(settings: Settings, collection: str, version: str | None = None, *,
             as_of: datetime | None = None) -> PublishOutcome:
    """Point readers back at an existing ``version``, or at the one current at ``as_of``.

    Deltas applied after it stay in ``archive/``; a rebuild re-applies them if wanted.
    """
    store = SnapshotStore(settings)
    with CompactionLock(lock_id_for(collection), settings=settings):
        pointer = store.read_pointer(collection)
        if as_of is not None:
            version = Timeline.of(None if pointer is None else pointer.document).version_current_at(as_of)
            if version is None:
                raise ValueError(f"no version of {collection} was current at {as_of.isoformat()} "
                                 "(before its first publish, or before the pointer's history)")
        if version is None:
            raise ValueError("rollback needs a version or a time (as_of)")
        manifest = store.read_manifest(collection, version)
        store.require_files(manifest)  # refuse a version GC already took apart
        outcome = store.publish(manifest, None if pointer is None else pointer.etag,
                                None if pointer is None else pointer.document)
    if outcome is PublishOutcome.PUBLISHED:
        # The compactor's warm copy is of the version rolled back from.
        WarmCache(settings, store).forget(collection)
    return outcome
