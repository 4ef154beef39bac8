"""The suite's reader-refresh figures: a warm reader while the pointer moves (what it downloads
after each publish, by this process or another, against the new segment's bytes; its first
query after the publish against warm queries on that version), then fresh reads' cost per
query over uncompacted deltas (``include_pending``)."""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import shutil
import tempfile
import time
from typing import Any

from vector_pipeline import ChromaCompactor
from vector_pipeline.format.version_manifest import segments_of
from vector_pipeline.read.snapshot_reader import SnapshotReader

from .suite import DELTA_SIZE, Workload, timed

log = logging.getLogger("benchmarks")


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
        warm = timed(lambda q: reader.query(None, [q], 10, None), probes)
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
        timed(lambda q: reader.query(None, [q], 10, None), probes)
        followed = [_followed_publish(work, reader, collection, probes[0]) for _ in range(publishes)]
        after = timed(lambda q: reader.query(None, [q], 10, None), probes)
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
    return timed(lambda q: reader.query(None, [q], 10, None), (probes * repeats)[:repeats])["p50_ms"]


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
    pending_warm = timed(lambda q: reader.query(None, [q], 10, None, include_pending=True), probes)
    lists = reader.pending.lists
    pending_strong = timed(lambda q: reader.query(None, [q], 10, None, include_pending=True, consistency="strong"),
                            probes)
    return {"pending_deltas": count, "pending_vectors": count * DELTA_SIZE, "pending_first_ms": 1000 * first,
            "pending_first_lists": first_lists, "pending_fetched": reader.pending.fetched - fetched,
            "pending_warm": pending_warm, "pending_strong": pending_strong,
            "pending_strong_lists_per_query": (reader.pending.lists - lists) / len(probes)}
