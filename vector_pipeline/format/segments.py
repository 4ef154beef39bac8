"""Segmented versions (the pure part): segments, the fold plan, masks on disk.

A version is a base segment plus a few small recent ones.

Invariant: every live id of a version is held by exactly one of its segments, and there
it is not masked; an id in a segment's mask (replaced by a newer segment, or deleted) is
invisible in that segment. So readers merge the top-k of every segment after dropping
masked ids, and a compaction writes only the one segment it folds into: the other
segments are the parent version's files, reused by reference, so its cost follows the
deltas, not the snapshot.

Why: an HNSW insert rewrites neighbour lists all over ``data_level0.bin``, so merging
into the base rewrites (and re-uploads) the whole index. The fold policy bounds what
readers pay for this: at most ``segment_max_count`` segments, and once the recent ones
(plus the base's masked ids) pass ``segment_fold_ratio`` of the base, the next compaction
folds them back into it (as LSM trees and Lance's fragments compact); ``fold_segments``
does it on demand, off the ingest path.
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

    @property
    def path(self) -> str:
        return f"{SEGMENTS_DIR}/{self.name}"

    @property
    def live(self) -> int:
        return self.stored - self.masked

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "stored": self.stored, "masked": self.masked}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Segment":
        return cls(str(values["name"]), int(values["stored"]), int(values.get("masked", 0)))


class FoldKind(str, Enum):
    APPEND = "append"  # a new small segment; the others are untouched
    FOLD_RECENT = "fold_recent"  # the recent segments and the deltas become one segment
    FOLD_ALL = "fold_all"  # everything folds back into (a copy of) the base

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class FoldPlan:
    kind: FoldKind
    keep: tuple[Segment, ...]  # older segments left as they are (their masks may grow)
    copy_from: Segment | None  # the segment the new one starts as a copy of
    read_from: tuple[Segment, ...]  # segments whose live records move into the new one

    @property
    def folded(self) -> set[str]:
        """Names of the segments the new one replaces."""
        return {s.name for s in (*self.read_from, *([self.copy_from] if self.copy_from else []))}


def chroma_collection(manifest: Mapping[str, Any]) -> str:
    """The chroma collection inside the version's segments: the collection's own name, or
    (a fork, ``table/forks.py``) the name of the collection whose segments it shares."""
    return str(manifest.get("chroma_collection") or manifest["collection"])


def segments_of(manifest: Mapping[str, Any] | None) -> list[Segment]:
    return [Segment.from_dict(s) for s in (manifest or {}).get("segments", [])]


def plan_fold(segments: Sequence[Segment], incoming: int, settings: Settings, fold_all: bool = False,
              reindex: bool = False) -> FoldPlan:
    """Where ``incoming`` new records go, keeping the reader's cost bounded. ``reindex``:
    every segment is read into a new one (an HNSW setting chroma cannot change in place
    changed), none copied."""
    if not segments:
        return FoldPlan(FoldKind.APPEND, (), None, ())
    if reindex:
        return FoldPlan(FoldKind.FOLD_ALL, (), None, tuple(segments))
    base, recent = segments[0], tuple(segments[1:])
    recent_stored = sum(s.stored for s in recent)
    # The recent tier as it stands decides, not ``incoming``: a large batch becomes one
    # segment now and is folded by the next compaction (or the nightly fold), so no single
    # compaction pays for both its own deltas and a rewrite of the base.
    if fold_all or base.masked + recent_stored > settings.segment_fold_ratio * max(base.stored, 1):
        return FoldPlan(FoldKind.FOLD_ALL, (), base, recent)
    if len(segments) + (1 if incoming else 0) > settings.segment_max_count:
        if not recent or settings.segment_max_count < 2:
            return FoldPlan(FoldKind.FOLD_ALL, (), base, recent)
        return FoldPlan(FoldKind.FOLD_RECENT, (base,), recent[0], recent[1:])
    return FoldPlan(FoldKind.APPEND, tuple(segments), None, ())


def read_masks(version_dir: Path) -> dict[str, set[str]]:
    path = version_dir / MASKS_FILE
    if not path.exists():
        return {}
    return {name: set(ids) for name, ids in json.loads(gzip.decompress(path.read_bytes())).items()}


def write_masks(version_dir: Path, masks: Mapping[str, Iterable[str]]) -> None:
    document = {name: sorted(ids) for name, ids in sorted(masks.items()) if ids}
    (version_dir / MASKS_FILE).write_bytes(
        gzip.compress(json.dumps(document, separators=(",", ":")).encode(), compresslevel=5))
