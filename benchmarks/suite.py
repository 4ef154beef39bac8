"""The figures: producer latency, compaction (ours warm and cold, the baseline) for delta
counts and snapshot sizes, chroma's own bulk upsert rate (the ceiling), query latency warm
(with and without a filter) and cold start, bytes moved, peak memory."""

import logging
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vector_pipeline import ChromaCompactor, ChromaDBClient, produce_embedding_delta
from vector_pipeline.config import Settings
from vector_pipeline.reader import SnapshotReader
from vector_pipeline.snapshot_store import CHROMA_DIR, SnapshotStore

from .baseline import baseline_compaction

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


def compaction(work: Workload, snapshot_sizes: list[int], delta_counts: list[int]) -> list[dict[str, Any]]:
    rows = []
    store = SnapshotStore(work.settings)
    for size in snapshot_sizes:
        collection = f"bench{size}"
        work.snapshot(collection, size)
        warm = ChromaCompactor(settings=work.settings)
        for count in delta_counts:
            keys = [work.delta(collection) for _ in range(count)]
            manifest = store.read_manifest(collection, store.read_pointer(collection).version)
            # The whole snapshot, wherever its files live (ours reuses unchanged parent files).
            files = [(entry["key"], entry["path"]) for entry in manifest["files"]]
            base = baseline_compaction(store.s3, store.bucket, files, keys, collection)
            result = warm.compact_deltas(keys, collection)
            assert result.status == "ok", result
            cold_keys = [work.delta(collection) for _ in range(count)]
            cold_settings = work.settings.with_overrides(cache_dir=tempfile.mkdtemp(prefix="bench-cold-"))
            cold = ChromaCompactor(settings=cold_settings).compact_deltas(cold_keys, collection)
            shutil.rmtree(cold_settings.cache_dir, ignore_errors=True)
            assert cold.status == "ok", cold
            warm.compact_deltas([], collection)  # let the warm compactor's cache follow the pointer
            merged = count * DELTA_SIZE
            row = {
                "snapshot_vectors": size, "deltas": count, "merged_vectors": merged,
                "ours_warm_s": result.duration_seconds, "ours_cold_s": cold.duration_seconds,
                "baseline_s": base["seconds"], "baseline_merge_s": base["merge_seconds"],
                "ours_warm_vectors_per_s": merged / result.duration_seconds,
                "ours_warm_bytes_moved": result.bytes_downloaded + result.bytes_uploaded,
                "ours_cold_bytes_moved": cold.bytes_downloaded + cold.bytes_uploaded,
                "baseline_bytes_moved": base["bytes_moved"],
                "speedup_vs_baseline": base["seconds"] / result.duration_seconds,
            }
            log.info("compaction %s", {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
            rows.append(row)
    return rows


def chroma_bulk_upsert_rate(work: Workload, snapshot_size: int, vectors: int) -> dict[str, float]:
    """chroma's own upsert of ``vectors`` records into a copy of a snapshot: the ceiling."""
    collection = f"bench{snapshot_size}"
    store = SnapshotStore(work.settings)
    manifest = store.read_manifest(collection, store.read_pointer(collection).version)
    root = Path(tempfile.mkdtemp(prefix="bench-ceiling-"))
    local = store.download_version(manifest, root)
    ids, embeddings, metadatas = work.records(vectors)
    with ChromaDBClient(local / CHROMA_DIR, mode="snapshot", settings=work.settings) as db:
        started = time.perf_counter()
        db.upsert_vectors(collection, ids, embeddings, documents=ids, metadatas=metadatas)
        seconds = time.perf_counter() - started
    shutil.rmtree(root, ignore_errors=True)
    return {"snapshot_vectors": snapshot_size, "vectors": vectors, "seconds": seconds,
            "vectors_per_s": vectors / seconds}


def query_latency(work: Workload, snapshot_sizes: list[int], queries: int) -> list[dict[str, Any]]:
    rows = []
    for size in snapshot_sizes:
        collection = f"bench{size}"
        probes = work.vectors(queries).tolist()
        root = tempfile.mkdtemp(prefix="bench-reader-")
        reader = SnapshotReader(collection, root, work.settings)
        started = time.perf_counter()
        reader.refresh()  # cold start: pointer + manifest + download + checksums + open
        cold = time.perf_counter() - started
        warm = _timed(lambda q: reader.query(None, [q], 10, None), probes)
        filtered = _timed(lambda q: reader.query(None, [q], 10, {"merchant": "m3"}), probes)
        reader.close()
        shutil.rmtree(root, ignore_errors=True)
        rows.append({"snapshot_vectors": size, "cold_start_s": cold, "warm": warm, "warm_where": filtered})
        log.info("query %d: cold %.2fs, warm p50 %.1f ms, where p50 %.1f ms", size, cold, warm["p50_ms"],
                 filtered["p50_ms"])
    return rows


def _timed(call: Callable[[list[float]], Any], probes: list[list[float]]) -> dict[str, float]:
    samples = []
    for probe in probes:
        started = time.perf_counter()
        call(probe)
        samples.append(time.perf_counter() - started)
    return _percentiles(samples)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
