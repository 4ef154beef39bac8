"""Cadence (``compaction.cadence.due``) and the quiet window, as pure functions: compaction
follows the freshness target and the backlog bound, not a timer; base folds run in the quiet
window (once per opening) or at once past the masked-ids bound or with the top tier full; a bad
window is refused naming the field. The loop that follows the decisions is
``test_compact_watch.py``; no server here."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from vector_pipeline.compaction.cadence import CompactDecision, FoldDecision, PendingStats, due
from vector_pipeline.format.quiet_window import QuietWindow
from vector_pipeline.format.segments import Segment
from vector_pipeline.table.catalog import CollectionConfig

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)  # a Thursday, outside 02:00-04:00
CONFIG = CollectionConfig("words", freshness_target_seconds=30, backlog_max_deltas=100)
BASE = (Segment("b", 10_000),)


def _pending(count: int, age: float, segments: tuple[Segment, ...] = BASE, **extra: object) -> PendingStats:
    return PendingStats(count, NOW - timedelta(seconds=age), True, segments, **extra)  # type: ignore[arg-type]


def test_compaction_waits_until_the_oldest_delta_nears_the_target() -> None:
    waiting = due(CONFIG, _pending(3, 5, lead_seconds=10), NOW)
    assert waiting.compact is CompactDecision.ACCUMULATE and waiting.compact_in_seconds == pytest.approx(15)
    assert due(CONFIG, _pending(3, 21, lead_seconds=10), NOW).compact is CompactDecision.FRESHNESS
    assert due(CONFIG, _pending(3, 16), NOW).compact is CompactDecision.FRESHNESS  # no lead known: half the target
    assert due(CONFIG, _pending(101, 1), NOW).compact is CompactDecision.BACKLOG
    assert due(CONFIG, PendingStats(1, NOW, False), NOW).compact is CompactDecision.FIRST_VERSION
    nothing = due(CONFIG, PendingStats(0, None, True, BASE), NOW)
    assert nothing.compact is CompactDecision.NOTHING_PENDING and not nothing.should_compact


def test_base_folds_run_in_the_quiet_window_once_or_at_once_past_a_bound() -> None:
    recent = (*BASE, Segment("r", 100))
    assert due(CONFIG, _pending(0, 0, recent), NOW).fold is FoldDecision.NOT_DUE
    in_window = NOW.replace(hour=3)
    assert due(CONFIG, _pending(0, 0, recent), in_window).fold is FoldDecision.QUIET_WINDOW
    folded = _pending(0, 0, recent, last_fold_at=in_window.replace(hour=2, minute=30))
    assert due(CONFIG, folded, in_window).fold is FoldDecision.NOT_DUE  # once per opening
    assert due(CONFIG, _pending(0, 0, BASE), in_window).fold is FoldDecision.NOT_DUE  # nothing to fold
    masked = (Segment("b", 10_000, masked=2_600),)
    assert due(CONFIG, _pending(0, 0, masked), NOW).fold is FoldDecision.MASKED_BOUND
    top = (*BASE, *(Segment(f"t{i}", 1_600, tier=2) for i in range(3)))  # 10 segments, fan-in 4: tier 2 is top
    assert due(CONFIG, _pending(0, 0, top), NOW).fold is FoldDecision.TOP_TIER_FULL


def test_quiet_window_is_cron_fields_in_utc_and_refuses_a_bad_field() -> None:
    nightly = QuietWindow.parse("0 2 * * *", 120)
    assert nightly.contains(NOW.replace(hour=3, minute=59)) and not nightly.contains(NOW.replace(hour=4))
    assert nightly.opened_at(NOW.replace(hour=3)) == NOW.replace(hour=2)
    weekend = QuietWindow.parse("30 1 * * 6,0", 240)
    assert weekend.contains(datetime(2026, 12, 5, 2, 0, tzinfo=timezone.utc))  # Saturday
    assert not weekend.contains(datetime(2026, 12, 4, 2, 0, tzinfo=timezone.utc))  # Friday
    assert QuietWindow.parse("*/15 * * * *", 5).contains(NOW.replace(minute=47))
    with pytest.raises(ValueError, match="hour field '25'"):
        QuietWindow.parse("0 25 * * *", 60)
    with pytest.raises(ValueError, match="5 cron fields"):
        QuietWindow.parse("0 2 * *", 60)
    with pytest.raises(ValueError, match="hour field"):
        CollectionConfig("words", fold_window="0 x * * *").check()
