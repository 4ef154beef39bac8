"""The write step: base version + pending deltas → a new immutable version in S3, unpublished.

Invariant: a candidate's files and manifest are uploaded under a version prefix no pointer
names yet, manifest last; until ``publish`` swaps the pointer, nothing a reader sees has
changed, and a candidate abandoned at any point is an orphan for GC. The version holds
exactly the base's live records plus the net effect of the deltas (``merge``): the count
the merge state predicts is checked before anything is uploaded. It has its collection's
HNSW settings (``collections/<c>.json``), whatever its parent had: when they differ, it
folds everything into one segment that has them (``hnsw_change``); a rebuild given other
settings makes them the collection's first.

Stateless: a run reads the base's merge state (its parts) and masks first, then the deltas,
then plans the fold, and fetches only what the plan reads (``WarmCache.fetch``): an append
downloads no segment, a fold of the recent tier only the segments it folds; the segments it
keeps are the parent's objects, referenced. It writes one state part (``merge_state``) and
changes a private copy of the cached state, which enters the cache only at publish.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Sequence

from .. import progress
from ..format import merge, merge_state
from ..table.catalog import CollectionCatalog
from ..chroma.client import CHROMADB_VERSION
from ..config import HnswSettings, Settings
from ..format.keys import DeltaRef
from ..format.loaded_delta import LoadedDelta
from ..table.embedding import collection_embedding
from .intake import DeltaIntake
from ..format.segments import (MASKS_FILE, FoldKind, FoldPlan, Segment, plan_fold, read_masks, tier_merge_due,
                               write_masks)
from ..format.merge_state import MergeState, load_state, part_path, state_part_paths
from ..format.pointer import PointerDocument
from ..format.version_manifest import SNAPSHOT_FORMAT, UnsupportedFormatError, VersionManifest, next_version, segments_of
from ..table.snapshot_store import SnapshotStore
from .segment_writer import write_segment
from .warm_cache import Checkout, WarmCache, below, files_under

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    """A written, not yet published version (or the reason there is nothing to publish)."""

    collection: str
    base_version: str | None
    pointer_etag: str | None
    manifest: VersionManifest | None
    local_dir: Path | None
    pointer_document: PointerDocument | None = None  # the pointer as read with pointer_etag
    applied: list[DeltaRef] = field(default_factory=list)
    already_applied: list[DeltaRef] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)
    base_vector_count: int = 0
    expected_vector_count: int = 0
    bytes_downloaded: int = 0
    fold: FoldKind | None = None  # how the merge placed the deltas among the segments
    merge_seconds: float = 0.0  # net effect + the segment written (not transfers)
    merge_state: MergeState | None = None  # the version's state, as the merge left it
    recall_at_k: float | None = None  # measured before publish (the Dagster recall check), when it was

    @property
    def version(self) -> str | None:
        return None if self.manifest is None else self.manifest.version


@dataclass
class Merged:
    """What one merge did: the new version's segments, the plan, the net effect, and the
    ids a fold moved into the new segment."""

    segments: list[Segment]
    plan: FoldPlan
    effect: merge.NetEffect
    relocated: list[str]


class VersionWriter:
    def __init__(self, settings: Settings, store: SnapshotStore, intake: DeltaIntake, cache: WarmCache,
                 catalog: CollectionCatalog, tiers_inline: bool = True) -> None:
        self.settings, self.store, self.intake, self.cache, self.catalog = settings, store, intake, cache, catalog
        self.tiers_inline = tiers_inline  # False: appends leave tier merges to a background fold_tiers

    def write_candidate(self, collection: str, delta_keys: Sequence[str], *, fence: int | None = None,
                        lock_owner: str | None = None, from_scratch: bool = False,
                        hnsw: HnswSettings | None = None, fold_all: bool = False,
                        base_version: str | None = None, segment_name: str | None = None,
                        fold_tiers: bool = False) -> Candidate:
        """Merge the pending deltas into a new version and upload it, unpublished.

        ``from_scratch`` merges onto an empty collection instead of the published version
        (a rebuild), ``base_version`` onto that kept version (a rebuild over an expired
        archive); the version still follows the pointer's number and ETag. ``fold_all``
        folds every segment back into the base even without deltas (the background merge);
        ``fold_tiers`` merges the recent tiers that reached the fan-in, without deltas (the
        background tier merge; nothing to write when none did); ``segment_name`` names the
        segment written (default: the version's number).
        """
        config = self.catalog.require(collection)
        if hnsw is not None and hnsw != config.hnsw:  # a rebuild with new settings: the collection takes them
            config = self.catalog.update(collection, **{f"hnsw_{k}": v for k, v in hnsw.as_dict().items()})
        policy = config.apply_to(self.settings)  # the collection's HNSW and segment policy
        pointer = self.store.read_pointer(collection)
        pointer_manifest = None if pointer is None else self._pointer_manifest(collection, pointer.version,
                                                                              from_scratch)
        base_manifest = None if from_scratch else pointer_manifest
        if base_version is not None:
            base_manifest = self.store.read_manifest(collection, base_version)
        candidate = Candidate(collection, None if pointer is None else pointer.version,
                              None if pointer is None else pointer.etag, None, None,
                              pointer_document=None if pointer is None else pointer.document)
        checkout = self.cache.check_out(collection, base_manifest)
        workdir = checkout.path
        try:
            base_state = self._base_state(collection, checkout)  # shared, read-only
            if base_manifest is not None:
                candidate.base_vector_count = base_manifest.vector_count
            intake = self.intake.take(collection, delta_keys, base_state, base_manifest, config.embedding)
            candidate.already_applied, candidate.missing = intake.already_applied, intake.missing
            candidate.quarantined = intake.quarantined
            deltas = intake.loaded
            # The collection's HNSW settings reach every version it publishes: when they are
            # not the base's, the version folds everything into one segment that has them.
            hnsw = hnsw or policy.hnsw
            change = hnsw_change(base_manifest, hnsw)
            # A rebuild over a kept version always writes one (its content becomes current).
            fold_all = fold_all and (_has_recent_or_masked(base_manifest) or base_version is not None
                                     or change is not HnswChange.NONE)
            fold_tiers = fold_tiers and base_manifest is not None and tier_merge_due(segments_of(base_manifest), policy)
            if not deltas and not fold_all and not fold_tiers:
                candidate.bytes_downloaded = checkout.downloaded + intake.bytes_downloaded
                self.cache.give_back(checkout)
                return candidate
            version = next_version(candidate.base_version)
            state = base_state.copy()  # the merge changes it in place; the cached state stays the base's
            with progress.stage(f"{collection}: merge", len(deltas), "deltas") as bar:
                merged = self._merge(candidate, deltas, state, checkout, hnsw, segment_name or version.split("-", 1)[0],
                                     policy, fold_all or change is not HnswChange.NONE, change is HnswChange.REINDEX,
                                     self.tiers_inline or fold_tiers)
                bar.advance(len(deltas))
            segments, plan = merged.segments, merged.plan
            parts = self._write_state_part(checkout, state, merged, deltas, version)
            candidate.bytes_downloaded = checkout.downloaded + intake.bytes_downloaded
            manifest = replace(self._manifest(candidate, version, deltas, segments, hnsw, base_manifest, fence, lock_owner),
                               rebuilt_from_scratch=from_scratch, rebuilt_over=base_version, state_parts=tuple(parts))
            own_part = part_path(version)
            untouched = [s.path for s in plan.keep] + [p for p in parts if p != own_part]
            parent = base_manifest if base_manifest is not None else pointer_manifest  # whose files are reused
            candidate.manifest = self.store.upload_version(workdir, manifest, parent, untouched)
            self.cache.record_uploaded(checkout, candidate.manifest, untouched)
            candidate.local_dir = workdir
            candidate.merge_state = state
            return candidate
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise

    def _base_state(self, collection: str, checkout: Checkout) -> MergeState:
        """The base version's merge state (shared: copy it to change it): cached in this
        process, or replayed from its parts, fetched into the work dir unless held."""
        if checkout.base is None:
            return MergeState()
        return load_state(self.store.bucket, collection, checkout.base, lambda e: self._base_file(checkout, e.path))

    def _base_file(self, checkout: Checkout, path: str) -> bytes:
        self.cache.fetch(checkout, [path])
        return checkout.file(path).read_bytes()

    def _write_state_part(self, checkout: Checkout, state: MergeState, merged: "Merged",
                          deltas: list[LoadedDelta], version: str) -> list[str]:
        """This run's state part, and the new version's list of parts (see ``merge_state``)."""
        own, base_parts = part_path(version), state_part_paths(checkout.base)
        change = merge_state.change_of(state, (d.ref.delta_id for d in deltas), merged.effect.touched,
                                       merged.relocated)
        parts, body = merge_state.next_log(base_parts, own, state, change, merged.plan.kind is FoldKind.FOLD_ALL,
                                           merged.plan.kind is FoldKind.FOLD_RECENT,
                                           lambda path: self._base_file(checkout, path))
        for path in set(base_parts) - set(parts):  # consolidated away: not a file of the new version
            checkout.file(path).unlink(missing_ok=True)
            checkout.held.pop(path, None)
        checkout.file(own).parent.mkdir(parents=True, exist_ok=True)
        checkout.file(own).write_bytes(body)
        return parts

    def _pointer_manifest(self, collection: str, version: str, from_scratch: bool) -> VersionManifest | None:
        try:
            return self.store.read_manifest(collection, version)
        except UnsupportedFormatError:
            if not from_scratch:
                raise
            # A rebuild is the way off an older format: it needs nothing of that version.
            log.warning("rebuilding %s over %s, a version of an older snapshot format", collection, version)
            return None

    def _merge(self, candidate: Candidate, deltas: list[LoadedDelta], state: MergeState, checkout: Checkout,
               hnsw: HnswSettings, name: str, policy: Settings, fold_all: bool = False,
               reindex: bool = False, tiers: bool = True) -> "Merged":
        """Apply the net effect of ``deltas`` in one pass, writing one segment; fetches only
        the base files the fold plan reads (masks, and the segments it copies or folds)."""
        started = time.monotonic()
        workdir, base_manifest = checkout.path, checkout.base
        effect = merge.net_effect(deltas, state)
        candidate.expected_vector_count = merge.expected_vector_count(candidate.base_vector_count, effect, state)
        segments = segments_of(base_manifest)
        plan = plan_fold(segments, len(effect.upserts), policy, fold_all=fold_all, reindex=reindex, tiers=tiers)
        folded = [s.path for s in (plan.copy_from, *plan.read_from) if s is not None]
        if base_manifest is not None:
            self.cache.fetch(checkout, [MASKS_FILE] if base_manifest.has_file(MASKS_FILE) else [])
            self.cache.fetch(checkout, [p for source in folded for p in files_under(base_manifest, source)])
        masks = read_masks(workdir)
        if plan.kind is FoldKind.APPEND and segments and not effect.upserts:
            new_segment = None  # deletes only: masks change, no segment is written
        else:
            inside = base_manifest.inner_collection if base_manifest else candidate.collection
            new_segment = write_segment(self.settings, inside, workdir, plan, masks, state, effect, hnsw, name)
        kept = merge.masks_after(plan, masks, effect, state)
        relocated = merge.relocate(state, plan, new_segment, effect)
        write_masks(workdir, kept)
        for path in list(checkout.held):  # the merge rewrote or moved these
            if path == MASKS_FILE or below(path, folded):
                del checkout.held[path]
        result = [Segment(s.name, s.stored, len(kept[s.name]), s.tier) for s in plan.keep]
        result += [new_segment] if new_segment else []
        count = sum(s.live for s in result)
        candidate.merge_seconds = time.monotonic() - started
        log.info("merged %d deltas (%s): %d upserts, %d deletes in %.2fs (%d → %d vectors, %d segments)",
                 len(deltas), plan.kind, len(effect.upserts), len(effect.deletes), candidate.merge_seconds,
                 candidate.base_vector_count, count, len(result))
        if count != candidate.expected_vector_count:
            raise RuntimeError(f"merge produced {count} vectors, expected {candidate.expected_vector_count}")
        state.applied_delta_ids.update(d.ref.delta_id for d in deltas)
        candidate.applied = [d.ref for d in deltas]
        candidate.fold = plan.kind
        return Merged(result, plan, effect, relocated)

    def _manifest(self, candidate: Candidate, version: str, deltas: list[LoadedDelta], segments: list[Segment],
                  hnsw: HnswSettings, base: VersionManifest | None, fence: int | None,
                  lock_owner: str | None) -> VersionManifest:
        first = next((d for d in deltas if d.ids), None)
        embedding = collection_embedding(base) or (
            (first.embedding_provider, first.dimension) if first else ("", 0))
        return VersionManifest(
            format=SNAPSHOT_FORMAT, collection=candidate.collection, version=version,
            parent_version=candidate.base_version, created_at=datetime.now(timezone.utc).isoformat(),
            vector_count=sum(s.live for s in segments), parent_vector_count=candidate.base_vector_count,
            applied_delta_ids=tuple(d.ref.delta_id for d in deltas), delta_upserts=sum(len(d.ids) for d in deltas),
            delta_deletes=sum(len(d.delete_ids) for d in deltas), chromadb_version=CHROMADB_VERSION,
            hnsw=hnsw.as_dict(), embedding_provider=embedding[0], dimension=embedding[1], fence=fence,
            lock_owner=lock_owner, segments=tuple(segments),
            # a fork's segments hold its source's chroma collection, and so do its versions'
            chroma_collection=base.inner_collection if base else candidate.collection,
            fold=str(candidate.fold), masks_file=MASKS_FILE)


class HnswChange(Enum):
    NONE = "none"  # the base has the collection's HNSW settings
    SEARCH_EF = "search_ef"  # only the search breadth differs: chroma changes it in place
    REINDEX = "reindex"  # space, construction breadth or neighbours differ: a new index


def hnsw_change(base: VersionManifest | None, wanted: HnswSettings) -> HnswChange:
    """What it takes for a version built on ``base`` to have the ``wanted`` HNSW settings."""
    if base is None:
        return HnswChange.NONE
    held = HnswSettings.from_dict(base.hnsw)
    if held == wanted:
        return HnswChange.NONE
    return HnswChange.SEARCH_EF if replace(held, search_ef=wanted.search_ef) == wanted else HnswChange.REINDEX


def _has_recent_or_masked(manifest: VersionManifest | None) -> bool:
    segments = segments_of(manifest)
    return len(segments) > 1 or any(s.masked for s in segments)
