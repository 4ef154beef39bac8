"""The pure merge (``format/merge.py``): last-writer-wins by ``delta_id`` whatever the order
the deltas arrive in (in one batch or across batches), a delete beating its own delta's
upsert, an applied delta changing nothing, and the bookkeeping the version writer relies on
(``expected_vector_count``, ``masks_after``, ``relocate``, ``doomed_in_copied_segment``,
``live_ids_carried_from``, ``upsert_rows``) on small hand-made cases.

Not covered here: which fold a compaction chooses (``plan_fold``: the fold-policy tests own
it) and writing segments with chroma (``compaction/version_writer.py``)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vector_pipeline.format.merge import (NetEffect, doomed_in_copied_segment, expected_vector_count,
                                          live_ids_carried_from, masks_after, net_effect, relocate, upsert_rows)
from vector_pipeline.format.merge_state import MergeState
from vector_pipeline.format.segments import FoldKind, FoldPlan, Segment

from .deltas import delta_ids, loaded

A, B, C = delta_ids(3)
UNIVERSE = ["w", "x", "y", "z"]


def test_the_later_delta_wins_an_id_both_upsert():
    older, newer = loaded(A, ["x"]), loaded(B, ["x"])
    effect = net_effect([older, newer], MergeState())
    assert effect.upserts == {"x": (newer, 0)}


def test_a_later_delete_removes_an_earlier_upsert_and_a_later_upsert_revives_a_deleted_id():
    effect = net_effect([loaded(A, ["x", "y"]), loaded(B, deletes=["x", "y"]), loaded(C, ["y"])], MergeState())
    assert effect.deletes == {"x"}
    assert effect.upserts["y"][0].ref.delta_id == C
    assert sorted(effect.touched) == ["x", "y"]


def test_a_delete_beats_its_own_deltas_upsert():
    state = MergeState()
    effect = net_effect([loaded(A, ["x", "y"], deletes=["x"])], state)
    assert effect.deletes == {"x"}
    assert list(effect.upserts) == ["y"]
    assert state.delete_winner == {"x": A} and state.upsert_winner == {"y": A}


def test_a_late_delta_cannot_overwrite_a_newer_one_applied_before_it():
    state = MergeState()
    net_effect([loaded(B, ["x"], deletes=["y"])], state)
    late = net_effect([loaded(A, ["x", "y", "z"], deletes=["x"])], state)
    assert list(late.upserts) == ["z"] and late.deletes == set()
    assert state.winner("x") == B and state.delete_winner["y"] == B


def test_a_delta_the_state_lists_as_applied_changes_nothing():
    state = MergeState()
    delta = loaded(A, ["x"], deletes=["y"])
    net_effect([delta], state)
    state.applied_delta_ids.add(A)
    before = state.copy()
    again = net_effect([delta], state)
    assert again.upserts == {} and again.deletes == set()
    assert state == before


@st.composite
def histories(draw):
    """Deltas over a few ids, the order they arrive in and how arrival splits into batches."""
    ids = delta_ids(draw(st.integers(1, 6)))
    subsets = st.lists(st.sampled_from(UNIVERSE), unique=True, max_size=4)
    deltas = [loaded(d, draw(subsets), draw(subsets)) for d in ids]
    arrival = draw(st.permutations(deltas))
    cuts = sorted(set(draw(st.lists(st.integers(0, len(ids)), max_size=3))))
    batches = [arrival[i:j] for i, j in zip([0, *cuts], [*cuts, len(ids)]) if arrival[i:j]]
    return deltas, batches


def last_writer(deltas, record_id):
    """The model: the greatest delta_id touching the id decides; a delete beats its own upsert."""
    touching = [d for d in deltas if record_id in d.ids or record_id in d.delete_ids]
    if not touching:
        return None
    winner = max(touching, key=lambda d: d.ref.delta_id)
    return ("delete" if record_id in winner.delete_ids else "upsert"), winner.ref.delta_id


@settings(max_examples=80, deadline=None)
@given(histories())
def test_the_greatest_delta_id_wins_every_id_whatever_the_arrival_order(history):
    deltas, batches = history
    state = MergeState()
    for batch in batches:  # each batch as a compaction sees it: sorted, as the intake lists
        net_effect(sorted(batch, key=lambda d: d.ref.delta_id), state)
    for record_id in UNIVERSE:
        expected = last_writer(deltas, record_id)
        if expected is None:
            assert state.winner(record_id) == ""
        elif expected[0] == "upsert":
            assert state.upsert_winner.get(record_id) == expected[1] and record_id not in state.delete_winner
        else:
            assert state.delete_winner.get(record_id) == expected[1] and record_id not in state.upsert_winner


@settings(max_examples=80, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_one_batch_in_any_order_has_the_effect_of_the_sorted_batch(history, random):
    deltas, _ = history
    shuffled = list(deltas)
    random.shuffle(shuffled)
    effect = net_effect(shuffled, MergeState())
    for record_id in UNIVERSE:
        expected = last_writer(deltas, record_id)
        if expected is None:
            assert record_id not in effect.touched
        elif expected[0] == "upsert":
            assert effect.upserts[record_id][0].ref.delta_id == expected[1] and record_id not in effect.deletes
        else:
            assert record_id in effect.deletes and record_id not in effect.upserts


def effect_of(upserts=(), deletes=()):
    delta = loaded(A, list(upserts))
    return NetEffect({i: (delta, n) for n, i in enumerate(upserts)}, set(deletes))


def test_expected_vector_count_adds_new_ids_and_subtracts_deleted_live_ids():
    state = MergeState(location={"live1": "000001", "live2": "000001"})
    effect = effect_of(upserts=["live1", "new"], deletes=["live2", "never-existed"])
    assert expected_vector_count(10, effect, state) == 10 + 1 - 1


BASE, RECENT, OTHER = Segment("000001", 5), Segment("000002", 2), Segment("000003", 1)


def test_masks_after_masks_the_older_copy_of_each_replaced_or_deleted_id_where_it_stays():
    plan = FoldPlan(FoldKind.APPEND, (BASE, RECENT), None, ())
    state = MergeState(location={"a": BASE.name, "b": RECENT.name, "c": BASE.name})
    masks = {BASE.name: {"old"}}
    kept = masks_after(plan, masks, effect_of(upserts=["a"], deletes=["b", "gone"]), state)
    assert kept == {BASE.name: {"old", "a"}, RECENT.name: {"b"}}
    assert masks == {BASE.name: {"old"}}  # the parent's masks are not changed in place


def test_masks_after_drops_the_masks_of_folded_segments():
    plan = FoldPlan(FoldKind.FOLD_RECENT, (BASE,), RECENT, (OTHER,))
    state = MergeState(location={"a": RECENT.name, "b": BASE.name})
    kept = masks_after(plan, {RECENT.name: {"m"}, OTHER.name: {"n"}}, effect_of(deletes=["a", "b"]), state)
    assert kept == {BASE.name: {"b"}}


def test_relocate_on_append_places_upserts_in_the_new_segment_and_forgets_deletes():
    plan = FoldPlan(FoldKind.APPEND, (BASE,), None, ())
    state = MergeState(location={"a": BASE.name, "b": BASE.name})
    moved = relocate(state, plan, Segment("000004", 2), effect_of(upserts=["a", "new"], deletes=["b"]))
    assert moved == []
    assert state.location == {"a": "000004", "new": "000004"}


def test_relocate_on_a_fold_moves_every_id_of_the_folded_segments():
    plan = FoldPlan(FoldKind.FOLD_RECENT, (BASE,), RECENT, (OTHER,))
    state = MergeState(location={"base": BASE.name, "r": RECENT.name, "o": OTHER.name, "gone": OTHER.name})
    moved = relocate(state, plan, Segment("000004", 3), effect_of(upserts=["new"], deletes=["gone"]))
    assert sorted(moved) == ["o", "r"]
    assert state.location == {"base": BASE.name, "r": "000004", "o": "000004", "new": "000004"}


def test_relocate_without_a_new_segment_only_forgets_deletes():
    state = MergeState(location={"a": BASE.name, "b": BASE.name})
    assert relocate(state, FoldPlan(FoldKind.APPEND, (BASE,), None, ()), None, effect_of(deletes=["a"])) == []
    assert state.location == {"b": BASE.name}


def test_relocate_refuses_a_segment_whose_count_the_state_does_not_predict():
    state = MergeState()
    with pytest.raises(RuntimeError, match="segment 000004 holds 3 records, the merge state places 1 there"):
        relocate(state, FoldPlan(FoldKind.APPEND, (), None, ()), Segment("000004", 3), effect_of(upserts=["a"]))


def test_the_copied_segment_loses_its_masked_and_deleted_ids_but_not_ids_upserted_again():
    plan = FoldPlan(FoldKind.FOLD_ALL, (), BASE, (RECENT,))
    state = MergeState(location={"del": BASE.name, "elsewhere": RECENT.name, "again": BASE.name})
    masks = {BASE.name: {"masked", "again"}, RECENT.name: {"r"}}
    effect = effect_of(upserts=["again"], deletes=["del", "elsewhere"])
    assert doomed_in_copied_segment(plan, masks, effect, state) == {"masked", "del"}
    assert doomed_in_copied_segment(FoldPlan(FoldKind.APPEND, (BASE,), None, ()), masks, effect, state) == set()


def test_live_ids_carried_from_a_folded_segment_exclude_those_this_merge_replaces():
    state = MergeState(location={"keep": RECENT.name, "up": RECENT.name, "del": RECENT.name, "b": BASE.name})
    assert live_ids_carried_from(state, RECENT, effect_of(upserts=["up"], deletes=["del"])) == ["keep"]


def test_upsert_rows_are_the_winning_rows_in_chroma_form():
    older, newer = loaded(A, ["x", "y"], dimension=3), loaded(B, ["z", "x"], dimension=3)
    rows = upsert_rows(net_effect([older, newer], MergeState()))
    assert rows["ids"] == ["x", "y", "z"]
    assert rows["embeddings"].dtype == np.float32
    np.testing.assert_array_equal(rows["embeddings"], [newer.embeddings[1], older.embeddings[1], newer.embeddings[0]])
    assert rows["documents"] == [f"{B}:x", f"{A}:y", f"{B}:z"]
    assert rows["metadatas"] == [{"delta": B, "id": "x"}, {"delta": A, "id": "y"}, {"delta": B, "id": "z"}]
