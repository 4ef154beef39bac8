"""ChromaCompactor against the moto server: last-writer-wins across deltas in any order,
deletes, idempotent re-delivery, the busy lock, a paused lock holder that lost its lock,
a crash between upload and publish, ack-after-commit and the warm cache. Killing real
processes at every step is left to the reliability suite."""

from __future__ import annotations

import time

import numpy as np
import pytest

from vector_pipeline import ChromaCompactor, CompactionLock, CompactionResult, open_snapshot, produce_embedding_delta
from vector_pipeline.config import Settings
from vector_pipeline.io.lock import lock_id_for
from vector_pipeline.delta.queue import DeltaQueue
from vector_pipeline.read.reader import close_readers
from vector_pipeline.table.snapshot_store import PublishOutcome, SnapshotStore

from vector_pipeline_tests.helpers import all_keys, vectors


def produce(settings: Settings, ids: list[str], rng: np.random.Generator, *, deletes: list[str] | None = None,
            tag: str = "", collection: str = "words") -> dict:
    return produce_embedding_delta(ids, vectors(rng, len(ids)), documents=[f"{i}{tag}" for i in ids],
                                   metadatas=[{"tag": tag or "none", "n": n} for n, _ in enumerate(ids)],
                                   delete_ids=deletes, collection_name=collection, settings=settings)


def published(settings: Settings, collection: str = "words") -> dict[str, str]:
    """id → document of the published version, read exactly."""
    client = open_snapshot(collection, settings=settings)
    got = client.get_vectors(collection, include=["documents"])
    return dict(zip(got["ids"], got["documents"]))


def test_compaction_publishes_a_version_and_archives_deltas(settings: Settings, rng: np.random.Generator) -> None:
    keys = [produce(settings, [f"{d}-{i}" for i in range(20)], rng)["delta_key"] for d in range(3)]
    result = ChromaCompactor(settings=settings).compact_deltas(keys, "words")
    assert isinstance(result, CompactionResult)
    assert result.status == "ok" and result.deltas_processed == 3 and result.vector_count == 60
    assert result.version and result.version.startswith("00000001-")
    assert len(published(settings)) == 60
    assert all_keys(settings, "delta/") == []
    assert len({k.split("/")[2] for k in all_keys(settings, "archive/words/")}) == 3


def test_later_delta_wins_whatever_order_given(settings: Settings, rng: np.random.Generator) -> None:
    first = produce(settings, ["a", "b"], rng, tag="-old")["delta_key"]
    second = produce(settings, ["a"], rng, tag="-new")["delta_key"]
    result = ChromaCompactor(settings=settings).compact_deltas([second, first], "words")
    assert result.status == "ok"
    assert published(settings) == {"a": "a-new", "b": "b-old"}


def test_late_older_delta_does_not_overwrite_newer_applied_one(settings: Settings, rng: np.random.Generator) -> None:
    older = produce(settings, ["a", "c"], rng, tag="-old", deletes=["b"])["delta_key"]
    newer = produce(settings, ["a", "b"], rng, tag="-new")["delta_key"]
    compactor = ChromaCompactor(settings=settings)
    assert compactor.compact_deltas([newer], "words").status == "ok"
    late = compactor.compact_deltas([older], "words")  # arrives hours later
    assert late.status == "ok" and late.deltas_processed == 1
    assert published(settings) == {"a": "a-new", "b": "b-new", "c": "c-old"}


def test_deletes_remove_vectors_and_delete_wins_inside_one_delta(settings: Settings, rng: np.random.Generator) -> None:
    compactor = ChromaCompactor(settings=settings)
    base = produce(settings, ["a", "b", "c"], rng)["delta_key"]
    assert compactor.compact_deltas([base], "words").vector_count == 3
    mixed = produce(settings, ["c", "d"], rng, deletes=["a", "c"])["delta_key"]
    result = compactor.compact_deltas([mixed], "words")
    assert result.status == "ok" and result.vector_count == 2
    assert sorted(published(settings)) == ["b", "d"]


def test_redelivered_delta_is_a_noop(settings: Settings, rng: np.random.Generator) -> None:
    key = produce(settings, ["a", "b"], rng)["delta_key"]
    compactor = ChromaCompactor(settings=settings)
    first = compactor.compact_deltas([key], "words")
    again = compactor.compact_deltas([key], "words")
    assert first.status == "ok"
    assert again.status == "noop" and again.deltas_processed == 0 and again.version == first.version
    assert again.already_applied == [key]


def test_busy_lock_leaves_everything_unchanged(settings: Settings, rng: np.random.Generator) -> None:
    key = produce(settings, ["a"], rng)["delta_key"]
    holder = CompactionLock(lock_id_for("words"), settings=settings)
    assert holder.acquire()
    before = all_keys(settings)
    result = ChromaCompactor(settings=settings).compact_deltas([key], "words")
    assert result.status == "busy" and result.deltas_processed == 0
    assert all_keys(settings) == before
    assert holder.holder().owner == holder.owner


def test_paused_lock_holder_cannot_publish_over_newer_pointer(settings: Settings, rng: np.random.Generator) -> None:
    short = settings.with_overrides(lock_ttl_seconds=1)
    store = SnapshotStore(settings)
    first = produce(settings, ["a"], rng, tag="-paused")["delta_key"]
    paused_lock = CompactionLock(lock_id_for("words"), settings=short)
    assert paused_lock.acquire()
    paused = ChromaCompactor(settings=short).write_candidate("words", [first], fence=paused_lock.fence)
    time.sleep(2.1)  # the holder "pauses" past its lock's expiry
    second = produce(settings, ["a"], rng, tag="-live")["delta_key"]
    live = ChromaCompactor(settings=settings).compact_deltas([second], "words")
    assert live.status == "ok" and live.fence > paused_lock.fence
    pointer_before = store.read_pointer("words")
    assert ChromaCompactor(settings=short).publish_candidate(paused) is PublishOutcome.CONFLICT
    pointer_after = store.read_pointer("words")
    assert pointer_after.version == pointer_before.version == live.version
    assert published(settings) == {"a": "a-live"}


def test_crash_after_upload_before_publish_changes_nothing_visible(settings: Settings, rng: np.random.Generator,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    key = produce(settings, ["a", "b"], rng)["delta_key"]
    compactor = ChromaCompactor(settings=settings)

    def crash(*_args: object, **_kwargs: object) -> None:
        raise ConnectionError("process died before the pointer PUT")

    monkeypatch.setattr(compactor.store, "publish", crash)
    failed = compactor.compact_deltas([key], "words")
    assert failed.status == "failed" and "died" in failed.error
    assert SnapshotStore(settings).read_pointer("words") is None
    assert all_keys(settings, key) != []  # the delta is still pending
    assert CompactionLock(lock_id_for("words"), settings=settings).holder().owner is None
    monkeypatch.undo()
    retry = ChromaCompactor(settings=settings).compact_deltas([key], "words")
    assert retry.status == "ok" and retry.vector_count == 2
    assert sorted(published(settings)) == ["a", "b"]


def test_a_lost_publish_leaves_the_delta_pending_and_the_next_run_applies_it(
        settings: Settings, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch) -> None:
    key = produce(settings, ["a"], rng)["delta_key"]
    compactor = ChromaCompactor(settings=settings)
    monkeypatch.setattr(compactor.store, "publish", lambda *a, **k: PublishOutcome.CONFLICT)
    [lost] = compactor.compact_pending("words")
    assert lost.status == "failed" and lost.messages_acked == 0
    assert all_keys(settings, key) != []  # not archived: still pending under delta/
    # Its notification did its job (the delta is durably pending): never released for a
    # redelivery that would count toward the dead-letter limit.
    assert DeltaQueue(settings).approximate_depth() == {"visible": 0, "in_flight": 0}
    monkeypatch.undo()
    [won] = ChromaCompactor(settings=settings).compact_pending("words")  # lists delta/words/
    assert won.status == "ok" and won.deltas_processed == 1
    assert all_keys(settings, key) == []


def test_reconciliation_finds_deltas_whose_messages_were_lost(settings: Settings, rng: np.random.Generator) -> None:
    key = produce_embedding_delta(["a"], vectors(rng, 1), settings=settings, notify=False)["delta_key"]
    [result] = ChromaCompactor(settings=settings).compact_pending("words")
    assert result.status == "ok" and result.deltas_processed == 1
    assert all_keys(settings, key) == []


def test_warm_cache_compaction_downloads_only_the_deltas(settings: Settings, rng: np.random.Generator) -> None:
    compactor = ChromaCompactor(settings=settings)
    compactor.compact_deltas([produce(settings, [f"a{i}" for i in range(50)], rng)["delta_key"]], "words")
    key = produce(settings, ["b"], rng)["delta_key"]
    delta_bytes = sum(SnapshotStore(settings).s3.head_object(Bucket=settings.vectors_bucket, Key=k)["ContentLength"]
                      for k in all_keys(settings, key))
    warm = compactor.compact_deltas([key], "words")
    assert warm.status == "ok" and warm.vector_count == 51
    assert warm.bytes_downloaded == delta_bytes
    cold = ChromaCompactor(settings=settings.with_overrides(cache_dir=settings.cache_dir + "-cold"))
    result = cold.compact_deltas([produce(settings, ["c"], rng)["delta_key"]], "words")
    assert result.bytes_downloaded > warm.bytes_downloaded


def test_unchanged_files_are_referenced_not_uploaded_again(settings: Settings, rng: np.random.Generator) -> None:
    compactor = ChromaCompactor(settings=settings)
    compactor.compact_deltas([produce(settings, ["a"], rng)["delta_key"]], "words")
    second = compactor.compact_deltas([produce(settings, ["b"], rng)["delta_key"]], "words")
    manifest = SnapshotStore(settings).read_manifest("words", second.version)
    assert second.bytes_uploaded < manifest.total_bytes
    assert any(f.key.split("/")[2] != second.version for f in manifest.files)


def test_wrong_dimension_delta_is_quarantined_and_others_land(settings: Settings, rng: np.random.Generator) -> None:
    good = produce(settings, ["a"], rng)["delta_key"]
    ChromaCompactor(settings=settings).compact_deltas([good], "words")
    bad = produce_embedding_delta(["x"], vectors(rng, 1, dimension=4), settings=settings)["delta_key"]
    fine = produce(settings, ["b"], rng)["delta_key"]
    result = ChromaCompactor(settings=settings).compact_deltas([bad, fine], "words")
    assert result.status == "ok" and result.deltas_processed == 1
    assert "4-d" in result.quarantined[bad]
    assert sorted(published(settings)) == ["a", "b"]
    assert any(k.endswith("reason.json") for k in all_keys(settings, "quarantine/words/"))
    assert all_keys(settings, bad) == []


def test_batches_larger_than_chroma_max_batch_size(settings: Settings, rng: np.random.Generator) -> None:
    ids = [f"id{i}" for i in range(6000)]  # chroma 1.5's max batch is 5461
    key = produce_embedding_delta(ids, vectors(rng, len(ids), dimension=4), settings=settings)["delta_key"]
    result = ChromaCompactor(settings=settings).compact_deltas([key], "words")
    assert result.status == "ok" and result.vector_count == 6000


def test_validation_accepts_vectors_after_a_version_that_held_none(settings: Settings, rng: np.random.Generator) -> None:
    from vector_pipeline.format.keys import parse_delta_key

    compactor = ChromaCompactor(settings=settings)
    tombstones = produce_embedding_delta([], [], delete_ids=["gone"], settings=settings)["delta_key"]
    assert compactor.compact_deltas([tombstones], "words").vector_count == 0
    key = produce(settings, ["a"], rng)["delta_key"]
    assert compactor.validate_delta(parse_delta_key(key)).ids == ["a"]
    assert compactor.compact_deltas([key], "words").vector_count == 1


def test_deltas_of_format_1_are_still_applied_archived_and_rebuilt(settings: Settings, rng: np.random.Generator) -> None:
    """Deltas written before deltas were packed (a file per chroma file, manifest last) keep
    working beside packed ones: applied, archived whole, and read again by a rebuild."""
    from vector_pipeline.compaction.maintenance import rebuild_from_archive

    from vector_pipeline_tests.test_reliability.crafting import craft_delta

    old = craft_delta(settings, ids=["old1", "old2"], dimension=8, packed=False)
    new = produce(settings, ["new1"], rng)["delta_key"]
    assert any(k.endswith("/manifest.json") for k in all_keys(settings, old))
    [result] = ChromaCompactor(settings=settings).compact_pending("words")
    assert result.status == "ok" and result.deltas_processed == 2 and result.vector_count == 3
    assert all_keys(settings, "delta/") == []
    archived_old = all_keys(settings, old.replace("delta/", "archive/", 1))
    assert archived_old[-1].endswith("manifest.json") and len(archived_old) > 2  # the files and the manifest
    assert all_keys(settings, new.replace("delta/", "archive/", 1)) == [new.replace("delta/", "archive/", 1) + "delta.tar"]
    rebuilt = rebuild_from_archive(settings, "words")
    assert rebuilt.status == "ok" and rebuilt.vector_count == 3
    close_readers()
    assert sorted(open_snapshot(settings=settings).get_vectors("words")["ids"]) == ["new1", "old1", "old2"]
