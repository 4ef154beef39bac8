"""The base fold and the background tier merge: written off the lock from a fixed version,
published by rebasing onto what was appended meanwhile.

Invariant: a base fold never holds the collection's lock while it merges, and never loses an
append. It reads a fixed version V0 (pointer, manifest, merge state) and writes, unpublished, a
version F whose one segment (the new base) holds V0's live records. Then, under the lock, it
reads the pointer again: if it still names V0, F is published as it is; otherwise F's base is
rebased onto the current version V1 (``format/rebase.py``: V1's segments appended since V0
stay on top with their masks; the new base masks what they replaced or deleted, from V1's merge
state; no chroma file is rewritten) and that version — holding exactly V1's live records — is
published by the same conditional PUT of the pointer. It gives way (nothing visible changes; F
is an orphan for GC) when V1 does not descend from V0: its base is gone (another fold, a
rebuild) or it lacks deltas V0 held (a rollback). A publish refused because the lock was lost
is retried from a fresh read of the pointer. Killed at any step (``faults.FOLD_STEPS``), the
pointer names V0, V1 or the rebased version, each whole; the new base's objects stay while any
kept version refers to them (GC keeps referenced keys).

Appends keep publishing during the fold: the lock is held only for the rebase (two small
uploads and the pointer's PUT), never for the merge. ``fold_tiers`` is the same protocol for
the recent tiers that reached the fan-in (``segments.tier_merge_due``): F merges them into one
segment of the next tier, never the base; the rebase puts it in their place, and gives way
when an append merged all of them meanwhile (the segment bound, ``plan_fold``'s ``tiers``).
So a loop that runs it (``compact --watch``) never merges a tier inside a cycle.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path

from ..config import Settings
from ..faults import checkpoint
from ..format.keys import new_delta_id
from ..format.merge_state import part_path, remember_state, state_part_paths
from ..format.rebase import rebase
from ..format.segments import MASKS_FILE, read_masks, write_masks
from ..io.lock import CompactionLock, lock_id_for
from ..table.snapshot_store import Pointer, PublishOutcome, SnapshotStore
from ..format.version_manifest import VersionManifest, next_version, segments_of
from ..compaction.compactor import ChromaCompactor
from ..compaction.result import CompactionResult, CompactionStatus
from .version_writer import Candidate

log = logging.getLogger(__name__)

PUBLISH_ATTEMPTS = 3


class FoldOutcome(str, Enum):
    PUBLISHED = "published"  # the pointer still named the fold's version: published as written
    REBASED = "rebased"  # versions were appended meanwhile: published on top of them
    NOOP = "noop"  # one unmasked segment already: nothing to fold
    GAVE_WAY = "gave_way"  # the current version does not descend from the fold's: nothing changed
    BUSY = "busy"  # the lock stayed held past the wait: nothing changed

    def __str__(self) -> str:
        return self.value


@dataclass
class BaseFold:
    outcome: FoldOutcome
    result: CompactionResult
    rebased_onto: str | None = None  # the version appended meanwhile that the fold went on top of
    fold_seconds: float = 0.0  # writing the new base, off the lock
    locked_seconds: float = 0.0  # the rebase and publish, under the lock


def fold_base(settings: Settings, collection: str, *, lock_wait_seconds: float = 600.0) -> BaseFold:
    """Fold ``collection``'s published version into one base segment without stalling appends."""
    return _fold(settings, collection, lock_wait_seconds, tiers=False)


def fold_tiers(settings: Settings, collection: str, *, lock_wait_seconds: float = 600.0) -> BaseFold:
    """Merge ``collection``'s full recent tiers into one segment without stalling appends
    (NOOP when no tier reached the fan-in)."""
    return _fold(settings, collection, lock_wait_seconds, tiers=True)


def _fold(settings: Settings, collection: str, lock_wait_seconds: float, tiers: bool) -> BaseFold:
    started = time.monotonic()
    # A cache of its own: the fold's checkout never takes the appending compactor's warm copy.
    folder = ChromaCompactor(settings=settings.with_overrides(cache_dir=str(Path(settings.cache_dir) / "fold")))
    candidate = folder.writer.write_candidate(collection, [], fold_all=not tiers, fold_tiers=tiers,
                                              segment_name=f"{'tier' if tiers else 'fold'}-{new_delta_id()}")
    if candidate.manifest is None:
        return BaseFold(FoldOutcome.NOOP, CompactionResult(CompactionStatus.NOOP, collection,
                                                           version=candidate.base_version))
    fold_seconds = time.monotonic() - started
    checkpoint(settings, "fold_written")
    try:
        for _attempt in range(PUBLISH_ATTEMPTS):
            lock = _wait_for_lock(settings, collection, lock_wait_seconds)
            if lock is None:
                return BaseFold(FoldOutcome.BUSY, _result(CompactionStatus.BUSY, collection, candidate, started))
            locked = time.monotonic()
            try:
                checkpoint(settings, "rebase_locked")
                outcome, manifest, onto = _publish_locked(folder, collection, candidate, lock)
            finally:
                lock.release()
            if outcome is not None:
                result = _result(CompactionStatus.OK if manifest else CompactionStatus.NOOP, collection, candidate,
                                 started, manifest)
                return BaseFold(outcome, result, onto, fold_seconds, time.monotonic() - locked)
        raise RuntimeError(f"fold of {collection}: the pointer kept moving under a lost lock")
    finally:
        folder.discard(candidate)


def _publish_locked(folder: ChromaCompactor, collection: str, candidate: Candidate,
                    lock: CompactionLock) -> tuple[FoldOutcome | None, VersionManifest | None, str | None]:
    """Under the lock: publish the fold as written, or rebased onto the current version.
    (None, …) when the publish was refused (the lock was lost): try again."""
    store = folder.store
    pointer = store.read_pointer(collection)
    if pointer is None:
        raise RuntimeError(f"fold of {collection}: the pointer is gone")
    if pointer.etag == candidate.pointer_etag:
        outcome = folder.publish_candidate(candidate)
        checkpoint(folder.settings, "rebase_published")
        return (FoldOutcome.PUBLISHED, candidate.manifest, None) if outcome is PublishOutcome.PUBLISHED \
            else (None, None, None)
    manifest = rebased_version(store, collection, candidate, pointer, lock)
    if manifest is None:
        log.warning("fold of %s gave way: %s does not descend from %s", collection, pointer.version,
                    candidate.base_version)
        return FoldOutcome.GAVE_WAY, None, pointer.version
    checkpoint(folder.settings, "rebase_uploaded")
    if lock.lost or store.publish(manifest, pointer.etag, pointer.document) is not PublishOutcome.PUBLISHED:
        return None, None, None
    checkpoint(folder.settings, "rebase_published")
    return FoldOutcome.REBASED, manifest, pointer.version


def rebased_version(store: SnapshotStore, collection: str, candidate: Candidate, pointer: Pointer,
                    lock: CompactionLock) -> VersionManifest | None:
    """Upload (unpublished) the fold's new segment rebased onto the version ``pointer`` names;
    None when that version does not descend from the fold's, or holds none of the segments it
    replaced (an append merged them: the fold gives way)."""
    fold_manifest, fold_state = candidate.manifest, candidate.merge_state
    assert fold_manifest is not None and fold_state is not None
    folded_from = store.read_manifest(collection, str(candidate.base_version))
    current = store.read_manifest(collection, pointer.version)
    old, now = segments_of(folded_from), segments_of(current)
    old_names, now_names = {s.name for s in old}, {s.name for s in now}
    written = [s for s in segments_of(fold_manifest) if s.name not in old_names]  # the fold's one new segment
    folded = old_names - {s.name for s in segments_of(fold_manifest)}
    if old[0].name not in now_names or not folded & now_names or current.hnsw != fold_manifest.hnsw:
        return None
    current_state = store.read_merge_state(current)
    if not fold_state.applied_delta_ids <= current_state.applied_delta_ids:
        return None
    workdir = Path(tempfile.mkdtemp(prefix=f"vp-rebase-{collection}-"))
    try:
        masks = store.download_entries(current, [MASKS_FILE], workdir) if current.has_file(MASKS_FILE) else 0
        rebased = rebase(written[0], folded, fold_state, now, read_masks(workdir) if masks else {}, current_state)
        count = sum(s.live for s in rebased.segments)
        if count != current.vector_count:
            raise RuntimeError(f"rebase of {collection} onto {pointer.version}: {count} live records, "
                               f"the version holds {current.vector_count}")
        version = next_version(pointer.version)
        fold_parts, own_part = tuple(state_part_paths(fold_manifest)), part_path(version)  # replay to fold_state
        write_masks(workdir, rebased.masks)
        (workdir / own_part).parent.mkdir(parents=True, exist_ok=True)
        (workdir / own_part).write_bytes(rebased.change.to_bytes())
        new = written[0].path
        kept = [s.path for s in rebased.segments if s.name != written[0].name]
        reused = [e for e in fold_manifest.files if e.path in fold_parts or e.path.startswith(new + "/")]
        reused += [e for e in current.files if any(e.path.startswith(p + "/") for p in kept)]
        manifest = replace(current, files=(), total_bytes=0, uploaded_bytes=0, reused_files=0,
                           version=version, parent_version=pointer.version, created_at=datetime.now(timezone.utc).isoformat(),
                           vector_count=count, parent_vector_count=current.vector_count, applied_delta_ids=(),
                           delta_upserts=0, delta_deletes=0, fence=lock.fence, lock_owner=lock.owner,
                           segments=tuple(rebased.segments), fold=fold_manifest.fold,
                           state_parts=(*fold_parts, own_part), rebased_fold=fold_manifest.version,
                           rebuilt_from_scratch=False, rebuilt_over=None)
        parent = replace(current, files=tuple(reused))  # whose files the new version reuses
        uploaded = store.upload_version(workdir, manifest, parent, [new, *fold_parts, *kept])
        remember_state(store.bucket, collection, uploaded, rebased.state)  # cached only by its parts' checksums
        return uploaded
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_lock(settings: Settings, collection: str, wait_seconds: float) -> CompactionLock | None:
    """The collection's lock, waiting while appends hold it (each holds it for one compaction)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        lock = CompactionLock(lock_id_for(collection), settings=settings)
        if lock.acquire():
            lock.start_heartbeat()
            return lock
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


def _result(status: CompactionStatus, collection: str, candidate: Candidate, started: float,
            manifest: VersionManifest | None = None) -> CompactionResult:
    return CompactionResult(
        status, collection, version=manifest.version if manifest else candidate.base_version,
        previous_version=None if manifest is None else manifest.parent_version,
        vector_count=None if manifest is None else manifest.vector_count,
        bytes_downloaded=candidate.bytes_downloaded,
        bytes_uploaded=(0 if candidate.manifest is None else candidate.manifest.uploaded_bytes)
        + (0 if manifest is None or manifest is candidate.manifest else manifest.uploaded_bytes),
        duration_seconds=time.monotonic() - started, fold=str(candidate.fold or "fold_all"),
        segments=None if manifest is None else len(manifest.segments), merge_seconds=candidate.merge_seconds)
