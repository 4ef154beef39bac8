"""The merge state as a log of parts (``format/merge_state.py``): ``winner``, ``copy``,
``apply``'s replay rules, the serialisation round trip, ``change_of`` and ``next_log``
(append, fold, consolidation past ``MAX_STATE_PARTS``) such that replaying a version's parts
gives the state its merge left, finding a version's parts in its manifest, and the replay cache.

Not covered here: reading parts from a bucket (``table/snapshot_store.py``)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vector_pipeline.format import merge_state as ms
from vector_pipeline.format.merge import net_effect, relocate
from vector_pipeline.format.merge_state import MergeState, change_of, next_log, part_path, replay
from vector_pipeline.format.manifest import FileEntry
from vector_pipeline.format.segments import FoldKind, FoldPlan, Segment
from vector_pipeline.format.version_manifest import SNAPSHOT_FORMAT, VersionManifest

from .deltas import delta_ids, loaded

A, B, C = delta_ids(3)
UNIVERSE = ["v", "w", "x", "y", "z"]


def test_the_winner_is_the_later_of_an_ids_upsert_and_delete():
    state = MergeState(upsert_winner={"x": A, "y": C}, delete_winner={"x": B, "y": A})
    assert (state.winner("x"), state.winner("y"), state.winner("none")) == (B, C, "")


def test_a_copy_shares_nothing_with_its_original():
    state = MergeState({A}, {"x": A}, {"y": A}, {"x": "000001"})
    copy = state.copy()
    copy.applied_delta_ids.add(B)
    copy.upsert_winner["z"] = B
    copy.delete_winner["w"] = B
    copy.location["z"] = "000002"
    assert state == MergeState({A}, {"x": A}, {"y": A}, {"x": "000001"})


def test_applying_a_part_lets_an_upsert_replace_a_delete_and_a_delete_drop_an_upsert_and_its_place():
    state = MergeState({A}, upsert_winner={"x": A}, delete_winner={"y": A}, location={"x": "000001"})
    state.apply(MergeState({B}, upsert_winner={"y": B}, delete_winner={"x": B}, location={"y": "000002"}))
    assert state == MergeState({A, B}, upsert_winner={"y": B}, delete_winner={"x": B}, location={"y": "000002"})


def test_applying_a_part_that_only_moves_ids_keeps_their_winners():
    state = MergeState({A}, upsert_winner={"x": A}, location={"x": "000001"})
    state.apply(MergeState(location={"x": "000002"}))
    assert state == MergeState({A}, upsert_winner={"x": A}, location={"x": "000002"})


states = st.builds(
    MergeState,
    applied_delta_ids=st.sets(st.sampled_from(delta_ids(4)), max_size=4),
    upsert_winner=st.dictionaries(st.text(max_size=6), st.sampled_from(delta_ids(4)), max_size=6),
    delete_winner=st.dictionaries(st.text(max_size=6), st.sampled_from(delta_ids(4)), max_size=6),
    location=st.dictionaries(st.text(max_size=6), st.sampled_from(["000001", "000002"]), max_size=6),
)


@settings(max_examples=60, deadline=None)
@given(states)
def test_a_state_round_trips_through_its_bytes(state):
    assert MergeState.from_bytes(state.to_bytes()) == state


@st.composite
def compactions(draw):
    """Batches of deltas, in order, each with the fold its compaction makes."""
    ids = delta_ids(draw(st.integers(1, 8)))
    subsets = st.lists(st.sampled_from(UNIVERSE), unique=True, max_size=4)
    deltas = [loaded(d, draw(subsets), draw(subsets)) for d in ids]
    cuts = sorted(set(draw(st.lists(st.integers(1, len(ids)), max_size=5))))
    batches = [deltas[i:j] for i, j in zip([0, *cuts], [*cuts, len(ids)]) if deltas[i:j]]
    return [(batch, draw(st.sampled_from(list(FoldKind)))) for batch in batches]


def compact(number, batch, kind, state, segments):
    """One compaction as the version writer makes it, with its segment counts taken from the
    merge state's own bookkeeping; returns the new segments, the part ``change_of`` writes."""
    name = f"{number:06d}"
    effect = net_effect(batch, state)
    if kind is FoldKind.FOLD_ALL and segments:
        plan = FoldPlan(kind, (), segments[0], tuple(segments[1:]))
    elif kind is FoldKind.FOLD_RECENT and len(segments) >= 2:
        plan = FoldPlan(kind, (segments[0],), segments[1], tuple(segments[2:]))
    else:
        plan = FoldPlan(FoldKind.APPEND, tuple(segments), None, ())
    carried = {i for i, where in state.location.items() if where in plan.folded and i not in effect.deletes}
    stored = len(carried | set(effect.upserts))
    new_segment = Segment(name, stored) if stored else None
    moved = relocate(state, plan, new_segment, effect)
    state.applied_delta_ids.update(d.ref.delta_id for d in batch)
    change = change_of(state, [d.ref.delta_id for d in batch], effect.touched, moved)
    return [*plan.keep, *([new_segment] if new_segment else [])], change, plan.kind


@settings(max_examples=60, deadline=None)
@given(compactions())
def test_replaying_a_versions_parts_gives_the_state_its_merge_left(history):
    stored: dict[str, bytes] = {}
    parts: list[str] = []
    state, segments = MergeState(), []
    for number, (batch, kind) in enumerate(history, start=1):
        segments, change, made = compact(number, batch, kind, state, segments)
        own = part_path(f"{number:06d}-abcdef")
        parts, body = next_log(parts, own, state, change, made is FoldKind.FOLD_ALL, made is FoldKind.FOLD_RECENT,
                               stored.__getitem__)
        stored[own] = body
        assert parts[-1] == own
        assert replay([stored[p] for p in parts]) == state


def test_past_max_state_parts_the_parts_after_the_first_are_consolidated():
    parts = [part_path(f"{n:06d}-x") for n in range(1, ms.MAX_STATE_PARTS + 1)]
    stored = {parts[0]: MergeState({A}, {"x": A}, {}, {"x": "000001"}).to_bytes()}
    for n, path in enumerate(parts[1:], start=2):
        stored[path] = MergeState(upsert_winner={f"id{n}": B}, location={f"id{n}": f"{n:06d}"}).to_bytes()
    change = MergeState({C}, delete_winner={"x": C})
    read: list[str] = []
    log, body = next_log(parts, "state/000099.json.gz", MergeState(), change, False, False,
                         lambda path: read.append(path) or stored[path])
    assert log == [parts[0], "state/000099.json.gz"]
    assert read == parts[1:]  # the first part is reused by reference, never read
    stored["state/000099.json.gz"] = body
    assert replay([stored[p] for p in log]) == replay([*(stored[p] for p in parts), change.to_bytes()])


def test_below_max_state_parts_an_append_adds_one_part_and_reads_none():
    change = MergeState({B}, upsert_winner={"y": B})
    log, body = next_log(["state/000001.json.gz"], "state/000002.json.gz", MergeState(), change, False, False,
                         lambda path: pytest.fail(f"read {path}"))
    assert log == ["state/000001.json.gz", "state/000002.json.gz"]
    assert MergeState.from_bytes(body) == change


@pytest.mark.parametrize("base_parts", [[], ["state/000001.json.gz"]])
def test_a_first_version_or_a_fold_of_everything_writes_the_whole_state_as_one_part(base_parts):
    state = MergeState({A, B}, {"x": B}, {"y": A}, {"x": "000002"})
    log, body = next_log(base_parts, "state/000002.json.gz", state, MergeState({B}), True, False,
                         lambda path: pytest.fail(f"read {path}"))
    assert log == ["state/000002.json.gz"]
    assert MergeState.from_bytes(body) == state


def test_change_of_holds_only_the_ids_a_merge_touched_or_moved():
    state = MergeState({A, B}, upsert_winner={"up": B, "moved": A, "other": A}, delete_winner={"del": B},
                       location={"up": "000002", "moved": "000002", "other": "000001"})
    part = change_of(state, [B], ["up", "del"], ["moved"])
    assert part == MergeState({B}, upsert_winner={"up": B}, delete_winner={"del": B},
                              location={"up": "000002", "moved": "000002"})


def test_part_path_is_named_for_the_version_number():
    assert part_path("000012-9f8e7d") == "state/000012.json.gz"


def entry(path):
    return FileEntry(path, 1, path.upper())


def manifest_of(version_name, files, state_parts=None):
    return VersionManifest(SNAPSHOT_FORMAT, "docs", version_name, files=tuple(files),
                           state_parts=None if state_parts is None else tuple(state_parts))


def test_a_versions_parts_are_read_from_its_manifest_in_order():
    manifest = manifest_of("000003-x", [entry("state/000003.json.gz"), entry("segments/000001/x"),
                                        entry("state/000001.json.gz")], ["state/000001.json.gz", "state/000003.json.gz"])
    assert ms.state_part_paths(manifest) == ["state/000001.json.gz", "state/000003.json.gz"]
    assert ms.state_part_entries(manifest) == [entry("state/000001.json.gz"), entry("state/000003.json.gz")]
    assert ms.state_part_paths(manifest_of("v", [entry(ms.STATE_FILE)])) == [ms.STATE_FILE]  # before parts existed
    assert ms.state_part_paths(manifest_of("v", [])) == [] == ms.state_part_paths(None) == ms.state_part_entries(None)


def test_a_part_the_manifest_does_not_carry_is_named_in_the_error():
    manifest = manifest_of("000003-x", [], ["state/000002.json.gz"])
    with pytest.raises(ValueError, match="version 000003-x: state part 'state/000002.json.gz' is not among its files"):
        ms.state_part_entries(manifest)


@pytest.fixture
def empty_cache():
    ms.STATE_CACHE.clear()
    yield ms.STATE_CACHE
    ms.STATE_CACHE.clear()


def version(n):
    return manifest_of(f"{n:06d}-x", [entry(part_path(f"{n:06d}"))], [part_path(f"{n:06d}")])


def test_a_versions_state_is_replayed_once_then_served_from_the_cache(empty_cache):
    body = MergeState({A}, {"x": A}).to_bytes()
    reads = []
    first = ms.load_state("bucket", "docs", version(1), lambda e: reads.append(e.path) or body)
    again = ms.load_state("bucket", "docs", version(1), lambda e: reads.append(e.path) or body)
    assert first is again and first == MergeState({A}, {"x": A})
    assert reads == [part_path("000001")]
    ms.load_state("other-bucket", "docs", version(1), lambda e: reads.append(e.path) or body)
    assert len(reads) == 2  # another bucket is another key


def test_the_cache_keeps_the_newest_state_per_collection_for_the_last_collections_used(empty_cache):
    body = MergeState({A}).to_bytes()
    ms.load_state("b", "docs", version(1), lambda e: body)
    ms.load_state("b", "docs", version(2), lambda e: body)
    assert empty_cache.get(ms.state_key("b", "docs", version(1))) is None  # replaced by the newer one
    for n in range(empty_cache.collections):
        ms.load_state("b", f"col{n}", version(1), lambda e: body)
    assert empty_cache.get(ms.state_key("b", "docs", version(2))) is None  # least recently used, evicted
    assert empty_cache.get(ms.state_key("b", "col0", version(1))) is not None


def test_a_remembered_state_is_served_without_reading_its_parts(empty_cache):
    state = MergeState({B}, {"y": B})
    ms.remember_state("b", "docs", version(2), state)
    assert ms.load_state("b", "docs", version(2), lambda e: pytest.fail("read a remembered state")) is state
