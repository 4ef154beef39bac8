"""Rebuild from archive, rollback, and garbage collection of versions.

Each runs under the collection's ``CompactionLock`` and changes what readers see only by the
same conditional PUT of the pointer as a compaction. GC never deletes the version the
pointer names, nor an object a retained version's manifest references, nor anything
younger than the grace period (a reader may still be downloading it).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from . import manifest as mf
from .compactor import ChromaCompactor, CompactionResult, CompactionStatus
from .config import HnswSettings, Settings
from .delta_keys import ARCHIVE_PREFIX, parse_delta_key
from .lock import CompactionLock, lock_id_for
from .snapshot_store import PublishOutcome, SnapshotNotFoundError, SnapshotStore, version_prefix
from .warm_cache import WarmCache

log = logging.getLogger(__name__)

DEFAULT_RETAIN_VERSIONS = 5
DEFAULT_GRACE = timedelta(hours=1)


def archived_delta_keys(settings: Settings, collection: str, until_delta_id: str | None = None) -> list[str]:
    """Complete deltas under ``archive/<collection>/``, oldest first, optionally up to an id."""
    store = SnapshotStore(settings)
    keys = set()
    for page in store.s3.get_paginator("list_objects_v2").paginate(
            Bucket=store.bucket, Prefix=f"{ARCHIVE_PREFIX}{collection}/"):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("/" + mf.MANIFEST_NAME):
                ref = parse_delta_key(obj["Key"], prefixes=(ARCHIVE_PREFIX,))
                if until_delta_id is None or ref.delta_id <= until_delta_id:
                    keys.add(ref.archive_key)
    return sorted(keys)


def rebuild_from_archive(settings: Settings, collection: str, *, until_delta_id: str | None = None,
                         hnsw: HnswSettings | None = None) -> CompactionResult:
    """A new version holding exactly the archived deltas (up to ``until_delta_id``), published."""
    keys = archived_delta_keys(settings, collection, until_delta_id)
    return _write_and_publish(settings, collection, keys, from_scratch=True, hnsw=hnsw)


def fold_segments(settings: Settings, collection: str) -> CompactionResult:
    """The background merge: a new version whose one segment holds what the published
    version's base and recent segments hold (noop when it has a single unmasked segment)."""
    return _write_and_publish(settings, collection, [], fold_all=True)


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
                            vector_count=int(candidate.manifest["vector_count"]), fence=lock.fence,
                            bytes_downloaded=candidate.bytes_downloaded,
                            bytes_uploaded=int(candidate.manifest.get("uploaded_bytes", 0)),
                            duration_seconds=time.monotonic() - started, fold=str(candidate.fold),
                            segments=len(candidate.manifest["segments"]),
                            merge_seconds=candidate.merge_seconds,
                            error=None if status is CompactionStatus.OK else "conflict: the pointer moved")


def rollback(settings: Settings, collection: str, version: str) -> PublishOutcome:
    """Point readers back at an existing ``version``.

    Deltas applied after it stay in ``archive/``; a rebuild re-applies them if wanted.
    """
    store = SnapshotStore(settings)
    with CompactionLock(lock_id_for(collection), settings=settings):
        pointer = store.read_pointer(collection)
        manifest = store.read_manifest(collection, version)
        for entry in manifest["files"]:  # refuse a version GC already took apart
            store.s3.head_object(Bucket=store.bucket, Key=entry["key"])
        outcome = store.publish(manifest, None if pointer is None else pointer.etag)
    if outcome is PublishOutcome.PUBLISHED:
        # The compactor's warm copy is of the version rolled back from.
        WarmCache(settings, store).forget(collection)
    return outcome


@dataclass
class GcReport:
    collection: str
    kept_versions: list[str] = field(default_factory=list)
    deleted_versions: list[str] = field(default_factory=list)
    deleted_objects: int = 0


def collect_garbage(settings: Settings, collection: str, *, retain_versions: int = DEFAULT_RETAIN_VERSIONS,
                    grace: timedelta = DEFAULT_GRACE, now: datetime | None = None) -> GcReport:
    """Delete versions beyond the newest ``retain_versions`` that are older than ``grace``."""
    store = SnapshotStore(settings)
    now = now or datetime.now(timezone.utc)
    report = GcReport(collection)
    lock = CompactionLock(lock_id_for(collection), settings=settings)
    if not lock.acquire():
        log.info("gc of %s skipped: a compaction holds the lock", collection)
        return report
    lock.start_heartbeat()
    try:
        pointer = store.read_pointer(collection)
        versions = store.list_versions(collection)
        keep = set(versions[-retain_versions:]) if retain_versions > 0 else set()
        if pointer is not None:
            keep.add(pointer.version)
        doomed = [v for v in versions if v not in keep and _created(v) < now - grace]
        report.kept_versions = sorted(set(versions) - set(doomed))
        referenced = _referenced_keys(store, collection, report.kept_versions)
        for version in doomed:
            report.deleted_objects += _delete_version(store, collection, version, referenced)
            report.deleted_versions.append(version)
    finally:
        lock.release()
    log.info("gc of %s: deleted %d versions (%d objects), kept %s", collection, len(report.deleted_versions),
             report.deleted_objects, report.kept_versions)
    return report


def _created(version: str) -> datetime:
    stamp = version.split("-", 1)[1]
    return datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=timezone.utc)


def _referenced_keys(store: SnapshotStore, collection: str, versions: list[str]) -> set[str]:
    referenced: set[str] = set()
    for version in versions:
        try:
            manifest: dict[str, Any] = store.read_manifest(collection, version, any_format=True)
        except SnapshotNotFoundError:
            continue  # an orphan without manifest references nothing
        referenced.update(entry["key"] for entry in manifest["files"])
    return referenced


def _delete_version(store: SnapshotStore, collection: str, version: str, referenced: set[str]) -> int:
    prefix = version_prefix(collection, version)
    keys = [o["Key"] for page in store.s3.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=prefix)
            for o in page.get("Contents", []) if o["Key"] not in referenced]
    # The manifest first: from then on the version no longer exists for anyone.
    keys.sort(key=lambda key: not key.endswith(mf.MANIFEST_NAME))
    for start in range(0, len(keys), 1000):
        store.s3.delete_objects(Bucket=store.bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]]})
    return len(keys)
