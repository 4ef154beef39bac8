"""Delta partitions, the compaction job (write → blocking audit → publish), rebuild,
rollback, GC and partition pruning, executed in process against the moto server."""

import io
import tarfile
from datetime import datetime, timedelta, timezone

import dagster as dg
import numpy as np
import pytest

from vector_pipeline import ChromaCompactor, open_snapshot, produce_embedding_delta
from vector_pipeline.io.aws import client
from vector_pipeline.config import Settings
from vector_pipeline.defs.checks import AUDIT_CHECK_NAME
from vector_pipeline.defs.jobs import compaction_run_config, prune_delta_partitions
from vector_pipeline.format.keys import new_delta_id
from vector_pipeline.read.reader import close_readers
from vector_pipeline.table.snapshot_store import SnapshotStore

from vector_pipeline_tests.helpers import all_keys, vectors


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, job: str, **kwargs: object) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False, **kwargs)


def _compact(defs: dg.Definitions, instance: dg.DagsterInstance, collection: str = "words",
             **candidate_config: object) -> dg.ExecuteInProcessResult:
    """The compaction job for one collection partition (rebuild or fold by config)."""
    instance.add_dynamic_partitions("collection", [collection])
    return _run(defs, instance, "compaction", partition_key=collection,
                run_config=compaction_run_config(**candidate_config))


def _content(settings: Settings) -> dict:
    close_readers()
    got = open_snapshot(settings=settings).get_vectors("words", include=["embeddings", "documents", "metadatas"])
    return {i: (tuple(np.round(e, 6)), d, tuple(sorted((m or {}).items())))
            for i, e, d, m in zip(got["ids"], got["embeddings"], got["documents"], got["metadatas"])}


def _produce(settings: Settings, rng: np.random.Generator, ids: list[str], **extra: object) -> dict:
    return produce_embedding_delta(ids, vectors(rng, len(ids)), documents=[f"doc {i}" for i in ids],
                                   metadatas=[{"n": n} for n in range(len(ids))], settings=settings, **extra)


def test_delta_partition_materializes_with_counts(defs: dg.Definitions, instance: dg.DagsterInstance,
                                                  settings: Settings, rng: np.random.Generator) -> None:
    produced = _produce(settings, rng, ["a", "b", "c"], delete_ids=["z"])
    key = f"words.{produced['delta_id']}"
    instance.add_dynamic_partitions("delta", [key])
    result = _run(defs, instance, "validate_delta", partition_key=key)
    assert result.success
    [materialization] = result.asset_materializations_for_node("delta")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert metadata["vectors"] == 3 and metadata["deletes"] == 1 and metadata["dimension"] == 8
    assert metadata["bytes"] > 0


def test_invalid_delta_fails_with_reason_and_is_quarantined(defs: dg.Definitions, instance: dg.DagsterInstance,
                                                            settings: Settings, rng: np.random.Generator) -> None:
    produced = _produce(settings, rng, ["a"])
    s3 = client("s3", settings)
    pack_key = produced["delta_key"] + "delta.tar"
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=settings.vectors_bucket, Key=pack_key)["Body"].read())) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}
    members["chroma.sqlite3"] = b"not sqlite"  # its manifest still lists the real file's sha256
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    s3.put_object(Bucket=settings.vectors_bucket, Key=pack_key, Body=packed.getvalue())
    key = f"words.{produced['delta_id']}"
    instance.add_dynamic_partitions("delta", [key])
    result = _run(defs, instance, "validate_delta", partition_key=key)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert "checksum" in failure.description and "quarantined" in failure.description
    assert all_keys(settings, produced["delta_key"]) == []
    assert any(k.endswith("reason.json") for k in all_keys(settings, f"quarantine/words/{produced['delta_id']}/"))


def test_compaction_job_publishes_after_the_check_passes(defs: dg.Definitions, instance: dg.DagsterInstance,
                                                         settings: Settings, rng: np.random.Generator) -> None:
    for start in (0, 5):
        _produce(settings, rng, [f"id{i}" for i in range(start, start + 5)])
    result = _compact(defs, instance)
    assert result.success
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == AUDIT_CHECK_NAME]
    assert check.passed and check.metadata["vector_count"].value == 10
    pointer = SnapshotStore(settings).read_pointer("words")
    assert pointer is not None and pointer.document["vector_count"] == 10
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
    _produce(settings, rng, ["a", "b"])
    assert _compact(defs, instance).success
    before = SnapshotStore(settings).read_pointer("words")
    pending = _produce(settings, rng, ["c"])
    original = ChromaCompactor.write_candidate

    def tampered(self: ChromaCompactor, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        candidate = original(self, *args, **kwargs)
        victim = max(candidate.manifest["files"], key=lambda f: f["size"])
        client("s3", settings).put_object(Bucket=settings.vectors_bucket, Key=victim["key"], Body=b"tampered")
        return candidate

    monkeypatch.setattr(ChromaCompactor, "write_candidate", tampered)
    result = _compact(defs, instance)
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == AUDIT_CHECK_NAME]
    assert not check.passed and "files" in check.description
    assert result.asset_materializations_for_node("snapshot") == []
    after = SnapshotStore(settings).read_pointer("words")
    assert after.version == before.version and after.etag == before.etag
    assert all_keys(settings, pending["delta_key"]) != []  # the delta waits for the next run


def test_rebuild_job_reproduces_incremental_content(defs: dg.Definitions, instance: dg.DagsterInstance,
                                                    settings: Settings, rng: np.random.Generator) -> None:
    _produce(settings, rng, ["a", "b", "c"])
    assert _compact(defs, instance).success
    _produce(settings, rng, ["b", "d"], delete_ids=["a"])
    assert _compact(defs, instance).success
    incremental = _content(settings)
    result = _compact(defs, instance, rebuild_from_archive=True, hnsw_search_ef=150)
    assert result.success
    assert _content(settings) == incremental
    pointer = SnapshotStore(settings).read_pointer("words")
    assert SnapshotStore(settings).read_manifest("words", pointer.version)["hnsw"]["search_ef"] == 150


def test_fold_job_folds_segments_through_the_audit(defs: dg.Definitions, instance: dg.DagsterInstance,
                                                   settings: Settings, rng: np.random.Generator) -> None:
    _produce(settings, rng, [f"b{i}" for i in range(200)])
    assert _compact(defs, instance).success
    _produce(settings, rng, ["b0", "n0"], delete_ids=["b1"])
    assert _compact(defs, instance).success
    before = _content(settings)
    result = _compact(defs, instance, fold_segments=True)
    assert result.success
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == AUDIT_CHECK_NAME]
    assert check.passed
    [written] = result.asset_materializations_for_node("snapshot_candidate")
    assert written.metadata["fold"].value == "fold_all" and written.metadata["segments"].value == 1
    assert _content(settings) == before


def test_rollback_job_and_gc_keep_the_pointed_version(defs: dg.Definitions, instance: dg.DagsterInstance,
                                                      settings: Settings, rng: np.random.Generator) -> None:
    versions = []
    for ids in (["a"], ["b"], ["c"]):
        _produce(settings, rng, ids)
        assert _compact(defs, instance).success
        versions.append(SnapshotStore(settings).read_pointer("words").version)
    result = _run(defs, instance, "rollback_job", run_config={"ops": {"rollback_pointer": {
        "config": {"collection": "words", "version": versions[0]}}}})
    assert result.success
    assert SnapshotStore(settings).read_pointer("words").version == versions[0]
    gc = _run(defs, instance, "gc_job", run_config={"ops": {"collect_snapshot_garbage": {
        "config": {"retain_versions": 0, "grace_hours": 0.0}}}})
    assert gc.success
    assert SnapshotStore(settings).list_versions("words") == [versions[0]]
    assert sorted(_content(settings)) == ["a"]


def test_partition_count_stays_bounded(instance: dg.DagsterInstance) -> None:
    now = datetime.now(timezone.utc)
    old = [f"words.{new_delta_id(int((now - timedelta(days=30)).timestamp() * 1000) + i)}" for i in range(50)]
    fresh = [f"words.{new_delta_id(int(now.timestamp() * 1000) + i)}" for i in range(5)]
    instance.add_dynamic_partitions("delta", old + fresh)
    removed = prune_delta_partitions(instance, timedelta(days=7), now=now)
    assert removed == 50
    assert sorted(instance.get_dynamic_partitions("delta")) == sorted(fresh)


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
    result = _run(defs, instance, "compaction", partition_key=run_request.partition_key)
    assert result.success
    store = SnapshotStore(settings)
    manifest = store.read_manifest("merchant-0099", store.read_pointer("merchant-0099").version)
    assert manifest["vector_count"] == 2 and manifest["hnsw"]["search_ef"] == 77


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
        [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == AUDIT_CHECK_NAME]
        assert check.passed and check.metadata["vector_count"].value == count
    store = SnapshotStore(settings)
    assert {c: store.read_pointer(c).document["vector_count"] for c in counts} == counts
