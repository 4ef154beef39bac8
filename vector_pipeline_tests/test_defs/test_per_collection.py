"""Each collection partition of the compaction job is its own: a run audits and publishes its
own collection's candidate (with outputs kept by a filesystem IO manager, as `dagster dev`
does), and each partition's asset events carry its own collection's figures, history and trend;
a run that wrote no version records no size (a gap in Dagster's plots, never a zero)."""

import dagster as dg
import numpy as np

from vector_pipeline import produce_embedding_delta
from vector_pipeline.config import Settings
from vector_pipeline.table.snapshot_store import SnapshotStore

from vector_pipeline_tests.helpers import vectors

from .jobs import checks, compact, corrupt, produce


def test_each_collection_run_audits_its_own_candidate(settings: Settings, instance: dg.DagsterInstance,
                                                      rng: np.random.Generator, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Runs of two partitions with a filesystem IO manager, as `dagster dev` keeps outputs: each
    audit and publish sees its own collection's candidate, never the other partition's."""
    from vector_pipeline.defs import build_definitions

    defs = build_definitions(settings)
    job = defs.resolve_job_def("compaction")
    io_manager = dg.FilesystemIOManager(base_dir=str(tmp_path / "storage"))
    instance.add_dynamic_partitions("collection", ["words", "lines"])
    counts = {"words": 3, "lines": 5}
    for collection, count in counts.items():
        produce_embedding_delta([f"{collection}{i}" for i in range(count)], vectors(rng, count),
                                collection_name=collection, settings=settings)
        result = job.execute_in_process(instance=instance, partition_key=collection, raise_on_error=False,
                                        resources={"io_manager": io_manager})
        assert result.success, collection
        check = checks(result)["vector_count_matches_prior_plus_deltas"]
        assert check.passed and check.metadata["vector_count"].value == count
    store = SnapshotStore(settings)
    assert {c: store.read_pointer(c).document.vector_count for c in counts} == counts


def test_each_collections_metadata_is_its_own_and_a_run_that_wrote_nothing_records_no_size(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    """Dagster plots a partitioned asset's numbers per partition (each collection's latest event)
    or over time (all collections on one line): each partition's events carry figures of its own
    collection only, its ``history`` and ``trend`` come from that partition's events alone, and a
    run that wrote no version (nothing new, every delta quarantined) records no size: a gap in the
    plots, never a zero."""
    def lines(count: int) -> dict:
        return produce_embedding_delta([f"l{i}" for i in range(count)], vectors(rng, count), collection_name="lines",
                                       settings=settings)

    produce(settings, rng, ["a", "b", "c"])
    assert compact(defs, instance, "words").success
    lines(4)
    assert compact(defs, instance, "lines").success
    produce(settings, rng, ["d", "e"])
    assert compact(defs, instance, "words").success
    poison = lines(1)
    corrupt(settings, poison)
    assert compact(defs, instance, "lines").success  # every delta quarantined: no version
    assert compact(defs, instance, "words").success  # nothing pending: no version

    def events(asset: str, collection: str) -> list[dict]:  # the partition's own events, newest first
        records = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(asset), asset_partitions=[collection]), limit=20).records
        return [{k: v.value for k, v in r.asset_materialization.metadata.items()} for r in records]

    store = SnapshotStore(settings)
    written = {"words": [5, 3], "lines": [4]}  # vector counts of each collection's versions, newest first
    for collection, counts in written.items():
        versions = sorted(store.list_versions(collection), reverse=True)
        candidates, snapshots = events("snapshot_candidate", collection), events("snapshot", collection)
        assert len(candidates) == len(snapshots) == len(counts) + 1
        latest = candidates[0]
        assert latest["outcome"] == ("nothing new" if collection == "words" else "every delta quarantined")
        assert not {"vector_count", "bytes", "bytes_uploaded", "segments", "merge_s"} & set(latest)  # no zero size
        for event in candidates[1:]:
            assert event["outcome"] == "written" and event["bytes"] > 0 and event["version"] in versions
        for event in (candidates[0], snapshots[0]):  # the history of this collection's versions alone
            rows = [row.data for row in event["history"].records]
            assert [r["version"] for r in rows] == versions and [r["vector_count"] for r in rows] == counts
            assert event["trend"].startswith(f"last {len(counts)} version{'s' if len(counts) > 1 else ''}: vector_count ")
            assert f"{counts[-1]} → {counts[0]}" in event["trend"]
        assert snapshots[0]["published"] is False and snapshots[0]["vector_count"] == counts[0]  # unchanged
    # The partition plot: one point per collection, its latest snapshot event's figure.
    assert {c: events("snapshot", c)[0]["vector_count"] for c in written} == {"words": 5, "lines": 4}
