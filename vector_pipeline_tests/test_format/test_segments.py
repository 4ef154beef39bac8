"""The pure segment model (``format/segments.py``): ``Segment``'s path, live count and dict
form, ``segments_of``, ``FoldPlan.folded``, and the masks file round trip.

Not covered here: ``plan_fold`` (the fold-policy tests own it) and opening segments with
chroma (``chroma/segments.py``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from vector_pipeline.format.segments import MASKS_FILE, FoldKind, FoldPlan, Segment, read_masks, write_masks
from vector_pipeline.format.version_manifest import SNAPSHOT_FORMAT, VersionManifest, segments_of


def test_a_segment_lives_under_segments_and_counts_its_unmasked_records():
    segment = Segment("000004", stored=10, masked=3)
    assert segment.path == "segments/000004"
    assert segment.live == 7
    assert segment.as_dict() == {"name": "000004", "path": "segments/000004", "stored": 10, "masked": 3, "tier": 0}


def test_a_segment_round_trips_through_its_dict_and_masked_defaults_to_zero():
    assert Segment.from_dict(Segment("000004", 10, 3).as_dict()) == Segment("000004", 10, 3)
    assert Segment.from_dict({"name": "000001", "stored": "5"}) == Segment("000001", 5, 0)


def test_segments_of_reads_a_manifest_in_order_and_none_as_no_segments():
    manifest = VersionManifest.from_dict({"format": SNAPSHOT_FORMAT, "collection": "words", "version": "v", "files": [],
                                          "segments": [Segment("000001", 5).as_dict(), Segment("000003", 2, 1).as_dict()]})
    assert segments_of(manifest) == [Segment("000001", 5), Segment("000003", 2, 1)]
    assert segments_of(None) == [] == segments_of(VersionManifest(SNAPSHOT_FORMAT, "words", "v"))


def test_a_plan_folds_the_segment_it_copies_and_those_it_reads():
    base, a, b = Segment("000001", 5), Segment("000002", 1), Segment("000003", 1)
    assert FoldPlan(FoldKind.FOLD_RECENT, (base,), a, (b,)).folded == {"000002", "000003"}
    assert FoldPlan(FoldKind.APPEND, (base, a, b), None, ()).folded == set()


def test_without_a_masks_file_nothing_is_masked(tmp_path):
    assert read_masks(tmp_path) == {}


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(st.sampled_from(["000001", "000002", "000003"]), st.sets(st.text(max_size=8), max_size=5)))
def test_masks_round_trip_and_empty_masks_are_not_written(masks):
    with tempfile.TemporaryDirectory() as scratch:
        write_masks(Path(scratch), masks)
        assert (Path(scratch) / MASKS_FILE).exists()
        assert read_masks(Path(scratch)) == {name: ids for name, ids in masks.items() if ids}
