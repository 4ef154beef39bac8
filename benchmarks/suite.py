"""The figures: producer latency, compaction (ours warm and cold, the baseline; the merge
state each writes) for delta
counts and snapshot sizes, the background folds, chroma's own bulk upsert rate and raw
hnswlib's insert rate (the ceilings), query latency warm (with and without a filter) and
cold start on segmented and folded versions, bytes moved. A warm reader's refresh after
publishes and fresh reads' cost per query are in ``suite_refresh.py``."""

import logging
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


def percentiles(samples: list[float]) -> dict[str, float]:
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
        out[str(size)] = {"mean_ms": 1000 * statistics.mean(samples), **percentiles(samples)}
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
        rates["chroma_into_base_per_s"] = vectors / chroma_upsert_seconds(work.settings, base_dir, f"bench{snapshot_size}",
                                                                  ids, embeddings, metadatas)
    with tempfile.TemporaryDirectory(prefix="bench-empty-") as empty:
        rates["chroma_into_empty_per_s"] = vectors / chroma_upsert_seconds(work.settings, Path(empty), "empty",
                                                                    ids, embeddings, metadatas)
    rates["hnswlib_per_s"] = vectors / _hnswlib_insert(work.settings, np.asarray(embeddings, dtype=np.float32))
    log.info("ceilings %s", rates)
    return rates


def chroma_upsert_seconds(settings: Settings, directory: Path, collection: str, ids: list[str],
                          embeddings: list[list[float]], metadatas: list[dict[str, Any]]) -> float:
    """Seconds of chroma's own bulk upsert of these records into ``collection`` of ``directory``."""
    with ChromaDBClient(directory, mode="snapshot", settings=settings) as db:
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
    warm = timed(lambda q: reader.query(None, [q], 10, None), probes)
    filtered = timed(lambda q: reader.query(None, [q], 10, {"merchant": "m3"}), probes)
    vectors = reader.manifest.vector_count
    reader.close()
    shutil.rmtree(root, ignore_errors=True)
    log.info("query %d (%s, %d segments): cold %.2fs, warm p50 %.1f ms, where p50 %.1f ms", size, layout, segments,
             cold, warm["p50_ms"], filtered["p50_ms"])
    return {"snapshot_vectors": size, "vectors": vectors, "layout": layout, "segments": segments,
            "cold_start_s": cold, "warm": warm, "warm_where": filtered}


def timed(call: Callable[[list[float]], Any], probes: list[list[float]]) -> dict[str, float]:
    samples = []
    for probe in probes:
        started = time.perf_counter()
        call(probe)
        samples.append(time.perf_counter() - started)
    return percentiles(samples)
