"""Readers reuse what they hold: after a publish a warm reader downloads only the files
whose content it lacks (the new segment, its masks), counted as GET requests on the
reader's own S3 client; the pristine copies it reuses stay byte-identical to the
manifest's checksums after chroma opened and queried the segments (chroma writes into the
working copies it opens, HNSW files included for small segments); a second reader on the
same cache root downloads nothing; versions no longer named are pruned.
Not covered here: consistency (test_reader_consistency.py), fresh reads (test_fresh_reads.py),
and readers under publishes and GC in other processes (test_reliability)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from vector_pipeline import ChromaCompactor, produce_embedding_delta
from vector_pipeline.config import Settings
from vector_pipeline.format.manifest import sha256_of
from vector_pipeline.read.snapshot_reader import SnapshotReader
from vector_pipeline.format.version_manifest import segments_of
from vector_pipeline.format.merge_state import state_part_paths

from vector_pipeline_tests.helpers import vectors
from vector_pipeline_tests.test_reliability.helpers import start_compactor


def _publish(settings: Settings, ids: list[str], embeddings: list[list[float]], **extra: object) -> dict:
    key = produce_embedding_delta(ids, embeddings, settings=settings, **extra)["delta_key"]
    result = ChromaCompactor(settings=settings).compact_deltas([key], "words")
    assert result.status == "ok"
    return result


@contextmanager
def _gets(reader: SnapshotReader) -> Iterator[list[str]]:
    """Every GetObject the reader's S3 client sends meanwhile, by key (boto3's event hook;
    the client is shared in the process, so only the reader runs inside)."""
    keys: list[str] = []
    handler = lambda params, **_: keys.append(params["Key"])  # noqa: E731
    reader.store.s3.meta.events.register("provide-client-params.s3.GetObject", handler)
    try:
        yield keys
    finally:
        reader.store.s3.meta.events.unregister("provide-client-params.s3.GetObject", handler)


def _publish_elsewhere(settings: Settings, ids: list[str], embeddings: list[list[float]]) -> None:
    """A publish by another process: this process's readers learn of it from the pointer."""
    produce_embedding_delta(ids, embeddings, settings=settings)
    compactor = start_compactor(settings, "--collection", "words")
    _, err = compactor.communicate(timeout=300)
    assert compactor.returncode == 0, err[-2000:]


def test_refresh_after_an_append_downloads_only_the_new_segment(settings: Settings, rng: np.random.Generator,
                                                                tmp_path: Path) -> None:
    _publish(settings, [f"base{i}" for i in range(300)], vectors(rng, 300))
    reader = SnapshotReader("words", tmp_path, settings)
    reader.refresh()
    first = reader.manifest
    assert first is not None and len(segments_of(first)) == 1
    before = reader.local.fetched.bytes
    _publish_elsewhere(settings, ["new0", "new1", "base3"], vectors(rng, 3))  # base3 is masked in the base
    with _gets(reader) as gets:
        reader.refresh()
    second = reader.manifest
    assert second is not None and len(segments_of(second)) == 2
    held = {e.sha256 for e in first.files}
    new_files = [e for e in second.files if e.sha256 not in held and e.path not in state_part_paths(second)]
    pointer_and_manifest = ["snapshot/words/latest.json", f"snapshot/words/{second.version}/manifest.json"]
    assert sorted(gets) == sorted(pointer_and_manifest + [e.key for e in new_files])
    assert reader.local.fetched.bytes - before == sum(e.size for e in new_files)
    new_segment = segments_of(second)[-1].path + "/"
    assert all(e.path.startswith(new_segment) or e.path == "masks.json.gz" for e in new_files)
    result = reader.query(None, [vectors(rng, 1)[0]], 400, None)
    assert sorted(result["ids"][0]) == sorted([f"base{i}" for i in range(300)] + ["new0", "new1"])
    reader.close()


def test_reused_files_stay_byte_identical_to_the_manifest_after_queries(settings: Settings, rng: np.random.Generator,
                                                                       tmp_path: Path) -> None:
    _publish(settings, [f"a{i}" for i in range(50)], vectors(rng, 50))
    reader = SnapshotReader("words", tmp_path, settings)
    for round_ in range(3):  # each round queries, then moves the pointer: the base is reused twice
        reader.query(None, vectors(rng, 2), 5, None)
        manifest = reader.manifest
        assert manifest is not None
        version_dir = tmp_path / "words" / manifest.version
        state_parts = state_part_paths(manifest)
        for entry in manifest.files:
            blob = reader.local.blob_path(entry.sha256)
            assert blob.is_file() or entry.path in state_parts  # state is fetched by fresh reads only
            if blob.is_file():
                assert sha256_of(blob) == entry.sha256, entry.path
            if not entry.path.startswith("segments/") and entry.path not in state_parts:  # masks: linked
                assert sha256_of(version_dir / entry.path) == entry.sha256, entry.path
        _publish(settings, [f"r{round_}"], vectors(rng, 1))
    reader.close()


def test_a_second_reader_on_the_same_cache_downloads_no_file(settings: Settings, rng: np.random.Generator,
                                                            tmp_path: Path) -> None:
    _publish(settings, [f"a{i}" for i in range(20)], vectors(rng, 20))
    _publish(settings, ["b"], vectors(rng, 1))
    first = SnapshotReader("words", tmp_path, settings)
    first.refresh()
    first.close()
    second = SnapshotReader("words", tmp_path, settings)
    with _gets(second) as gets:
        assert second.refresh().count("words") == 21
    assert second.local.fetched.files == 0 and len(gets) == 2  # the pointer and the manifest
    second.close()


def test_versions_no_longer_named_are_pruned_with_their_unshared_files(settings: Settings, rng: np.random.Generator,
                                                                       tmp_path: Path) -> None:
    from vector_pipeline.compaction.maintenance import fold_segments

    _publish(settings, [f"a{i}" for i in range(20)], vectors(rng, 20))
    reader = SnapshotReader("words", tmp_path, settings)
    reader.refresh()
    oldest = reader.manifest
    _publish(settings, ["b"], vectors(rng, 1))
    assert fold_segments(settings, "words").status == "ok"
    reader.refresh()
    reader.local.prune(keep=[reader.manifest], grace_seconds=0)
    names = {p.name for p in (tmp_path / "words").iterdir()}
    assert names == {".blobs", ".segments", reader.version}
    held = {p.name for p in (tmp_path / "words" / ".blobs").iterdir()}
    assert held == {e.sha256 for e in reader.manifest.files if e.path not in state_part_paths(reader.manifest)}
    assert not held & ({e.sha256 for e in oldest.files} - {e.sha256 for e in reader.manifest.files})
    assert reader.query(None, vectors(rng, 1), 30, None)["ids"][0]
    reader.close()
