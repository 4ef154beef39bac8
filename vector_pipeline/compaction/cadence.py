"""Cadence: when to compact a collection, and when to fold its base — one decision, ``due``.

Invariant: ``due`` is a pure function of the collection's settings, what is pending and the
published version's segments, and the time; it decides only *when*, never *what* a compaction
holds, so any caller (``compact --watch``, the Dagster sensor, a person) may follow it or not
without risk: a deferred delta stays pending under ``delta/`` and the next decision sees it.

Compaction follows the freshness target, not a timer: a collection is compacted once its
oldest pending delta nears ``freshness_target_seconds`` (older than the target less the
caller's lead: the last compaction's duration and its own tick), once more than
``backlog_max_deltas`` are pending, or when nothing is published yet; otherwise deltas
accumulate into fewer, larger segments. The base fold runs in the collection's quiet window
(``fold_window``, cron fields in UTC, for ``fold_window_minutes``; once per opening), or at
once when the base's masked ids pass ``segment_fold_ratio`` of it, or when the top size tier
is full (the next tier merge would otherwise merge recent segments past the bound).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Iterable

from ..format.keys import delta_id_time, parse_delta_key
from ..format.quiet_window import QuietWindow
from ..format.segments import Segment, top_tier
from ..format.version_manifest import VersionManifest, segments_of
from ..config import Settings
from ..table.catalog import CollectionConfig


class CompactDecision(str, Enum):
    NOTHING_PENDING = "nothing_pending"
    FIRST_VERSION = "first_version"  # nothing published yet: readers see nothing until it is
    FRESHNESS = "freshness"  # the oldest pending delta nears the freshness target
    BACKLOG = "backlog"  # more deltas pending than backlog_max_deltas
    ACCUMULATE = "accumulate"  # let deltas gather: the target is not near

    def __str__(self) -> str:
        return self.value


class FoldDecision(str, Enum):
    NOT_DUE = "not_due"
    QUIET_WINDOW = "quiet_window"  # the window is open and the base was not folded in this opening
    MASKED_BOUND = "masked_bound"  # the base's masked ids passed segment_fold_ratio of it
    TOP_TIER_FULL = "top_tier_full"  # the top size tier holds fan-in − 1 segments

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class PendingStats:
    """What ``due`` needs to know of a collection now."""

    pending_deltas: int
    oldest_pending_at: datetime | None  # when the oldest pending delta was produced
    published: bool  # whether a version is published
    segments: tuple[Segment, ...] = ()  # the published version's, base first
    lead_seconds: float | None = None  # how long before the target to start (None: half the target)
    last_fold_at: datetime | None = None  # when the caller last folded the base

    @classmethod
    def of(cls, delta_keys: Iterable[str], manifest: VersionManifest | None, *,
           lead_seconds: float | None = None, last_fold_at: datetime | None = None) -> "PendingStats":
        """From pending delta keys (their ids carry the time they were minted) and the
        published version's manifest (None: nothing published)."""
        times = [delta_id_time(parse_delta_key(key).delta_id) for key in delta_keys]
        return cls(len(times), min(times, default=None), manifest is not None, tuple(segments_of(manifest)),
                   lead_seconds, last_fold_at)


@dataclass(frozen=True)
class Decision:
    compact: CompactDecision
    fold: FoldDecision
    pending_age_seconds: float | None  # of the oldest pending delta
    target_seconds: float
    compact_in_seconds: float | None  # when accumulating: until compaction is due

    @property
    def should_compact(self) -> bool:
        return self.compact in (CompactDecision.FIRST_VERSION, CompactDecision.FRESHNESS, CompactDecision.BACKLOG)

    @property
    def should_fold(self) -> bool:
        return self.fold is not FoldDecision.NOT_DUE

    def as_dict(self) -> dict[str, Any]:
        return {"compact": str(self.compact), "fold": str(self.fold), "target_seconds": self.target_seconds,
                "pending_age_seconds": None if self.pending_age_seconds is None else round(self.pending_age_seconds, 1),
                "compact_in_seconds": None if self.compact_in_seconds is None else round(self.compact_in_seconds, 1)}


def due(config: CollectionConfig, pending: PendingStats, now: datetime | None = None) -> Decision:
    """Whether to compact ``config``'s collection now, and whether to fold its base."""
    now = now or datetime.now(timezone.utc)
    target = config.freshness_target_seconds
    age = None if pending.oldest_pending_at is None else max(0.0, (now - pending.oldest_pending_at).total_seconds())
    lead = min(target, target / 2 if pending.lead_seconds is None else pending.lead_seconds)
    wait = None
    if not pending.pending_deltas or age is None:
        compact = CompactDecision.NOTHING_PENDING
    elif not pending.published:
        compact = CompactDecision.FIRST_VERSION
    elif pending.pending_deltas > config.backlog_max_deltas:
        compact = CompactDecision.BACKLOG
    elif age >= target - lead:
        compact = CompactDecision.FRESHNESS
    else:
        compact, wait = CompactDecision.ACCUMULATE, target - lead - age
    return Decision(compact, _fold_decision(config, pending, now), age, target, wait)


def _fold_decision(config: CollectionConfig, pending: PendingStats, now: datetime) -> FoldDecision:
    if not pending.segments:
        return FoldDecision.NOT_DUE
    base, recent = pending.segments[0], pending.segments[1:]
    if base.masked > config.segment_fold_ratio * max(base.stored, 1):
        return FoldDecision.MASKED_BOUND
    policy = Settings(segment_max_count=config.segment_max_count, segment_fan_in=config.segment_fan_in)
    top = top_tier(policy)
    if recent and sum(1 for s in recent if min(s.tier, top) == top) >= max(config.segment_fan_in - 1, 1):
        return FoldDecision.TOP_TIER_FULL
    window = QuietWindow.parse(config.fold_window, config.fold_window_minutes)
    opened = window.opened_at(now)
    if (recent or base.masked) and opened is not None and (pending.last_fold_at is None
                                                           or pending.last_fold_at < opened):
        return FoldDecision.QUIET_WINDOW
    return FoldDecision.NOT_DUE

