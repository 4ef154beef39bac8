"""The figures: producer latency, compaction (ours warm and cold, the baseline; the merge
state each writes) for delta
counts and snapshot sizes, the background folds, chroma's own bulk upsert rate and raw
hnswlib's insert rate (the ceilings), query latency warm (with and without a filter) and
cold start on segmented and folded versions, a warm reader's refresh after publishes
(bytes downloaded, first query) and fresh reads' cost per query, bytes moved, peak memory."""

import json
import logging
import os
import resource
import subprocess
import sys
from collections import Counter
import shutil
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from vector_pipeline import ChromaCompactor, ChromaDBClient, produce_embedding_delta
from vector_pipeline.io.aws import client
from vector_pipeline.config import Settings
from vector_pipeline.compaction.maintenance import fold_segments
from vector_pipeline.format.merge_state import STATE_CACHE, part_path, state_part_paths
from vector_pipeline.read.snapshot_reader import SnapshotReader
from vector_pipeline.format.version_manifest import segments_of
from vector_pipeline.table.snapshot_store import SnapshotStore

from .baseline import baseline_compaction, seed_baseline

log = logging.getLogger("benchmarks")
DIMENSION = 384
DELTA_SIZE = 100


class Workload:
    """Seeded vectors, and the snapshots and deltas built from them."""

    def __init__(self, settings: Settings, seed: int = 42) -> None:
        self.settings = settings
        self.rng = np.random.default_rng(seed)
        self.next_id = 0

    def vectors(self, count: int) -> np.ndarray:
        data = self.rng.standard_normal((count, DIMENSION)).astype(np.float32)
        return data / np.linalg.norm(data, axis=1, keepdims=True)

    def records(self, count: int) -> tuple[list[str], list[list[float]], list[dict[str, Any]]]:
        ids = [f"v{self.next_id + i}" for i in range(count)]
        self.next_id += count
        metadatas = [{"merchant": f"m{int(i[1:]) % 20}", "total": float(int(i[1:]) % 997)} for i in ids]
        return ids, self.vectors(count).tolist(), metadatas

    def delta(self, collection: str, size: int = DELTA_SIZE) -> str:
        ids, embeddings, metadatas = self.records(size)
        return produce_embedding_delta(ids, embeddings, documents=ids, metadatas=metadatas,
                                       collection_name=collection, settings=self.settings, notify=False)["delta_key"]

    def snapshot(self, collection: str, size: int) -> str:
        """Publish version 1 of ``collection`` holding ``size`` vectors (setup, not measured)."""
        keys = [self.delta(collection, min(5000, size - start)) for start in range(0, size, 5000)]
        result = ChromaCompactor(settings=self.settings).compact_deltas(keys, collection)
        assert result.status == "ok", result
        return str(result.version)


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": 1000 * pick(0.50), "p95_ms": 1000 * pick(0.95), "p99_ms": 1000 * pick(0.99)}


def producer_latency(work: Workload, sizes: list[int], repeats: int) -> dict[str, Any]:
    out = {}
    for size in sizes:
        work.delta("producer", size)  # warm: clients, chroma bindings
        samples = []
        for _ in range(repeats):
            ids, embeddings, metadatas = work.records(size)
            started = time.perf_counter()
            produce_embedding_delta(ids, embeddings, documents=ids, metadatas=metadatas,
                                    collection_name="producer", settings=work.settings)
            samples.append(time.perf_counter() - started)
        out[str(size)] = {"mean_ms": 1000 * statistics.mean(samples), **_percentiles(samples)}
        log.info("producer %d vectors: %.0f ms", size, out[str(size)]["mean_ms"])
    return out


def compaction(work: Workload, snapshot_sizes: list[int], delta_counts: list[int]) -> tuple[list[dict], list[dict]]:
    """Rows of ours (warm and cold cache) beside the baseline, and the background folds run
    between rows (each row starts from a version of one segment)."""
    rows, folds = [], []
    store = SnapshotStore(work.settings)
    for size in snapshot_sizes:
        collection = f"bench{size}"
        work.snapshot(collection, size)
        with _base_segment(store, collection) as base_dir:
            latest = seed_baseline(store.s3, store.bucket, collection, base_dir)
        warm = ChromaCompactor(settings=work.settings)
        for count in delta_counts:
            folded = fold_segments(work.settings, collection)
            if folded.status == "ok":
                folds.append({"snapshot_vectors": size, "vector_count": folded.vector_count,
                              "seconds": folded.duration_seconds, "merge_seconds": folded.merge_seconds,
                              "bytes_moved": folded.bytes_downloaded + folded.bytes_uploaded})
            warm.compact_deltas([], collection)  # the warm compactor's cache follows the pointer
            keys = [work.delta(collection) for _ in range(count)]
            base = baseline_compaction(store.s3, store.bucket, latest, keys, collection)
            with counted_requests(work.settings) as requests:
                result = warm.compact_deltas(keys, collection)
            assert result.status == "ok", result
            cold_keys = [work.delta(collection) for _ in range(count)]
            fold_segments(work.settings, collection)  # the same start as the warm run: one segment
            cold_settings = work.settings.with_overrides(cache_dir=tempfile.mkdtemp(prefix="bench-cold-"))
            STATE_CACHE.clear()  # a fresh container: no cache dir, no merge state in memory
            cold = ChromaCompactor(settings=cold_settings).compact_deltas(cold_keys, collection)
            shutil.rmtree(cold_settings.cache_dir, ignore_errors=True)
            assert cold.status == "ok", cold
            merged = count * DELTA_SIZE
            row = {
                "snapshot_vectors": size, "deltas": count, "merged_vectors": merged,
                "fold": result.fold, "segments": result.segments,
                "ours_warm_s": result.duration_seconds, "ours_cold_s": cold.duration_seconds,
                "ours_warm_publish_s": result.publish_seconds,
                "ours_merge_s": result.merge_seconds,
                "baseline_s": base["seconds"], "baseline_merge_s": base["merge_seconds"],
                "ours_warm_vectors_per_s": merged / result.duration_seconds,
                "ours_merge_vectors_per_s": merged / result.merge_seconds,
                "baseline_merge_vectors_per_s": merged / base["merge_seconds"],
                "ours_warm_bytes_moved": result.bytes_downloaded + result.bytes_uploaded,
                "ours_cold_bytes_moved": cold.bytes_downloaded + cold.bytes_uploaded,
                "baseline_bytes_moved": base["bytes_moved"],
                "ours_cold_bytes_downloaded": cold.bytes_downloaded,
                "ours_warm_bytes_downloaded": result.bytes_downloaded,
                "cold_to_warm": cold.duration_seconds / result.duration_seconds, "cold_fold": cold.fold,
                **_state_bytes(store, collection, result.version),
                "speedup_vs_baseline": base["seconds"] / result.duration_seconds,
                "requests_per_delta": sum(requests.values()) / count,
                "requests": dict(requests),
                "publish_speedup_vs_baseline": base["seconds"] / result.publish_seconds,
            }
            log.info("compaction %s", {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
            rows.append(row)
    return rows, folds


def _state_bytes(store: SnapshotStore, collection: str, version: str) -> dict[str, int]:
    """The merge state one compaction wrote (its part), beside the whole state (what a
    version of format 2 rewrote every time)."""
    manifest = store.read_manifest(collection, version)
    own = next(e for e in manifest.files if e.path == part_path(version))
    return {"state_bytes_written": own.size, "state_parts": len(state_part_paths(manifest)),
            "whole_state_bytes": len(store.read_merge_state(manifest).to_bytes())}


@contextmanager
def counted_requests(settings: Settings) -> Iterator[Counter]:
    """Every AWS request this process sends while the block runs, by service and operation
    (counted as botocore sends them, retries included)."""
    counts: Counter = Counter()

    def count(event_name: str, **_: Any) -> None:
        _, service, operation = event_name.split(".", 2)
        counts[f"{service} {operation}"] += 1

    clients = [client(service, settings) for service in ("s3", "sqs", "dynamodb")]
    for aws_client in clients:
        aws_client.meta.events.register("before-send", count, unique_id="benchmark-request-count")
    try:
        yield counts
    finally:
        for aws_client in clients:
            aws_client.meta.events.unregister("before-send", unique_id="benchmark-request-count")


@contextmanager
def _base_segment(store: SnapshotStore, collection: str) -> Iterator[Path]:
    """A private copy of the published version's base segment."""
    manifest = store.read_manifest(collection, store.read_pointer(collection).version)
    root = Path(tempfile.mkdtemp(prefix="bench-base-"))
    try:
        yield store.download_version(manifest, root) / segments_of(manifest)[0].path
    finally:
        shutil.rmtree(root, ignore_errors=True)


def ceilings(work: Workload, snapshot_size: int, vectors: int) -> dict[str, Any]:
    """The same ``vectors`` records inserted by chroma's own bulk upsert, into a copy of the
    base (what the baseline pays) and into an empty collection (what an appended segment
    pays), and by raw hnswlib with the same HNSW settings: the ceilings."""
    ids, embeddings, metadatas = work.records(vectors)
    store = SnapshotStore(work.settings)
    rates = {"snapshot_vectors": snapshot_size, "vectors": vectors}
    with _base_segment(store, f"bench{snapshot_size}") as base_dir:
        rates["chroma_into_base_per_s"] = vectors / _chroma_upsert(work, base_dir, f"bench{snapshot_size}",
                                                                  ids, embeddings, metadatas)
    with tempfile.TemporaryDirectory(prefix="bench-empty-") as empty:
        rates["chroma_into_empty_per_s"] = vectors / _chroma_upsert(work, Path(empty), "empty",
                                                                    ids, embeddings, metadatas)
    rates["hnswlib_per_s"] = vectors / _hnswlib_insert(work.settings, np.asarray(embeddings, dtype=np.float32))
    log.info("ceilings %s", rates)
    return rates


def _chroma_upsert(work: Workload, directory: Path, collection: str, ids: list[str],
                   embeddings: list[list[float]], metadatas: list[dict[str, Any]]) -> float:
    with ChromaDBClient(directory, mode="snapshot", settings=work.settings) as db:
        db.ensure_collection(collection)
        started = time.perf_counter()
        db.upsert_vectors(collection, ids, embeddings, documents=ids, metadatas=metadatas)
        return time.perf_counter() - started


def _hnswlib_insert(settings: Settings, data: np.ndarray) -> float:
    import hnswlib

    index = hnswlib.Index(space="cosine", dim=data.shape[1])
    index.init_index(max_elements=len(data), ef_construction=settings.hnsw.construction_ef,
                     M=settings.hnsw.max_neighbors)
    started = time.perf_counter()
    index.add_items(data, np.arange(len(data)))
    return time.perf_counter() - started


def query_latency(work: Workload, snapshot_sizes: list[int], queries: int) -> list[dict[str, Any]]:
    """Warm and cold queries on the version as the compactions left it (base + recent
    segments), then on the same content folded into one segment."""
    rows = []
    for size in snapshot_sizes:
        collection = f"bench{size}"
        for layout in ("as compacted", "folded"):
            if layout == "folded":
                fold_segments(work.settings, collection)
            rows.append(_query_row(work, collection, size, layout, queries))
    return rows


def _query_row(work: Workload, collection: str, size: int, layout: str, queries: int) -> dict[str, Any]:
    probes = work.vectors(queries).tolist()
    root = tempfile.mkdtemp(prefix="bench-reader-")
    reader = SnapshotReader(collection, root, work.settings)
    started = time.perf_counter()
    reader.refresh()  # cold start: pointer + manifest + download + checksums + open
    cold = time.perf_counter() - started
    segments = len(reader.manifest.segments)
    warm = _timed(lambda q: reader.query(None, [q], 10, None), probes)
    filtered = _timed(lambda q: reader.query(None, [q], 10, {"merchant": "m3"}), probes)
    vectors = reader.manifest.vector_count
    reader.close()
    shutil.rmtree(root, ignore_errors=True)
    log.info("query %d (%s, %d segments): cold %.2fs, warm p50 %.1f ms, where p50 %.1f ms", size, layout, segments,
             cold, warm["p50_ms"], filtered["p50_ms"])
    return {"snapshot_vectors": size, "vectors": vectors, "layout": layout, "segments": segments,
            "cold_start_s": cold, "warm": warm, "warm_where": filtered}


def _timed(call: Callable[[list[float]], Any], probes: list[list[float]]) -> dict[str, float]:
    samples = []
    for probe in probes:
        started = time.perf_counter()
        call(probe)
        samples.append(time.perf_counter() - started)
    return _percentiles(samples)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reader_refresh(work: Workload, snapshot_sizes: list[int], queries: int, publishes: int = 5,
                   pending_deltas: int = 10) -> list[dict[str, Any]]:
    """A warm reader while the pointer moves: what it downloads after each publish (one
    delta of 100 vectors, appended as a segment) against the new segment's bytes, and its
    first query after the publish against its warm queries — when this process published
    (read-your-writes: the publish hands the version to the open reader), and when another
    process did (the follower thread switches beside the queries); then fresh reads: the
    cost per query of ``include_pending`` over ``pending_deltas`` uncompacted deltas."""
    rows = []
    for size in snapshot_sizes:
        collection = f"bench{size}"
        roots = [tempfile.mkdtemp(prefix="bench-refresh-") for _ in range(2)]
        # First a reader of the process that publishes: each publish switches it (read-your-writes) ...
        reader = SnapshotReader(collection, roots[0], work.settings.with_overrides(reader_follow_pointer=False))
        compactor = ChromaCompactor(settings=work.settings)
        probes = work.vectors(queries).tolist()
        reader.refresh()
        warm = _timed(lambda q: reader.query(None, [q], 10, None), probes)
        refreshes = []
        for _ in range(publishes):
            key = work.delta(collection)
            before_bytes, before_files = reader.local.fetched.bytes, reader.local.fetched.files
            result = compactor.compact_deltas([key], collection)  # the open reader switches inside it
            assert result.status == "ok", result
            manifest = reader.store.read_manifest(collection, str(result.version))
            newest = segments_of(manifest)[-1].path + "/"
            segment_bytes = sum(e.size for e in manifest.files if e.path.startswith(newest))
            started = time.perf_counter()
            reader.query(None, [probes[0]], 10, None)
            first = time.perf_counter() - started
            assert reader.version == result.version
            refreshes.append({"segment_bytes": segment_bytes, "downloaded_bytes": reader.local.fetched.bytes - before_bytes,
                              "downloaded_files": reader.local.fetched.files - before_files,
                              "version_bytes": manifest.total_bytes, "first_query_ms": 1000 * first,
                              "warm_same_version_ms": _warm_on_this_version(reader, probes),
                              "segments": len(segments_of(manifest)), "fold": result.fold})
        reader.close()
        # ... then one with the default settings, whose follower thread switches beside the
        # queries to versions another process publishes.
        reader = SnapshotReader(collection, roots[1], work.settings)
        reader.refresh()
        _timed(lambda q: reader.query(None, [q], 10, None), probes)
        followed = [_followed_publish(work, reader, collection, probes[0]) for _ in range(publishes)]
        after = _timed(lambda q: reader.query(None, [q], 10, None), probes)
        fresh = _fresh_reads(work, reader, collection, probes, pending_deltas)
        reader.close()
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
        both = refreshes + followed
        row = {"snapshot_vectors": size, "warm": warm, "warm_after": after, "refreshes": refreshes,
               "followed": followed,
               "bytes_ratio": statistics.median(r["downloaded_bytes"] / r["segment_bytes"] for r in both),
               # The first query against warm queries on the same version (as many segments).
               "first_query_ratio": statistics.median(r["first_query_ms"] / r["warm_same_version_ms"]
                                                      for r in refreshes),
               "followed_first_query_ratio": statistics.median(r["first_query_ms"] / r["warm_same_version_ms"]
                                                               for r in followed),
               **fresh}
        log.info("reader refresh %d: bytes %.2f× the new segment, first query %.1f× warm; include_pending %.1f× warm",
                 size, row["bytes_ratio"], row["first_query_ratio"], row["pending_warm"]["p50_ms"] / after["p50_ms"])
        rows.append(row)
    return rows


def _warm_on_this_version(reader: SnapshotReader, probes: list[list[float]], repeats: int = 20) -> float:
    """p50 ms of queries right after the first one, on the same version: the first query's
    comparator (a version of more segments answers a little slower, warm or not)."""
    return _timed(lambda q: reader.query(None, [q], 10, None), (probes * repeats)[:repeats])["p50_ms"]


def _publish_elsewhere(work: Workload, collection: str) -> dict[str, Any]:
    """``vector-pipeline compact`` in another process: a publish this process's readers learn
    of from the pointer only. Returns its result."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VECTORS_", "DELTA_", "DYNAMODB_"))}
    env.update(work.settings.local_aws_environment(), VECTOR_PIPELINE_CACHE_DIR=work.settings.cache_dir + "-elsewhere")
    done = subprocess.run([sys.executable, "-m", "vector_pipeline.cli", "compact", "--collection", collection, "--json"],
                          env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"compaction in another process failed: {done.stderr[-2000:]}")
    [result] = [r for r in json.loads(done.stdout) if r["collection"] == collection]
    return result


def _followed_publish(work: Workload, reader: SnapshotReader, collection: str, probe: list[float]) -> dict[str, Any]:
    """A publish by another process, which the reader's follower thread picks up (no query
    waits for it): time from the publish to the switch, bytes fetched, then the first query."""
    before = reader.local.fetched.bytes, reader.local.fetched.files
    work.delta(collection)
    result = _publish_elsewhere(work, collection)
    assert result["status"] == "ok", result
    published = time.perf_counter()
    manifest = reader.store.read_manifest(collection, str(result["version"]))
    newest = segments_of(manifest)[-1].path + "/"
    while reader.version != result["version"] and time.perf_counter() - published < 60:
        time.sleep(0.002)
    switched = time.perf_counter() - published
    started = time.perf_counter()
    reader.query(None, [probe], 10, None)
    first = time.perf_counter() - started
    return {"segment_bytes": sum(e.size for e in manifest.files if e.path.startswith(newest)),
            "downloaded_bytes": reader.local.fetched.bytes - before[0],
            "downloaded_files": reader.local.fetched.files - before[1], "version_bytes": manifest.total_bytes,
            "switched_after_ms": 1000 * switched, "first_query_ms": 1000 * first,
            "warm_same_version_ms": _warm_on_this_version(reader, [probe]),
            "segments": len(segments_of(manifest)), "fold": result["fold"]}


def _fresh_reads(work: Workload, reader: SnapshotReader, collection: str, probes: list[list[float]],
                 count: int) -> dict[str, Any]:
    for _ in range(count):
        work.delta(collection)  # produced, not compacted
    lists, fetched = reader.pending.lists, reader.pending.fetched
    started = time.perf_counter()
    reader.query(None, [probes[0]], 10, None, include_pending=True)  # lists and fetches them all
    first = time.perf_counter() - started
    first_lists = reader.pending.lists - lists
    pending_warm = _timed(lambda q: reader.query(None, [q], 10, None, include_pending=True), probes)
    lists = reader.pending.lists
    pending_strong = _timed(lambda q: reader.query(None, [q], 10, None, include_pending=True, consistency="strong"),
                            probes)
    return {"pending_deltas": count, "pending_vectors": count * DELTA_SIZE, "pending_first_ms": 1000 * first,
            "pending_first_lists": first_lists, "pending_fetched": reader.pending.fetched - fetched,
            "pending_warm": pending_warm, "pending_strong": pending_strong,
            "pending_strong_lists_per_query": (reader.pending.lists - lists) / len(probes)}
