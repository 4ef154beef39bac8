"""The writer jobs (compaction: write → partitioned checks, the blocking one gating → publish;
rebuild, fold, rollback, GC; each under the collection's writer tag) and the upkeep jobs (old
runs, the per-delta layout's leftovers), executed in process against the moto server."""

import json
from datetime import datetime, timedelta, timezone

import dagster as dg
import numpy as np
import pytest
from dagster._core.utils import make_new_run_id

from vector_pipeline import ChromaCompactor, open_snapshot, produce_embedding_delta
from vector_pipeline.io.aws import client
from vector_pipeline.config import Settings
from vector_pipeline.defs.jobs import compaction_run_config, prune_runs
from vector_pipeline.format.keys import new_delta_id
from vector_pipeline.read.reader import close_readers
from vector_pipeline.table.snapshot_store import SnapshotStore

from vector_pipeline_tests.helpers import all_keys, vectors

from .jobs import checks, compact, corrupt, produce, run_job


def _content(settings: Settings) -> dict:
    close_readers()
    got = open_snapshot(settings=settings).get_vectors("words", include=["embeddings", "documents", "metadatas"])
    return {i: (tuple(np.round(e, 6)), d, tuple(sorted((m or {}).items())))
            for i, e, d, m in zip(got["ids"], got["embeddings"], got["documents"], got["metadatas"])}


def test_invalid_delta_is_quarantined_once_by_the_intake_and_warned_by_its_collections_check(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    good = produce(settings, rng, ["a", "b"])
    bad = produce(settings, rng, ["c"])
    corrupt(settings, bad)
    result = compact(defs, instance)
    assert result.success  # the valid delta is published; the poison one does not block it
    evaluations = checks(result)
    valid = evaluations["deltas_valid"]
    assert not valid.passed and valid.severity == dg.AssetCheckSeverity.WARN and valid.partition == "words"
    assert "checksum" in json.dumps(valid.metadata["reasons"].value)
    assert evaluations["vector_count_matches_prior_plus_deltas"].passed
    assert SnapshotStore(settings).read_pointer("words").document.vector_count == 2
    assert all_keys(settings, bad["delta_key"]) == [] and all_keys(settings, good["delta_key"]) == []
    assert any(k.endswith("reason.json") for k in all_keys(settings, f"quarantine/words/{bad['delta_id']}/"))


def test_compaction_job_publishes_after_the_check_passes(defs: dg.Definitions, instance: dg.DagsterInstance,
                                                         settings: Settings, rng: np.random.Generator) -> None:
    for start in (0, 5):
        produce(settings, rng, [f"id{i}" for i in range(start, start + 5)])
    result = compact(defs, instance)
    assert result.success
    assert result.dagster_run.tags["vector_pipeline/writer"] == "words"  # the one writer key
    evaluations = checks(result)
    check = evaluations["vector_count_matches_prior_plus_deltas"]
    assert check.passed and check.metadata["vector_count"].value == 10 and check.partition == "words"
    assert evaluations["deltas_valid"].passed and evaluations["deltas_valid"].partition == "words"
    pointer = SnapshotStore(settings).read_pointer("words")
    assert pointer is not None and pointer.document.vector_count == 10
    [published] = result.asset_materializations_for_node("snapshot")
    assert published.metadata["version"].value == pointer.version
    assert published.metadata["deltas_archived"].value == 2
    assert all_keys(settings, "delta/") == []
    assert len({k.split("/")[2] for k in all_keys(settings, "archive/words/")}) == 2
    [candidate] = result.asset_materializations_for_node("snapshot_candidate")
    for name in ("version", "vector_count", "bytes", "deltas_applied", "duration_s", "lock_wait_s"):
        assert name in candidate.metadata


def test_failing_check_leaves_the_pointer_unchanged(defs: dg.Definitions, instance: dg.DagsterInstance,
                                                   settings: Settings, rng: np.random.Generator,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    produce(settings, rng, ["a", "b"])
    assert compact(defs, instance).success
    before = SnapshotStore(settings).read_pointer("words")
    pending = produce(settings, rng, ["c"])
    original = ChromaCompactor.write_candidate

    def tampered(self: ChromaCompactor, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        candidate = original(self, *args, **kwargs)
        victim = max(candidate.manifest.files, key=lambda f: f.size)
        client("s3", settings).put_object(Bucket=settings.vectors_bucket, Key=victim.key, Body=b"tampered")
        return candidate

    monkeypatch.setattr(ChromaCompactor, "write_candidate", tampered)
    result = compact(defs, instance)
    check = checks(result)["vector_count_matches_prior_plus_deltas"]
    assert not check.passed and "files" in check.description and check.partition == "words"
    assert result.asset_materializations_for_node("snapshot") == []
    after = SnapshotStore(settings).read_pointer("words")
    assert after.version == before.version and after.etag == before.etag
    assert all_keys(settings, pending["delta_key"]) != []  # the delta waits for the next run


def test_rebuild_job_reproduces_incremental_content(defs: dg.Definitions, instance: dg.DagsterInstance,
                                                    settings: Settings, rng: np.random.Generator) -> None:
    produce(settings, rng, ["a", "b", "c"])
    assert compact(defs, instance).success
    produce(settings, rng, ["b", "d"], delete_ids=["a"])
    assert compact(defs, instance).success
    incremental = _content(settings)
    result = run_job(defs, instance, "rebuild", partition_key="words", run_config=compaction_run_config(hnsw_search_ef=150))
    assert result.success and result.dagster_run.tags["vector_pipeline/writer"] == "words"
    assert _content(settings) == incremental
    pointer = SnapshotStore(settings).read_pointer("words")
    assert SnapshotStore(settings).read_manifest("words", pointer.version).hnsw["search_ef"] == 150


def test_fold_job_folds_segments_through_the_audit(defs: dg.Definitions, instance: dg.DagsterInstance,
                                                   settings: Settings, rng: np.random.Generator) -> None:
    produce(settings, rng, [f"b{i}" for i in range(200)])
    assert compact(defs, instance).success
    produce(settings, rng, ["b0", "n0"], delete_ids=["b1"])
    assert compact(defs, instance).success
    before = _content(settings)
    result = compact(defs, instance, fold_segments=True)
    assert result.success
    assert checks(result)["vector_count_matches_prior_plus_deltas"].passed
    [written] = result.asset_materializations_for_node("snapshot_candidate")
    assert written.metadata["fold"].value == "fold_all" and written.metadata["segments"].value == 1
    assert _content(settings) == before


def test_base_fold_job_folds_off_the_lock_and_reports_the_published_snapshot(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    """The run the sensors request when the cadence says a fold is due: ``fold_base``, as
    ``compact --watch`` runs it, under its own tag (not the writer key: appends go on)."""
    compactor = ChromaCompactor(settings=settings)
    for ids in ([f"b{i}" for i in range(50)], ["b0", "n0"]):
        compactor.compact_deltas([produce(settings, rng, ids)["delta_key"]], "words")
    before = _content(settings)
    instance.add_dynamic_partitions("collection", ["words"])
    job = defs.resolve_job_def("base_fold")
    tags = job.partitioned_config.get_tags_for_partition_key("words")
    assert tags["vector_pipeline/fold"] == "words" and "vector_pipeline/writer" not in tags
    result = run_job(defs, instance, "base_fold", partition_key="words")
    assert result.success
    store = SnapshotStore(settings)
    pointer = store.read_pointer("words")
    assert len(store.read_manifest("words", pointer.version).segments) == 1 and _content(settings) == before
    [reported] = [m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey("snapshot")]
    metadata = reported.materialization.metadata
    assert reported.partition == "words" and metadata["version"].value == pointer.version
    assert metadata["history"].value.records[0].data["version"] == pointer.version  # the fold is in the history


def test_base_fold_job_with_tiers_merges_the_full_tier_the_compaction_job_left(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    """The compaction job appends without merging a tier (fan-in 2 here); the run the sensors
    request for it (``base_fold`` with ``tiers: true``) merges them, never the base."""
    from vector_pipeline.defs.jobs import TIER_MERGE_RUN_CONFIG
    from vector_pipeline.table.catalog import CollectionCatalog, CollectionConfig

    CollectionCatalog(settings).create(CollectionConfig.defaults_for("words", settings).changed(segment_fan_in=2))
    for ids in (["a", "b"], ["c"], ["a", "d"]):
        produce(settings, rng, ids)
        assert compact(defs, instance).success
    store = SnapshotStore(settings)
    appended = store.read_manifest("words", store.read_pointer("words").version)
    assert appended.fold == "append" and len(appended.segments) == 3  # base + two tier-0 segments, not merged
    before = _content(settings)
    result = run_job(defs, instance, "base_fold", partition_key="words", run_config=TIER_MERGE_RUN_CONFIG)
    assert result.success
    merged = store.read_manifest("words", store.read_pointer("words").version)
    assert merged.fold == "fold_recent" and merged.segments[0].name == appended.segments[0].name
    assert [s.tier for s in merged.segments] == [0, 1] and _content(settings) == before


def test_rollback_job_and_gc_keep_the_pointed_version(defs: dg.Definitions, instance: dg.DagsterInstance,
                                                      settings: Settings, rng: np.random.Generator) -> None:
    versions = []
    for ids in (["a"], ["b"], ["c"]):
        produce(settings, rng, ids)
        assert compact(defs, instance).success
        versions.append(SnapshotStore(settings).read_pointer("words").version)
    result = run_job(defs, instance, "rollback_job", partition_key="words", run_config={"ops": {"rollback_pointer": {
        "config": {"version": versions[0]}}}})
    assert result.success and result.dagster_run.tags["vector_pipeline/writer"] == "words"
    assert SnapshotStore(settings).read_pointer("words").version == versions[0]
    gc = run_job(defs, instance, "gc_job", partition_key="words", run_config={"ops": {"collect_snapshot_garbage": {
        "config": {"retain_versions": 0, "grace_hours": 0.0}}}})
    assert gc.success
    assert SnapshotStore(settings).list_versions("words") == [versions[0]]
    assert sorted(_content(settings)) == ["a"]


def test_prune_runs_deletes_old_successful_runs_only(defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
    job = defs.resolve_job_def("prune_runs_job")
    old_ok = [instance.create_run_for_job(job, status=dg.DagsterRunStatus.SUCCESS).run_id for _ in range(3)]
    failed = instance.create_run_for_job(job, status=dg.DagsterRunStatus.FAILURE).run_id
    later = datetime.now(timezone.utc) + timedelta(days=8)
    assert prune_runs(instance, timedelta(days=7), now=later, batch=2) == 3
    assert {r.dagster_run.run_id for r in instance.get_run_records()} == {failed}
    assert not set(old_ok) & {r.dagster_run.run_id for r in instance.get_run_records()}
    assert prune_runs(instance, timedelta(days=7)) == 0  # nothing older than a week now


def test_upgrade_removes_the_per_delta_layouts_partitions_and_runs(defs: dg.Definitions,
                                                                   instance: dg.DagsterInstance) -> None:
    """An instance that ran the per-delta layout: a partition and a validate_delta run per delta."""
    keys = [f"words.{new_delta_id()}" for _ in range(30)]
    instance.add_dynamic_partitions("delta", keys)
    kept = instance.create_run_for_job(defs.resolve_job_def("prune_runs_job"), status=dg.DagsterRunStatus.SUCCESS)
    for key in keys[:5]:
        instance.add_run(dg.DagsterRun(job_name="validate_delta", run_id=make_new_run_id(),
                                       status=dg.DagsterRunStatus.SUCCESS, tags={"dagster/partition": key}))
    result = run_job(defs, instance, "upgrade_from_per_delta_layout")
    assert result.success
    assert instance.get_dynamic_partitions("delta") == []
    assert [r.dagster_run.run_id for r in instance.get_run_records(dg.RunsFilter(job_name="validate_delta"))] == []
    assert instance.get_run_by_id(kept.run_id) is not None
    assert run_job(defs, instance, "upgrade_from_per_delta_layout").success  # safe to run again


def test_a_collection_created_at_run_time_is_compacted_through_the_sensor_path(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    """No code and no reload: the catalog record, a delta, the sensor's partitions, the run."""
    from vector_pipeline.table.catalog import CollectionCatalog, CollectionConfig

    CollectionCatalog(settings).create(CollectionConfig.defaults_for("merchant-0099", settings).changed(hnsw_search_ef=77))
    produce_embedding_delta(["m1", "m2"], vectors(rng, 2), collection_name="merchant-0099", settings=settings)
    sensor = defs.resolve_sensor_def("delta_reconciliation_sensor")
    with dg.build_sensor_context(instance=instance, instance_ref=instance.get_ref(), definitions=defs,
                                 sensor_name=sensor.name,
                                 resources={"vector_pipeline": defs.resources["vector_pipeline"]}) as context:
        tick = sensor.evaluate_tick(context)
    for request in tick.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    [run_request] = [r for r in tick.run_requests if r.job_name == "compaction"]
    assert run_request.partition_key == "merchant-0099"
    result = run_job(defs, instance, "compaction", partition_key=run_request.partition_key)
    assert result.success
    store = SnapshotStore(settings)
    manifest = store.read_manifest("merchant-0099", store.read_pointer("merchant-0099").version)
    assert manifest.vector_count == 2 and manifest.hnsw["search_ef"] == 77
