"""Read consistency: a process that published (compact_deltas, or the publish step the
Dagster job calls) reads its own write at once even with a long pointer TTL, and an open
reader is switched by the publish itself (its next query sends no request); a publish by
another process is seen once the TTL passed, or at once with consistency="strong"; an
unknown consistency is refused by name. Not covered: fresh reads of uncompacted deltas
(test_fresh_reads.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vector_pipeline import ChromaCompactor, open_snapshot, produce_embedding_delta, query_snapshot
from vector_pipeline.io.aws import client
from vector_pipeline.config import Settings
from vector_pipeline.table.snapshot_store import SnapshotStore

from vector_pipeline_tests.helpers import vectors
from vector_pipeline_tests.test_reliability.helpers import start_compactor


def _publish(settings: Settings, ids: list[str], embeddings: list[list[float]]) -> None:
    key = produce_embedding_delta(ids, embeddings, settings=settings)["delta_key"]
    assert ChromaCompactor(settings=settings).compact_deltas([key], "words").status == "ok"


def test_read_your_writes_after_compact_deltas_despite_a_long_ttl(settings: Settings, rng: np.random.Generator,
                                                                  tmp_path: Path) -> None:
    patient = settings.with_overrides(reader_pointer_ttl_seconds=3600)
    embeddings = vectors(rng, 2)
    _publish(settings, ["a"], embeddings[:1])
    assert open_snapshot(snapshot_path=tmp_path, settings=patient).count("words") == 1
    _publish(settings, ["b"], embeddings[1:])
    assert open_snapshot(snapshot_path=tmp_path, settings=patient).count("words") == 2
    found = query_snapshot(query_embeddings=[embeddings[1]], n_results=1, snapshot_path=tmp_path, settings=patient)
    assert found["ids"] == [["b"]]


def test_an_open_reader_is_switched_by_the_publish_so_its_next_query_sends_no_request(
        settings: Settings, rng: np.random.Generator, tmp_path: Path) -> None:
    patient = settings.with_overrides(reader_pointer_ttl_seconds=3600)
    embeddings = vectors(rng, 2)
    _publish(settings, ["a"], embeddings[:1])
    assert query_snapshot(query_embeddings=[embeddings[0]], n_results=1, snapshot_path=tmp_path,
                          settings=patient)["ids"] == [["a"]]
    _publish(settings, ["b"], embeddings[1:])  # the reader switches inside this call
    sent: list[str] = []
    s3 = client("s3", patient)
    s3.meta.events.register("before-send", lambda event_name, **_: sent.append(event_name), unique_id="count")
    try:
        found = query_snapshot(query_embeddings=[embeddings[1]], n_results=1, snapshot_path=tmp_path, settings=patient)
    finally:
        s3.meta.events.unregister("before-send", unique_id="count")
    assert found["ids"] == [["b"]] and sent == []


def test_read_your_writes_after_the_publish_step_the_dagster_job_runs(settings: Settings, rng: np.random.Generator,
                                                                      tmp_path: Path) -> None:
    patient = settings.with_overrides(reader_pointer_ttl_seconds=3600)
    _publish(settings, ["a"], vectors(rng, 1))
    assert open_snapshot(snapshot_path=tmp_path, settings=patient).count("words") == 1
    key = produce_embedding_delta(["b", "c"], vectors(rng, 2), settings=settings)["delta_key"]
    compactor = ChromaCompactor(settings=settings)
    candidate = compactor.write_candidate("words", [key])  # the job's write step, then its publish step
    assert open_snapshot(snapshot_path=tmp_path, settings=patient).count("words") == 1  # not published yet
    compactor.publish_candidate(candidate)
    assert open_snapshot(snapshot_path=tmp_path, settings=patient).count("words") == 3


def test_another_process_publish_is_seen_with_strong_consistency(settings: Settings, rng: np.random.Generator,
                                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    patient = settings.with_overrides(reader_pointer_ttl_seconds=3600)
    _publish(settings, ["a"], vectors(rng, 1))
    assert open_snapshot(snapshot_path=tmp_path, settings=patient).count("words") == 1
    produce_embedding_delta(["b"], vectors(rng, 1), settings=settings)
    other = start_compactor(settings)  # a publish this process did not make
    out, err = other.communicate(timeout=300)
    assert other.returncode == 0, err[-2000:]
    reads: list[str] = []
    original = SnapshotStore.read_pointer
    monkeypatch.setattr(SnapshotStore, "read_pointer", lambda self, c: reads.append(c) or original(self, c))
    assert open_snapshot(snapshot_path=tmp_path, settings=patient).count("words") == 1  # bounded: within the TTL
    assert reads == []
    assert open_snapshot(snapshot_path=tmp_path, settings=patient, consistency="strong").count("words") == 2
    query_snapshot(query_embeddings=vectors(rng, 1), snapshot_path=tmp_path, settings=patient, consistency="strong")
    assert reads == ["words", "words"]  # strong: one pointer read per call


def test_unknown_consistency_is_refused_by_name(settings: Settings, rng: np.random.Generator, tmp_path: Path) -> None:
    _publish(settings, ["a"], vectors(rng, 1))
    with pytest.raises(ValueError, match="consistency must be one of.*'eventual'"):
        query_snapshot(query_embeddings=vectors(rng, 1), snapshot_path=tmp_path, settings=settings,
                       consistency="eventual")


def test_a_follower_switches_versions_beside_queries(settings: Settings, rng: np.random.Generator,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from vector_pipeline.read.snapshot_reader import SnapshotReader

    following = settings.with_overrides(reader_pointer_ttl_seconds=0.2, reader_follow_pointer=True)
    _publish(settings, ["a"], vectors(rng, 1))
    reader = SnapshotReader("words", tmp_path, following)
    try:
        first = reader.query(None, vectors(rng, 1), 5, None)["ids"][0]
        assert first == ["a"]
        readers_of_pointer: list[str] = []
        original = SnapshotStore.read_pointer
        monkeypatch.setattr(SnapshotStore, "read_pointer", lambda self, c: readers_of_pointer.append(
            threading.current_thread().name) or original(self, c))
        produce_embedding_delta(["b"], vectors(rng, 1), settings=settings)
        other = start_compactor(settings)  # another process publishes; no query runs meanwhile
        assert other.wait(timeout=300) == 0
        deadline = time.monotonic() + 30
        while reader.manifest.vector_count != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reader.manifest.vector_count == 2  # switched by the follower, not by a query
        assert sorted(reader.query(None, vectors(rng, 1), 5, None)["ids"][0]) == ["a", "b"]
        assert readers_of_pointer and set(readers_of_pointer) == {"vp-reader-words"}
    finally:
        reader.close()
