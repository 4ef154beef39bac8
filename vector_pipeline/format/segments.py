"""Segmented versions (the pure part): segments, size tiers, the fold plan, masks on disk.

A version is a base segment plus recent segments, each of a size tier.

Invariant: every live id of a version is held by exactly one of its segments, and there
it is not masked; an id in a segment's mask (replaced by a newer segment, or deleted) is
invisible in that segment. So readers merge the top-k of every segment after dropping
masked ids, and a compaction writes only the one segment it folds into: the other
segments are the parent version's files, reused by reference, so its cost follows the
deltas, not the snapshot.

Why tiers: an HNSW insert rewrites neighbour lists all over ``data_level0.bin``, so merging
into the base rewrites (and re-uploads) the whole index. The ingest path never does it.
Policy: size-tiered (as Cassandra's STCS and RocksDB's universal compaction), not leveled:
the recent data here is small and append-mostly, and size tiers write each record once per
tier (write amplification ≈ tiers + 1) where leveling rewrites a level per merge (≈ fan-in
per level). A compaction appends one tier-0 segment; once a tier would hold
``segment_fan_in`` (F) segments, they and the deltas merge into one segment of the next
tier, up to the top tier T = (``segment_max_count`` − 1) / (F − 1) − 1. Segments of the top
tier wait for the base fold, which runs off the ingest path (``compaction/base_fold.py``,
rebased onto whatever was appended meanwhile). So a reader searches at most
``segment_max_count`` = 1 + (T + 1) × (F − 1) segments (default 10: base + 3 tiers × 3);
should folds fall behind, the ingest path merges recent segments among themselves (still
never the base) to keep that bound. With tier merges in the background (``tiers`` False, as
``compact --watch`` runs: ``base_fold.fold_tiers`` merges a tier once ``tier_merge_due``), an
append merges nothing but, past the bound, the lowest tiers that make room. ``segment_max_count`` 1 folds every compaction into the
base (a bulk load).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..config import Settings

SEGMENTS_DIR = "segments"
MASKS_FILE = "masks.json.gz"


@dataclass(frozen=True)
class Segment:
    """One chroma persist dir of a version, named for the version number that wrote it."""

    name: str
    stored: int  # records in its chroma collection
    masked: int = 0  # of them, hidden by a newer segment or a delete
    tier: int = 0  # recent segments: size tier (0: one compaction's deltas); the base: 0

    @property
    def path(self) -> str:
        return f"{SEGMENTS_DIR}/{self.name}"

    @property
    def live(self) -> int:
        return self.stored - self.masked

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "stored": self.stored, "masked": self.masked, "tier": self.tier}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Segment":
        return cls(str(values["name"]), int(values["stored"]), int(values.get("masked", 0)), int(values.get("tier", 0)))


class FoldKind(str, Enum):
    APPEND = "append"  # a new small segment; the others are untouched
    FOLD_RECENT = "fold_recent"  # a tier merge: some recent segments and the deltas become one segment
    FOLD_ALL = "fold_all"  # everything folds back into (a copy of) the base

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class FoldPlan:
    kind: FoldKind
    keep: tuple[Segment, ...]  # older segments left as they are (their masks may grow)
    copy_from: Segment | None  # the segment the new one starts as a copy of
    read_from: tuple[Segment, ...]  # segments whose live records move into the new one
    tier: int = 0  # the new segment's tier

    @property
    def folded(self) -> set[str]:
        """Names of the segments the new one replaces."""
        return {s.name for s in (*self.read_from, *([self.copy_from] if self.copy_from else []))}


def top_tier(settings: Settings) -> int:
    """The highest tier a tier merge writes: (max count − 1) / (fan-in − 1) − 1, at least 0."""
    return max(0, (settings.segment_max_count - 1) // max(settings.segment_fan_in - 1, 1) - 1)


def plan_fold(segments: Sequence[Segment], incoming: int, settings: Settings, fold_all: bool = False,
              reindex: bool = False, tiers: bool = True) -> FoldPlan:
    """Where ``incoming`` new records go: a new tier-0 segment, merged up the tiers that
    would reach the fan-in; never into the base unless ``fold_all`` (or a bulk load).
    ``reindex``: every segment is read into a new one, none copied (an HNSW setting chroma
    cannot change in place changed). ``tiers`` False: no tier merge here (a background one,
    ``tier_merge_due``, does it off the lock), only what keeps ``segment_max_count``: the
    lowest tiers that make room, merged with the incoming records."""
    if not segments:
        return FoldPlan(FoldKind.APPEND, (), None, ())
    if reindex:
        return FoldPlan(FoldKind.FOLD_ALL, (), None, tuple(segments))
    base, recent = segments[0], tuple(segments[1:])
    if fold_all or settings.segment_max_count < 2:
        return FoldPlan(FoldKind.FOLD_ALL, (), base, recent)
    fan_in, top = max(settings.segment_fan_in, 2), top_tier(settings)
    merged: list[Segment] = []
    tier, carry = 0, 1 if incoming else 0  # the new segment counts as one of tier 0
    while tiers and tier < top:
        at = [s for s in recent if min(s.tier, top) == tier]
        if len(at) + carry < fan_in:
            break
        merged += at
        tier, carry = tier + 1, 1
    written = 1 if (incoming or merged) else 0
    if len(segments) - len(merged) + written > settings.segment_max_count:  # folds fell behind
        merged, tier = _room(recent, len(segments) + 1 - settings.segment_max_count, top) if not tiers \
            else (list(recent), max([min(s.tier, top) for s in recent] + [tier]))
    if not merged:
        return FoldPlan(FoldKind.APPEND, tuple(segments), None, ())
    names = {s.name for s in merged}
    largest = max(merged, key=lambda s: s.live)  # copied as it stands; the others' records move into it
    return FoldPlan(FoldKind.FOLD_RECENT, tuple(s for s in segments if s.name not in names), largest,
                    tuple(s for s in merged if s is not largest), tier)


def _room(recent: Sequence[Segment], excess: int, top: int) -> tuple[list[Segment], int]:
    """The lowest tiers whose merge into one segment removes ``excess`` segments, and the tier
    that segment takes (one above the highest merged, at most the top)."""
    merged: list[Segment] = []
    for tier in range(top + 1):
        merged += [s for s in recent if min(s.tier, top) == tier]
        if len(merged) - 1 >= excess or tier == top:
            return merged, min(tier + 1, top)
    return list(recent), top


def tier_merge_due(segments: Sequence[Segment], settings: Settings) -> bool:
    """A tier of recent segments reached the fan-in: a tier merge without deltas has work."""
    return plan_fold(segments, 0, settings).kind is FoldKind.FOLD_RECENT


def read_masks(version_dir: Path) -> dict[str, set[str]]:
    path = version_dir / MASKS_FILE
    if not path.exists():
        return {}
    return {name: set(ids) for name, ids in json.loads(gzip.decompress(path.read_bytes())).items()}


def write_masks(version_dir: Path, masks: Mapping[str, Iterable[str]]) -> None:
    document = {name: sorted(ids) for name, ids in sorted(masks.items()) if ids}
    (version_dir / MASKS_FILE).write_bytes(
        gzip.compress(json.dumps(document, separators=(",", ":")).encode(), compresslevel=5))
