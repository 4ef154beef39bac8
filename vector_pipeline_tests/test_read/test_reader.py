"""Readers: query_snapshot / open_snapshot follow the pointer, keep one local copy per
version, never download twice for an unchanged pointer, never expose a partly
downloaded or corrupt version, and return documents and metadata exactly as written."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from vector_pipeline import ChromaCompactor, open_snapshot, produce_embedding_delta, query_snapshot
from vector_pipeline.io.aws import client
from vector_pipeline.config import Settings
from vector_pipeline.format.manifest import IntegrityError, sha256_of
from vector_pipeline.table.snapshot_store import SnapshotNotFoundError, SnapshotStore

from vector_pipeline_tests.helpers import vectors


def _publish(settings: Settings, ids: list[str], embeddings: list[list[float]], **extra: object) -> str:
    key = produce_embedding_delta(ids, embeddings, settings=settings, **extra)["delta_key"]
    result = ChromaCompactor(settings=settings).compact_deltas([key], "words")
    assert result.status == "ok"
    return str(result.version)


def test_query_returns_nearest_with_exact_documents_and_metadata(settings: Settings, rng: np.random.Generator,
                                                                 tmp_path: Path) -> None:
    embeddings = vectors(rng, 30)
    metadatas = [{"merchant": "walmart" if i % 2 else "target", "total": i * 1.5, "paid": bool(i % 3), "line": i}
                 for i in range(30)]
    documents = [f"receipt line {i} ünïcode" for i in range(30)]
    _publish(settings, [f"w{i}" for i in range(30)], embeddings, documents=documents, metadatas=metadatas)
    result = query_snapshot(query_embeddings=[embeddings[7]], n_results=3, snapshot_path=tmp_path, settings=settings)
    assert result["ids"][0][0] == "w7"
    assert result["documents"][0][0] == documents[7]
    assert result["metadatas"][0][0] == metadatas[7]
    filtered = query_snapshot(query_embeddings=[embeddings[7]], n_results=5, where={"merchant": "walmart"},
                              snapshot_path=tmp_path, settings=settings)
    assert filtered["ids"][0] and all(m["merchant"] == "walmart" for m in filtered["metadatas"][0])


def test_second_query_on_unchanged_pointer_does_not_download(settings: Settings, rng: np.random.Generator,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    embeddings = vectors(rng, 5)
    _publish(settings, [f"w{i}" for i in range(5)], embeddings)
    query_snapshot(query_embeddings=[embeddings[0]], n_results=1, snapshot_path=tmp_path, settings=settings)
    downloads = []
    original = SnapshotStore.download_version
    monkeypatch.setattr(SnapshotStore, "download_version",
                        lambda self, *a, **k: downloads.append(a) or original(self, *a, **k))
    query_snapshot(query_embeddings=[embeddings[1]], n_results=1, snapshot_path=tmp_path, settings=settings)
    assert downloads == []


def test_reader_moves_to_the_new_version_after_publish(settings: Settings, rng: np.random.Generator,
                                                       tmp_path: Path) -> None:
    first = _publish(settings, ["a"], vectors(rng, 1))
    assert open_snapshot(snapshot_path=tmp_path, settings=settings).count("words") == 1
    second = _publish(settings, ["b", "c"], vectors(rng, 2))
    reader = open_snapshot(snapshot_path=tmp_path, settings=settings)
    assert reader.count("words") == 3
    assert (tmp_path / "words" / second).is_dir() and first != second


def test_open_snapshot_is_read_only(settings: Settings, rng: np.random.Generator, tmp_path: Path) -> None:
    _publish(settings, ["a"], vectors(rng, 1))
    reader = open_snapshot(snapshot_path=tmp_path, settings=settings)
    assert reader.mode == "read"
    with pytest.raises(RuntimeError, match="read"):
        reader.upsert_vectors("words", ["b"], vectors(rng, 1))
    with pytest.raises(RuntimeError, match="read"):
        reader.delete_vectors("words", ["a"])


def test_corrupt_download_is_never_exposed(settings: Settings, rng: np.random.Generator, tmp_path: Path) -> None:
    version = _publish(settings, ["a", "b"], vectors(rng, 2))
    manifest = SnapshotStore(settings).read_manifest("words", version)
    victim = max(manifest.files, key=lambda f: f.size)
    client("s3", settings).put_object(Bucket=settings.vectors_bucket, Key=victim.key, Body=b"truncated")
    with pytest.raises(IntegrityError, match=victim.path.split("/")[-1]):
        open_snapshot(snapshot_path=tmp_path, settings=settings)
    assert not (tmp_path / "words" / version).exists()
    assert [p.name for p in (tmp_path / "words").iterdir()] == [".blobs"]  # staging dirs removed too
    kept = list((tmp_path / "words" / ".blobs").iterdir())  # only files that matched their checksum
    assert kept and all(sha256_of(blob) == blob.name for blob in kept)


def test_query_before_first_publish_is_a_clear_error(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(SnapshotNotFoundError, match="no published snapshot"):
        query_snapshot(query_embeddings=[[0.0] * 8], snapshot_path=tmp_path, settings=settings)


def test_query_texts_use_the_offline_minilm_model(settings: Settings, tmp_path: Path) -> None:
    from vector_pipeline.chroma.embeddings import MiniLMProvider

    provider = MiniLMProvider()
    words = ["walmart", "banana", "receipt total", "coffee"]
    _publish(settings, words, provider.embed(words), documents=words)
    result = query_snapshot(query_texts=["walmart supercenter"], n_results=1, snapshot_path=tmp_path, settings=settings)
    assert result["ids"] == [["walmart"]]


def test_query_texts_refuse_a_collection_of_another_model(settings: Settings, rng: np.random.Generator,
                                                          tmp_path: Path) -> None:
    _publish(settings, ["a"], vectors(rng, 1), embedding_provider="openai:text-embedding-3-small")
    with pytest.raises(ValueError, match="text-embedding-3-small"):
        query_snapshot(query_texts=["walmart"], snapshot_path=tmp_path, settings=settings)


def test_pointer_is_reread_at_most_once_per_ttl(settings: Settings, rng: np.random.Generator, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Wide enough that a loaded machine still reads twice inside it; no follower thread.
    cached = settings.with_overrides(reader_pointer_ttl_seconds=2.0, reader_follow_pointer=False)
    _publish(settings, ["a"], vectors(rng, 1))
    assert open_snapshot(snapshot_path=tmp_path, settings=cached).count("words") == 1
    reads = []
    original = SnapshotStore.read_pointer
    monkeypatch.setattr(SnapshotStore, "read_pointer", lambda self, c: reads.append(c) or original(self, c))
    open_snapshot(snapshot_path=tmp_path, settings=cached)  # within the TTL
    assert reads == []
    time.sleep(2.1)
    open_snapshot(snapshot_path=tmp_path, settings=cached)  # the TTL passed
    assert reads == ["words"]
