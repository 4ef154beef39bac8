"""Rebuild from archive, rollback and GC, against the moto server."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from vector_pipeline import ChromaCompactor, HnswSettings, open_snapshot
from vector_pipeline.config import Settings
from vector_pipeline.maintenance import collect_garbage, rebuild_from_archive, rollback
from vector_pipeline.reader import close_readers
from vector_pipeline.snapshot_store import PublishOutcome, SnapshotStore

from .conftest import all_keys
from .test_compactor import produce


def _everything(settings: Settings) -> dict[str, tuple]:
    close_readers()
    got = open_snapshot(settings=settings).get_vectors("words", include=["embeddings", "documents", "metadatas"])
    return {i: (tuple(np.round(e, 6)), d, tuple(sorted(m.items())))
            for i, e, d, m in zip(got["ids"], got["embeddings"], got["documents"], got["metadatas"])}


def _incremental(settings: Settings, rng: np.random.Generator) -> list[str]:
    compactor = ChromaCompactor(settings=settings)
    versions = []
    for round_number in range(3):
        key = produce(settings, [f"id{i}" for i in range(round_number, round_number + 5)], rng,
                      tag=f"-r{round_number}", deletes=["id0"] if round_number == 2 else None)["delta_key"]
        versions.append(compactor.compact_deltas([key], "words").version)
    return versions


def test_rebuild_from_archive_reproduces_incremental_content(settings: Settings, rng: np.random.Generator) -> None:
    versions = _incremental(settings, rng)
    incremental = _everything(settings)
    rebuilt = rebuild_from_archive(settings, "words", hnsw=HnswSettings(search_ef=200))
    assert rebuilt.status == "ok" and rebuilt.deltas_processed == 3
    assert rebuilt.version > versions[-1]
    assert _everything(settings) == incremental
    manifest = SnapshotStore(settings).read_manifest("words", rebuilt.version)
    assert manifest["hnsw"]["search_ef"] == 200 and manifest["rebuilt_from_scratch"] is True


def test_rebuild_up_to_a_delta_id(settings: Settings, rng: np.random.Generator) -> None:
    _incremental(settings, rng)
    first_delta = sorted({k.split("/")[2] for k in all_keys(settings, "archive/words/")})[0]
    result = rebuild_from_archive(settings, "words", until_delta_id=first_delta)
    assert result.deltas_processed == 1
    assert sorted(_everything(settings)) == [f"id{i}" for i in range(5)]


def test_rollback_points_readers_at_an_older_version(settings: Settings, rng: np.random.Generator) -> None:
    versions = _incremental(settings, rng)
    assert rollback(settings, "words", versions[0]) is PublishOutcome.PUBLISHED
    assert SnapshotStore(settings).read_pointer("words").version == versions[0]
    assert {d for _, d, _ in _everything(settings).values()} == {f"id{i}-r0" for i in range(5)}
    # compaction continues from the rolled-back version
    after = ChromaCompactor(settings=settings).compact_deltas([produce(settings, ["new"], rng)["delta_key"]], "words")
    assert after.previous_version == versions[0] and after.vector_count == 6


def test_gc_deletes_old_versions_but_keeps_the_pointed_one(settings: Settings, rng: np.random.Generator) -> None:
    versions = _incremental(settings, rng)
    store = SnapshotStore(settings)
    assert rollback(settings, "words", versions[0]) is PublishOutcome.PUBLISHED
    young = collect_garbage(settings, "words", retain_versions=0)
    assert young.deleted_versions == []  # all within the grace period
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    report = collect_garbage(settings, "words", retain_versions=0, now=later)
    assert sorted(report.deleted_versions) == sorted(versions[1:])
    assert store.list_versions("words") == [versions[0]]
    close_readers()
    assert open_snapshot(settings=settings).count("words") == 5


def test_gc_keeps_objects_a_retained_version_references(settings: Settings, rng: np.random.Generator) -> None:
    versions = _incremental(settings, rng)
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    collect_garbage(settings, "words", retain_versions=1, now=later)
    store = SnapshotStore(settings)
    manifest = store.read_manifest("words", versions[-1])
    for entry in manifest["files"]:
        store.s3.head_object(Bucket=store.bucket, Key=entry["key"])
    close_readers()
    assert open_snapshot(settings=settings).count("words") == 6
