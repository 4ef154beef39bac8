"""Stateless compaction and the merge state as a log of parts, against the moto server.

Covers: a compactor with no warm cache (a fresh container) appends by downloading only the
manifest, the state parts and the masks — no segment file — and folds the recent tier
without the base; the state part one append writes is the same size whatever the
snapshot's size; a version written with one whole ``state.json.gz`` (snapshot format 2) is
read and appended to; last-writer-wins holds for a late delta whose rival sits in an older
part; a merge that is never published leaves the in-process state cache as it was; replaying
a version's parts from S3 gives the state the merge kept, through appends, folds and the
consolidation of a long log. S3 requests are counted with botocore's event hook on the real
client. Not covered: timings (the benchmark suite), crash points (the crash matrix).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np

from vector_pipeline import ChromaCompactor, open_snapshot, produce_embedding_delta
from vector_pipeline.format import manifest as mf
from vector_pipeline.config import Settings
from vector_pipeline.format.merge_state import (MAX_STATE_PARTS, STATE_CACHE, STATE_FILE, MergeState, part_path, replay,
                                         state_key, state_part_entries, state_part_paths)
from vector_pipeline.read.reader import close_readers
from vector_pipeline.compaction.retention import applied_delta_ids
from vector_pipeline.table.snapshot_store import PublishOutcome, SnapshotStore
from vector_pipeline.format.version_manifest import VersionManifest, version_prefix

from vector_pipeline_tests.helpers import vectors


def _produce(settings: Settings, ids: list[str], rng: np.random.Generator, tag: str = "",
             deletes: list[str] | None = None, collection: str = "words") -> str:
    return produce_embedding_delta(ids, vectors(rng, len(ids)), documents=[f"{i}{tag}" for i in ids],
                                   delete_ids=deletes, collection_name=collection, settings=settings,
                                   notify=False)["delta_key"]


def _manifest(settings: Settings, collection: str = "words") -> VersionManifest:
    store = SnapshotStore(settings)
    return store.read_manifest(collection, store.read_pointer(collection).version)


def _replayed_from_s3(settings: Settings, manifest: VersionManifest) -> MergeState:
    """The version's state replayed from its parts as stored, bypassing every cache."""
    s3 = SnapshotStore(settings).s3
    return replay([s3.get_object(Bucket=settings.vectors_bucket, Key=e.key)["Body"].read()
                   for e in state_part_entries(manifest)])


def _documents(settings: Settings, collection: str = "words") -> dict[str, str]:
    close_readers()
    got = open_snapshot(collection, settings=settings).get_vectors(collection, include=["documents"])
    return dict(zip(got["ids"], got["documents"]))


def _cold(settings: Settings, name: str) -> ChromaCompactor:
    """A compactor as a fresh container runs it: an empty cache dir, nothing in memory."""
    STATE_CACHE.clear()
    return ChromaCompactor(settings=settings.with_overrides(cache_dir=f"{settings.cache_dir}-{name}"))


@contextmanager
def _gets(compactor: ChromaCompactor) -> Iterator[set[str]]:
    keys: set[str] = set()
    handler = lambda params, **_: keys.add(params["Key"])  # noqa: E731
    compactor.s3.meta.events.register("provide-client-params.s3.GetObject", handler)
    try:
        yield keys
    finally:
        compactor.s3.meta.events.unregister("provide-client-params.s3.GetObject", handler)


def _size(settings: Settings, key: str) -> int:
    """Size of an object read during a compaction (a delta's objects are archived since)."""
    if key.startswith("delta/"):
        key = "archive/" + key[len("delta/"):]
    return SnapshotStore(settings).s3.head_object(Bucket=settings.vectors_bucket, Key=key)["ContentLength"]


def test_cold_append_downloads_no_segment_file(settings: Settings, rng: np.random.Generator) -> None:
    ChromaCompactor(settings=settings).compact_deltas([_produce(settings, [f"b{i}" for i in range(500)], rng)], "words")
    base = _manifest(settings)
    cold = _cold(settings, "cold")
    with _gets(cold) as gets:
        result = cold.compact_deltas([_produce(settings, ["n1", "b3"], rng, "-new")], "words")
    assert result.status == "ok" and result.fold == "append" and result.vector_count == 501
    snapshot_gets = {k for k in gets if k.startswith("snapshot/")}
    part_and_masks = {e.key for e in base.files if e.path in (*state_part_paths(base), "masks.json.gz")}
    assert not any("/segments/" in k for k in gets)
    assert snapshot_gets == {"snapshot/words/latest.json", version_prefix("words", base.version) + "manifest.json",
                             *part_and_masks}
    # What the result reports is what was fetched: the deltas, the state parts and the masks.
    assert result.bytes_downloaded == sum(_size(settings, k) for k in gets if not k.endswith(".json"))
    assert _documents(settings)["b3"] == "b3-new"


def test_cold_fold_of_the_recent_tier_downloads_no_base_file(settings: Settings, rng: np.random.Generator) -> None:
    config = settings.with_overrides(segment_max_count=2, segment_fold_ratio=0.9)
    compactor = ChromaCompactor(settings=config)
    compactor.compact_deltas([_produce(config, [f"b{i}" for i in range(300)], rng)], "words")
    compactor.compact_deltas([_produce(config, ["r1", "r2", "b1"], rng, "-r")], "words")
    before = _manifest(config)
    base_segment, recent_segment = before.segments[0].path, before.segments[1].path
    cold = _cold(config, "cold")
    with _gets(cold) as gets:
        result = cold.compact_deltas([_produce(config, ["r3", "b2"], rng, "-f")], "words")
    assert result.status == "ok" and result.fold == "fold_recent" and result.segments == 2
    assert not any(f"/{base_segment}/" in k for k in gets)
    assert any(f"/{recent_segment}/" in k for k in gets)
    after = _manifest(config)
    assert state_part_paths(after) == [state_part_paths(before)[0], part_path(after.version)]
    assert _replayed_from_s3(config, after) == STATE_CACHE.get(state_key(config.vectors_bucket, "words", after))
    docs = _documents(config)
    assert len(docs) == 303 and docs["b1"] == "b1-r" and docs["b2"] == "b2-f" and docs["r3"] == "r3-f"


def test_state_written_per_append_does_not_grow_with_the_snapshot(settings: Settings,
                                                                  rng: np.random.Generator) -> None:
    compactor = ChromaCompactor(settings=settings)
    written = {}
    for collection, size in (("small", 400), ("large", 4_000)):
        compactor.compact_deltas([_produce(settings, [f"b{i:05d}" for i in range(size)], rng,
                                           collection=collection)], collection)
        full_part = _manifest(settings, collection).files
        appended = compactor.compact_deltas([_produce(settings, [f"n{i:03d}" for i in range(100)], rng,
                                                      collection=collection)], collection)
        manifest = _manifest(settings, collection)
        own = {e.path: e for e in manifest.files}[part_path(appended.version)]
        written[collection] = (own.size, sum(e.size for e in full_part if e.path.startswith("state/")))
    (small_append, small_full), (large_append, large_full) = written["small"], written["large"]
    assert abs(small_append - large_append) <= 16  # the same 100 ids, one delta id: only gzip jitter
    assert large_full > 4 * small_full and large_append * 10 < large_full


def test_a_version_with_one_state_file_is_read_and_appended_to(settings: Settings, rng: np.random.Generator) -> None:
    """A version written before state parts existed: ``state.json.gz`` beside a format-2 manifest."""
    compactor = ChromaCompactor(settings=settings)
    base = _produce(settings, [f"x{i}" for i in range(50)], rng, "-base")
    late = _produce(settings, ["x3", "x4"], rng, "-late")  # minted before `newer`, compacted after it
    newer = _produce(settings, ["x3"], rng, "-newer", deletes=["x4"])
    compactor.compact_deltas([base, newer], "words")
    old_version = _manifest(settings).version
    _rewrite_as_format_2(settings, _manifest(settings))
    delta_id = lambda key: key.rstrip("/").rsplit("/", 1)[-1]  # noqa: E731
    assert applied_delta_ids(SnapshotStore(settings), "words", old_version) == {delta_id(base), delta_id(newer)}
    cold = _cold(settings, "cold")
    result = cold.compact_deltas([late, _produce(settings, ["y"], rng, "-y", deletes=["x5"])], "words")
    assert result.status == "ok" and result.deltas_processed == 2
    manifest = _manifest(settings)
    assert manifest.format == "vector_pipeline.snapshot/3"
    assert state_part_paths(manifest) == [STATE_FILE, part_path(result.version)]
    docs = _documents(settings)
    assert docs["x3"] == "x3-newer" and "x4" not in docs and "x5" not in docs and docs["y"] == "y-y"
    assert len(docs) == 49
    held = applied_delta_ids(SnapshotStore(settings), "words", result.version)
    assert {delta_id(k) for k in (base, late, newer)} <= held


def _rewrite_as_format_2(settings: Settings, manifest: VersionManifest) -> None:
    """Turn a one-part version into the layout format 2 wrote (test crafting, before any read)."""
    s3 = SnapshotStore(settings).s3
    [part] = state_part_entries(manifest)
    prefix = version_prefix("words", manifest.version)
    s3.copy_object(Bucket=settings.vectors_bucket, Key=prefix + STATE_FILE,
                   CopySource={"Bucket": settings.vectors_bucket, "Key": part.key})
    s3.delete_object(Bucket=settings.vectors_bucket, Key=part.key)
    old = {k: v for k, v in manifest.to_dict().items() if k != "state_parts"}
    files = [e for e in old["files"] if e["path"] != part.path]
    files.append({**part.as_dict(), "path": STATE_FILE, "key": prefix + STATE_FILE})
    old.update(format="vector_pipeline.snapshot/2", state_file=STATE_FILE, files=sorted(files, key=lambda e: e["path"]))
    s3.put_object(Bucket=settings.vectors_bucket, Key=prefix + mf.MANIFEST_NAME, Body=mf.dumps(old))
    STATE_CACHE.clear()


def test_late_delta_loses_to_a_newer_one_recorded_in_an_earlier_part(settings: Settings,
                                                                       rng: np.random.Generator) -> None:
    compactor = ChromaCompactor(settings=settings)
    compactor.compact_deltas([_produce(settings, [f"a{i}" for i in range(20)], rng, "-base")], "words")
    late_upsert = _produce(settings, ["a1", "a2"], rng, "-late")
    compactor.compact_deltas([_produce(settings, ["a1"], rng, "-newer", deletes=["a2"])], "words")  # part 2
    compactor.compact_deltas([_produce(settings, ["z"], rng, "-z")], "words")  # part 3
    result = _cold(settings, "cold").compact_deltas([late_upsert], "words")
    assert result.status == "ok" and result.deltas_processed == 1 and result.vector_count == 20
    assert len(state_part_paths(_manifest(settings))) == 4
    docs = _documents(settings)
    assert docs["a1"] == "a1-newer" and "a2" not in docs and docs["z"] == "z-z"


def test_an_unpublished_merge_leaves_the_state_cache_as_it_was(settings: Settings, rng: np.random.Generator) -> None:
    compactor = ChromaCompactor(settings=settings)
    compactor.compact_deltas([_produce(settings, ["a", "b", "c"], rng, "-base")], "words")
    base = _manifest(settings)
    key = state_key(settings.vectors_bucket, "words", base)
    before = STATE_CACHE.get(key).copy()
    pending = _produce(settings, ["a", "d"], rng, "-new", deletes=["b"])
    abandoned = compactor.write_candidate("words", [pending])  # written, never published
    assert abandoned.manifest is not None
    compactor.discard(abandoned)
    assert STATE_CACHE.get(key) == before == _replayed_from_s3(settings, base)
    lost = compactor.write_candidate("words", [pending])
    assert STATE_CACHE.get(key) == before
    compactor.compact_deltas([_produce(settings, ["e"], rng, "-e")], "words")  # moves the pointer first
    assert compactor.publish_candidate(lost) is PublishOutcome.CONFLICT
    current = _manifest(settings)
    assert STATE_CACHE.get(state_key(settings.vectors_bucket, "words", current)) == _replayed_from_s3(settings, current)
    for candidate in (abandoned, lost):
        assert STATE_CACHE.get(state_key(settings.vectors_bucket, "words", candidate.manifest)) is None
    assert compactor.compact_deltas([pending], "words").status == "ok"
    assert _documents(settings) == {"a": "a-new", "c": "c-base", "d": "d-new", "e": "e-e"}


def test_replayed_parts_equal_the_merged_state_through_folds_and_a_long_log(settings: Settings,
                                                                            rng: np.random.Generator) -> None:
    config = settings.with_overrides(segment_max_count=3, segment_fold_ratio=0.5)
    compactor = ChromaCompactor(settings=config)
    live = {f"b{i}": "" for i in range(60)}
    compactor.compact_deltas([_produce(config, list(live), rng)], "words")
    folds, longest = set(), 0
    steps = [(["n0", "n1"], []), (["n2", "b1"], ["b2"]), (["n3"], []), (["n4", "b5"], [])]
    steps += [([], [f"b{10 + i}"]) for i in range(MAX_STATE_PARTS + 1)]  # deletes only: a part, no segment
    for number, (upserts, deletes) in enumerate(steps):
        result = compactor.compact_deltas([_produce(config, upserts, rng, f"-{number}", deletes=deletes)], "words")
        assert result.status == "ok", result.error
        live.update({i: f"-{number}" for i in upserts})
        for record_id in deletes:
            live.pop(record_id, None)
        manifest = _manifest(config)
        replayed = _replayed_from_s3(config, manifest)
        assert replayed == STATE_CACHE.get(state_key(config.vectors_bucket, "words", manifest))
        assert set(replayed.location) == set(live) and len(live) == manifest.vector_count
        parts = state_part_paths(manifest)
        assert len(parts) <= MAX_STATE_PARTS and len(set(parts)) == len(parts)
        folds.add(result.fold)
        longest = max(longest, len(parts))
    assert {"append", "fold_recent"} <= folds and longest == MAX_STATE_PARTS
    assert _documents(config) == {i: f"{i}{tag}" for i, tag in live.items()}
