"""Segmented versions against the moto server: a small compaction writes one small segment
and references the base's objects; updates and deletes of base ids are masked (never
returned by a query, an exact read or a count); the segment count stays bounded, and the
recent segments fold back into the base; a version of the older one-directory format is
refused by name, and a rebuild moves off it."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import pytest

from vector_pipeline import ChromaCompactor, open_snapshot, produce_embedding_delta, query_snapshot
from vector_pipeline.config import Settings
from vector_pipeline.compaction.maintenance import collect_garbage, fold_segments, rebuild_from_archive
from vector_pipeline.read.reader import close_readers
from vector_pipeline.format.segments import tier_merge_due, FoldKind, Segment, plan_fold
from vector_pipeline.table.snapshot_store import SnapshotStore
from vector_pipeline.format.version_manifest import UnsupportedFormatError, VersionManifest, version_prefix

from vector_pipeline_tests.helpers import vectors


def _produce(settings: Settings, ids: list[str], embeddings: list[list[float]], tag: str,
             deletes: list[str] | None = None) -> str:
    return produce_embedding_delta(ids, embeddings, documents=[f"{i}{tag}" for i in ids],
                                   metadatas=[{"tag": tag} for _ in ids], delete_ids=deletes,
                                   settings=settings, notify=False)["delta_key"]


def _manifest(settings: Settings) -> VersionManifest:
    store = SnapshotStore(settings)
    return store.read_manifest("words", store.read_pointer("words").version)


def test_small_compaction_appends_a_segment_and_references_the_base(settings: Settings,
                                                                   rng: np.random.Generator) -> None:
    compactor = ChromaCompactor(settings=settings)
    base = compactor.compact_deltas([_produce(settings, [f"b{i}" for i in range(400)], vectors(rng, 400), "")], "words")
    base_manifest = _manifest(settings)
    small = compactor.compact_deltas([_produce(settings, ["n1", "n2"], vectors(rng, 2), "-new")], "words")
    manifest = _manifest(settings)
    assert small.fold == "append" and small.segments == 2 and small.vector_count == 402
    base_segment = manifest.segments[0]
    assert base_segment == base_manifest.segments[0]
    base_files = [f for f in manifest.files if f.path.startswith(base_segment.path + "/")]
    assert base_files and all(f.key.startswith(version_prefix("words", base.version)) for f in base_files)
    sent = [f for f in manifest.files if f.key.startswith(version_prefix("words", small.version))]
    assert small.bytes_uploaded == sum(f.size for f in sent)
    assert not any(f.path.startswith(base_segment.path + "/") for f in sent)


def test_replaced_and_deleted_base_vectors_are_masked_everywhere(settings: Settings,
                                                                 rng: np.random.Generator) -> None:
    ids = [f"b{i}" for i in range(300)]
    old = vectors(rng, 300)
    compactor = ChromaCompactor(settings=settings)
    compactor.compact_deltas([_produce(settings, ids, old, "-old")], "words")
    moved = vectors(rng, 2)
    result = compactor.compact_deltas([_produce(settings, ["b0", "b1"], moved, "-new", deletes=["b2"])], "words")
    assert result.fold == "append" and result.vector_count == 299
    snapshot = open_snapshot(settings=settings)
    assert snapshot.count("words") == 299
    exact = snapshot.get_vectors("words", ids=["b0", "b1", "b2", "b3"], include=["documents"])
    assert dict(zip(exact["ids"], exact["documents"])) == {"b0": "b0-new", "b1": "b1-new", "b3": "b3-old"}
    # The old embedding of b0 is its own nearest neighbour in the base: the mask must hide it.
    for probe, record_id in ((old[0], "b0"), (old[2], "b2")):
        found = query_snapshot(query_embeddings=[probe], n_results=5, settings=settings)
        assert f"{record_id}-old" not in found["documents"][0]
    found = query_snapshot(query_embeddings=[moved[0]], n_results=1, settings=settings)
    assert found["ids"][0] == ["b0"] and found["documents"][0] == ["b0-new"]
    assert len(set(snapshot.get_vectors("words", include=[])["ids"])) == 299


def test_ingest_never_rewrites_the_base_and_tiers_bound_the_segment_count(settings: Settings,
                                                                          rng: np.random.Generator) -> None:
    config = settings.with_overrides(segment_max_count=7, segment_fan_in=3)  # tiers 0, 1, 2: base + 3 × 2
    compactor = ChromaCompactor(settings=config)
    compactor.compact_deltas([_produce(config, [f"b{i}" for i in range(200)], vectors(rng, 200), "")], "words")
    base = _manifest(config).segments[0]
    folds = []
    for round_number in range(12):  # new ids each round: the old rule folded the base every other round
        ids = [f"r{round_number}-{i}" for i in range(40)] + [f"b{round_number}"]
        result = compactor.compact_deltas([_produce(config, ids, vectors(rng, 41), "-r")], "words")
        assert result.status == "ok" and result.segments <= 7
        folds.append(result.fold)
        segments = _manifest(config).segments
        assert segments[0].path == base.path and segments[0].stored == base.stored
        assert all(sum(1 for s in segments[1:] if s.tier == tier) < 3 for tier in (0, 1))
    assert "fold_all" not in folds and {"append", "fold_recent"} <= set(folds)
    assert max(s.tier for s in _manifest(config).segments) == 2
    assert open_snapshot(settings=config).count("words") == 200 + 12 * 40


def test_background_fold_leaves_one_segment_with_the_same_content(settings: Settings,
                                                                  rng: np.random.Generator) -> None:
    compactor = ChromaCompactor(settings=settings)
    compactor.compact_deltas([_produce(settings, [f"b{i}" for i in range(300)], vectors(rng, 300), "-old")], "words")
    compactor.compact_deltas([_produce(settings, ["b0", "n0"], vectors(rng, 2), "-new", deletes=["b1"])], "words")
    before = open_snapshot(settings=settings).get_vectors("words", include=["documents"])
    folded = fold_segments(settings, "words")
    assert folded.status == "ok" and folded.fold == "fold_all" and folded.segments == 1
    assert folded.deltas_processed == 0 and folded.vector_count == 300
    after = open_snapshot(settings=settings).get_vectors("words", include=["documents"])
    assert sorted(zip(after["ids"], after["documents"])) == sorted(zip(before["ids"], before["documents"]))
    assert _manifest(settings).segments[0].masked == 0
    assert fold_segments(settings, "words").status == "noop"


def test_fold_policy_merges_size_tiers_and_never_the_base() -> None:
    settings = Settings(segment_max_count=10, segment_fan_in=4)  # tiers 0..2
    base = Segment("b", 100_000)
    tier0 = [Segment(f"t0-{i}", 100) for i in range(3)]
    assert plan_fold([], 50, settings).kind is FoldKind.APPEND
    assert plan_fold([base, *tier0[:2]], 50, settings).kind is FoldKind.APPEND
    up = plan_fold([base, *tier0], 50, settings)  # the fourth tier-0 segment: one of tier 1
    assert up.kind is FoldKind.FOLD_RECENT and up.tier == 1 and up.keep == (base,)
    assert up.folded == {s.name for s in tier0}
    tier1 = [Segment(f"t1-{i}", 400, tier=1) for i in range(3)]
    cascade = plan_fold([base, *tier1, *tier0], 50, settings)  # tier 0 fills tier 1, which fills tier 2
    assert cascade.tier == 2 and cascade.keep == (base,) and len(cascade.folded) == 6
    tier2 = [Segment(f"t2-{i}", 1600, tier=2) for i in range(3)]
    waits = plan_fold([base, *tier2, *tier0[:2]], 50, settings)  # the top tier waits for the base fold
    assert waits.kind is FoldKind.APPEND
    behind = plan_fold([base, *tier2, *tier1, *tier0[:2]], 50, settings)  # 9 + 1: at the bound
    assert behind.kind is FoldKind.APPEND
    over = plan_fold([base, *tier2, *tier1, *tier0[:2], Segment("t2-x", 1600, tier=2)], 50, settings)
    assert over.kind is FoldKind.FOLD_RECENT and over.keep == (base,) and over.tier == 2  # never the base
    assert plan_fold([Segment("b", 1000, masked=900)], 20, settings).kind is FoldKind.APPEND
    assert plan_fold([base, *tier0], 50, settings, fold_all=True).kind is FoldKind.FOLD_ALL
    assert plan_fold([base, *tier0], 50, Settings(segment_max_count=1)).kind is FoldKind.FOLD_ALL  # bulk load


def test_with_background_tier_merges_an_append_merges_only_the_lowest_tiers_the_bound_needs() -> None:
    settings = Settings(segment_max_count=10, segment_fan_in=4)
    base = Segment("b", 100_000)
    tier0 = [Segment(f"t0-{i}", 100) for i in range(5)]
    tier1 = [Segment(f"t1-{i}", 400, tier=1) for i in range(3)]
    assert plan_fold([base, *tier0[:3]], 50, settings, tiers=False).kind is FoldKind.APPEND  # inline: a tier merge
    assert tier_merge_due([base, *tier0[:4]], settings) and not tier_merge_due([base, *tier0[:3]], settings)
    full = [base, *tier1, *tier0, Segment("t1-x", 400, tier=1)]  # 10 segments: one more is over the bound
    room = plan_fold(full, 50, settings, tiers=False)
    assert room.kind is FoldKind.FOLD_RECENT and room.keep == (base, *tier1, full[-1])  # tier 0 only, never tier 1
    assert room.folded == {s.name for s in tier0} and room.tier == 1
    assert len(room.keep) + 1 <= settings.segment_max_count


def test_a_version_of_an_older_format_is_refused_by_name_and_a_rebuild_moves_off_it(
        settings: Settings, rng: np.random.Generator) -> None:
    compactor = ChromaCompactor(settings=settings)
    compactor.compact_deltas([_produce(settings, ["a", "b"], vectors(rng, 2), "")], "words")
    store = SnapshotStore(settings)
    pointer = store.read_pointer("words")
    old = {**_manifest(settings).to_dict(), "format": "vector_pipeline.snapshot/1"}
    key = version_prefix("words", pointer.version) + "manifest.json"
    store.s3.put_object(Bucket=store.bucket, Key=key, Body=json.dumps(old).encode())
    close_readers()
    with pytest.raises(UnsupportedFormatError, match="rebuild"):
        open_snapshot(settings=settings)
    refused = compactor.compact_deltas([_produce(settings, ["c"], vectors(rng, 1), "")], "words")
    assert refused.status == "failed" and "snapshot/1" in refused.error
    rebuilt = rebuild_from_archive(settings, "words")
    assert rebuilt.status == "ok" and rebuilt.vector_count == 2
    close_readers()
    assert open_snapshot(settings=settings).count("words") == 2
    report = collect_garbage(settings, "words", retain_versions=0, grace=timedelta(0))
    assert report.deleted_versions == [pointer.version] and report.kept_versions == [rebuilt.version]
