"""The base fold off the lock, rebased onto what was appended meanwhile: the pure rebase
(masks and merge state from the current version's state, no chroma rewrite), appends that
publish while a fold process is stopped after writing its base (so they run during the fold,
by construction, not by timing), readers that then see exactly the sequential model, and a
fold that gives way to a version not descending from its own. Crashes at each rebase step
are in the reliability suite's crash matrix. Not covered: timing (the benchmarks)."""

from __future__ import annotations

import os
import signal

import numpy as np

from vector_pipeline import ChromaCompactor, open_snapshot, produce_embedding_delta
from vector_pipeline.compaction.base_fold import FoldOutcome, fold_base
from vector_pipeline.compaction.maintenance import rollback
from vector_pipeline.config import Settings
from vector_pipeline.format.merge_state import MergeState
from vector_pipeline.format.rebase import changed_since, rebase
from vector_pipeline.format.segments import Segment
from vector_pipeline.read.reader import close_readers
from vector_pipeline.table.snapshot_store import SnapshotStore

from ..helpers import vectors
from ..test_reliability.helpers import (assert_each_delta_applied_once, assert_pointer_names_a_complete_version,
                                       assert_state_parts_locate_the_live_ids, start_fold, wait_until_stopped)

POLICY = {"segment_max_count": 5, "segment_fan_in": 2}  # tier merges happen during the fold too


def test_rebase_masks_what_later_segments_replaced_and_replays_to_the_current_state() -> None:
    # V0: base "b" (x, y, z), recent "r" (w). The fold wrote "F" holding x, y, z, w.
    fold_state = MergeState({"d1", "d2"}, {"x": "d1", "y": "d1", "z": "d1", "w": "d2"}, {},
                            {"x": "F", "y": "F", "z": "F", "w": "F"})
    # Since: d3 replaced y (segment "s3"), d4 deleted z; "r" is still there.
    current = MergeState({"d1", "d2", "d3", "d4"}, {"x": "d1", "y": "d3", "w": "d2"}, {"z": "d4"},
                         {"x": "b", "y": "s3", "w": "r"})
    rebased = rebase(Segment("F", 4), {"b", "r"}, fold_state,
                     [Segment("b", 3, 2), Segment("r", 1), Segment("s3", 1, tier=0)],
                     {"b": {"y", "z"}}, current)
    assert [(s.name, s.stored, s.masked) for s in rebased.segments] == [("F", 4, 2), ("s3", 1, 0)]
    assert rebased.masks == {"F": {"y", "z"}, "s3": set()}
    assert rebased.state.location == {"x": "F", "y": "s3", "w": "F"}
    assert fold_state.copy().apply(rebased.change) == rebased.state
    assert changed_since(rebased.state, rebased.state) == MergeState()


def test_a_tier_merge_rebases_into_the_place_of_the_segments_it_merged() -> None:
    # V0: base "b" (x), tier-0 "r1" (y), "r2" (z). The merge wrote "T" (tier 1) holding y, z.
    fold_state = MergeState({"d1", "d2", "d3"}, {"x": "d1", "y": "d2", "z": "d3"}, {}, {"x": "b", "y": "T", "z": "T"})
    # Since: d4 replaced z (segment "s4", appended on top); "r1", "r2" are still there.
    current = MergeState({"d1", "d2", "d3", "d4"}, {"x": "d1", "y": "d2", "z": "d4"}, {},
                         {"x": "b", "y": "r1", "z": "s4"})
    rebased = rebase(Segment("T", 2, tier=1), {"r1", "r2"}, fold_state,
                     [Segment("b", 1), Segment("r1", 1), Segment("r2", 1, 1), Segment("s4", 1)],
                     {"r2": {"z"}}, current)
    assert [(s.name, s.stored, s.masked, s.tier) for s in rebased.segments] == [
        ("b", 1, 0, 0), ("T", 2, 1, 1), ("s4", 1, 0, 0)]
    assert rebased.masks == {"b": set(), "T": {"z"}, "s4": set()}
    assert rebased.state.location == {"x": "b", "y": "T", "z": "s4"}
    assert fold_state.copy().apply(rebased.change) == rebased.state


def _produce(settings: Settings, rng: np.random.Generator, ids: list[str], tag: str,
             deletes: list[str] | None = None) -> str:
    return produce_embedding_delta(ids, vectors(rng, len(ids)), documents=[f"{i}:{tag}" for i in ids],
                                   delete_ids=deletes, settings=settings, notify=False)["delta_key"]


def _documents(settings: Settings) -> dict[str, str]:
    close_readers()
    got = open_snapshot(settings=settings).get_vectors("words", include=["documents"])
    return dict(zip(got["ids"], got["documents"]))


def _seed(settings: Settings, rng: np.random.Generator, model: dict[str, str]) -> list[str]:
    compactor = ChromaCompactor(settings=settings)
    keys = [_produce(settings, rng, [f"b{i}" for i in range(40)], "base"), _produce(settings, rng, ["b1", "n0"], "r")]
    for key in keys:
        assert compactor.compact_deltas([key], "words").status == "ok"
    model.update({f"b{i}": f"b{i}:base" for i in range(40)}, b1="b1:r", n0="n0:r")
    return keys


def test_appends_publish_while_a_fold_runs_and_the_rebased_version_holds_exactly_the_model(
        settings: Settings, rng: np.random.Generator) -> None:
    settings = settings.with_overrides(**POLICY)
    model: dict[str, str] = {}
    keys = _seed(settings, rng, model)
    store = SnapshotStore(settings)
    fold = start_fold(settings, VECTOR_PIPELINE_FAULT="pause:fold_written")
    wait_until_stopped(fold)  # the new base is written; the fold holds no lock
    folded_from = store.read_pointer("words").version
    compactor = ChromaCompactor(settings=settings)
    appended = []
    for number, (upserts, deletes) in enumerate([(["b2", "n1"], ["b3"]), (["n0", "n2"], []), (["b4"], ["n1"]),
                                                 (["n3", "b1"], ["b5"])]):
        keys.append(_produce(settings, rng, upserts, f"a{number}", deletes))
        result = compactor.compact_deltas([keys[-1]], "words")
        assert result.status == "ok", result.error  # the fold does not stall the append
        appended.append(result.version)
        model.update({i: f"{i}:a{number}" for i in upserts})
        for record_id in deletes:
            model.pop(record_id, None)
    assert any(store.read_manifest("words", v).fold == "fold_recent" for v in appended)  # a tier merge too
    os.kill(fold.pid, signal.SIGCONT)
    _, stderr = fold.communicate(timeout=120)
    assert fold.returncode == 0, stderr[-2000:]
    pointer = store.read_pointer("words")
    manifest = store.read_manifest("words", pointer.version)
    assert manifest.parent_version == appended[-1] and manifest.rebased_fold > folded_from
    assert manifest.segments[0].name.startswith("fold-") and manifest.applied_delta_ids == ()
    assert_pointer_names_a_complete_version(settings)
    assert _documents(settings) == model and manifest.vector_count == len(model)
    delta_ids = {k.split("/")[2] for k in keys}
    assert_state_parts_locate_the_live_ids(settings, set(model), delta_ids)
    keys.append(_produce(settings, rng, ["b6", "n4"], "after", ["b2"]))  # appends go on on top of the fold
    assert ChromaCompactor(settings=settings).compact_deltas([keys[-1]], "words").status == "ok"
    model.update({"b6": "b6:after", "n4": "n4:after"})
    model.pop("b2")
    assert _documents(settings) == model
    assert_each_delta_applied_once(settings, delta_ids | {keys[-1].split("/")[2]})


def test_a_fold_gives_way_to_a_version_that_does_not_descend_from_its_own(
        settings: Settings, rng: np.random.Generator) -> None:
    settings = settings.with_overrides(**POLICY)
    model: dict[str, str] = {}
    _seed(settings, rng, model)
    store = SnapshotStore(settings)
    first = store.read_pointer("words").version
    fold = start_fold(settings, VECTOR_PIPELINE_FAULT="pause:fold_written")
    wait_until_stopped(fold)
    other = fold_base(settings, "words")  # another fold, to completion, replaces the base
    assert other.outcome is FoldOutcome.PUBLISHED
    os.kill(fold.pid, signal.SIGCONT)
    _, stderr = fold.communicate(timeout=120)
    assert fold.returncode == 0 and "gave way" in stderr, stderr[-2000:]
    assert store.read_pointer("words").version == other.result.version
    assert _documents(settings) == model
    rollback(settings, "words", first)  # a rollback: the next fold starts from it and publishes
    assert fold_base(settings, "words").outcome is FoldOutcome.PUBLISHED and _documents(settings) == model


def test_a_tier_merge_off_the_lock_lets_appends_publish_and_rebases_onto_them(
        settings: Settings, rng: np.random.Generator) -> None:
    """The loop's appends merge no tier; ``fold --tiers`` merges the full tier 0 while appends
    publish (it is stopped after writing its segment), then takes the merged segments' place
    under the appends: the version holds exactly the model."""
    settings = settings.with_overrides(segment_max_count=10, segment_fan_in=2)
    model: dict[str, str] = {}
    keys = _seed(settings, rng, model)  # base + one tier-0 segment
    appender = ChromaCompactor(settings=settings, background_tiers=True)
    keys.append(_produce(settings, rng, ["b7", "n5"], "t"))
    assert appender.compact_deltas([keys[-1]], "words").fold == "append"  # tier 0 at the fan-in: not merged here
    model.update(b7="b7:t", n5="n5:t")
    store = SnapshotStore(settings)
    merged_from = store.read_manifest("words", store.read_pointer("words").version)
    tier0 = {s.name for s in merged_from.segments[1:]}
    fold = start_fold(settings, tiers=True, VECTOR_PIPELINE_FAULT="pause:fold_written")
    wait_until_stopped(fold)
    for number, (upserts, deletes) in enumerate([(["n0", "n6"], ["b8"]), (["b7"], ["n5"]), (["n7"], [])]):
        keys.append(_produce(settings, rng, upserts, f"a{number}", deletes))
        result = appender.compact_deltas([keys[-1]], "words")
        assert result.status == "ok" and result.fold == "append", result.error
        model.update({i: f"{i}:a{number}" for i in upserts})
        for record_id in deletes:
            model.pop(record_id, None)
    os.kill(fold.pid, signal.SIGCONT)
    _, stderr = fold.communicate(timeout=120)
    assert fold.returncode == 0, stderr[-2000:]
    manifest = store.read_manifest("words", store.read_pointer("words").version)
    assert manifest.fold == "fold_recent" and manifest.rebased_fold is not None
    names = [s.name for s in manifest.segments]
    assert names[0] == merged_from.segments[0].name and names[1].startswith("tier-") and manifest.segments[1].tier == 1
    assert not tier0 & set(names) and len(names) == 5  # base, the merged tier, the three appends
    assert _documents(settings) == model and manifest.vector_count == len(model)
    delta_ids = {k.split("/")[2] for k in keys}
    assert_state_parts_locate_the_live_ids(settings, set(model), delta_ids)
    assert_each_delta_applied_once(settings, delta_ids)
