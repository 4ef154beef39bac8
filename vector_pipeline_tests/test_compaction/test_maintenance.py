"""Rebuild from archive, rollback and GC, against the moto server."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np

from vector_pipeline import ChromaCompactor, HnswSettings, open_snapshot, produce_embedding_delta
from vector_pipeline.config import Settings
from vector_pipeline.compaction.maintenance import collect_garbage, rebuild_from_archive, rollback
from vector_pipeline.read.reader import close_readers
from vector_pipeline.table.snapshot_store import PublishOutcome, SnapshotStore

from vector_pipeline_tests.helpers import all_keys, vectors
from vector_pipeline_tests.test_compaction.test_compactor import produce


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
    assert manifest.hnsw["search_ef"] == 200 and manifest.rebuilt_from_scratch is True


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
    for entry in manifest.files:
        store.s3.head_object(Bucket=store.bucket, Key=entry.key)
    close_readers()
    assert open_snapshot(settings=settings).count("words") == 6


# -- retention: grace from replacement, orphans, expiry, point-in-time ---------------------------


def _days_ago(days: float, now: datetime) -> str:
    return (now - timedelta(days=days)).isoformat()


def test_a_two_day_old_version_replaced_a_minute_ago_survives_the_grace() -> None:
    from vector_pipeline.compaction.retention import Timeline, _collectable
    from vector_pipeline.format.pointer import PointerDocument

    now = datetime.now(timezone.utc)
    old, current = f"00000001-{(now - timedelta(days=2)):%Y%m%dT%H%M%S%f}"[:-3] + "Z", \
        f"00000002-{now:%Y%m%dT%H%M%S%f}"[:-3] + "Z"
    pointer = {"collection": "words", "manifest_key": "k", "version": current, "published_at": _days_ago(1 / 1440, now),
               "history": [{"version": old, "published_at": _days_ago(2, now), "replaced_at": _days_ago(1 / 1440, now)}]}
    timeline = Timeline.of(PointerDocument.from_dict(pointer))
    assert not _collectable(old, [old, current], timeline, keep_count=1, grace=timedelta(hours=1), now=now)
    later = now + timedelta(hours=2)
    assert _collectable(old, [old, current], timeline, keep_count=1, grace=timedelta(hours=1), now=later)


def test_orphan_versions_do_not_count_toward_the_versions_kept(settings: Settings, rng: np.random.Generator) -> None:
    versions = _incremental(settings, rng)
    compactor = ChromaCompactor(settings=settings)
    orphan = compactor.write_candidate("words", [produce(settings, ["o"], rng)["delta_key"]])  # never published
    store = SnapshotStore(settings)
    assert orphan.version in store.list_versions("words")
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    report = collect_garbage(settings, "words", retain_versions=2, now=later)
    assert report.kept_versions == versions[-2:]  # the current one and the newest *published* before it
    assert orphan.version in report.deleted_versions


def test_grace_counts_from_when_a_version_stopped_being_current(settings: Settings, rng: np.random.Generator) -> None:
    versions = _incremental(settings, rng)
    soon = datetime.now(timezone.utc) + timedelta(minutes=30)
    assert collect_garbage(settings, "words", retain_versions=1, grace=timedelta(hours=1), now=soon).deleted_versions == []
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    gone = collect_garbage(settings, "words", retain_versions=1, grace=timedelta(hours=1), now=later)
    assert sorted(gone.deleted_versions) == versions[:-1]


def test_expired_archive_rebuild_starts_from_the_oldest_kept_version(settings: Settings, rng: np.random.Generator) -> None:
    from vector_pipeline.table.catalog import CollectionCatalog

    versions = _incremental(settings, rng)
    CollectionCatalog(settings).update("words", retention_archive_days=1.0, retention_quarantine_days=1.0)
    poison = produce_embedding_delta(["bad"], vectors(rng, 1, dimension=3), settings=settings)["delta_key"]
    ChromaCompactor(settings=settings).compact_deltas([poison], "words")  # the wrong dimension is quarantined
    current = _everything(settings)
    in_two_days = datetime.now(timezone.utc) + timedelta(days=2)
    report = collect_garbage(settings, "words", retain_versions=2, now=in_two_days)
    assert report.kept_versions == versions[-2:]
    # Only deltas both kept versions hold expire: the first two rounds; the third (after the older kept one) stays.
    assert report.expired_archived_deltas == 2 and report.expired_quarantined_deltas == 1
    assert len({k.split("/")[2] for k in all_keys(settings, "archive/words/") if k.endswith("delta.tar")}) == 1
    assert all_keys(settings, "quarantine/") == []
    rebuilt = rebuild_from_archive(settings, "words")
    assert rebuilt.status == "ok"
    manifest = SnapshotStore(settings).read_manifest("words", rebuilt.version)
    assert manifest.rebuilt_over == versions[-2]
    assert _everything(settings) == current


def test_rebuild_and_rollback_as_of_a_time(settings: Settings, rng: np.random.Generator) -> None:
    import time

    compactor = ChromaCompactor(settings=settings)
    first = compactor.compact_deltas([produce(settings, ["a", "b"], rng, tag="-1")["delta_key"]], "words")
    time.sleep(0.05)
    between = datetime.now(timezone.utc)
    time.sleep(0.05)
    compactor.compact_deltas([produce(settings, ["b", "c"], rng, tag="-2")["delta_key"]], "words")
    rebuilt = rebuild_from_archive(settings, "words", as_of=between)
    assert rebuilt.status == "ok" and rebuilt.deltas_processed == 1
    assert {i: d for i, (_, d, _) in _everything(settings).items()} == {"a": "a-1", "b": "b-1"}
    assert rollback(settings, "words", as_of=between) is PublishOutcome.PUBLISHED
    assert SnapshotStore(settings).read_pointer("words").version == first.version
