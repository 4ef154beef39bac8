"""``python -m benchmarks --scale``: a million vectors (``--scale-vectors`` for another N).

The collection is built the way a backfill loads one (``scale_build.py``): producers write
large deltas (5,000 vectors each), and the compactor applies them a chunk at a time (100,000
vectors per compaction), each compaction folding its chunk into the one base segment. A
10,000-vector collection is built the same way in the same run. Then, at both sizes: 50
deltas of 100 vectors compacted by a warm compactor (plain, then under cProfile) and by a
cold one (a fresh process with an empty cache), each an append; a reader's cold start
(first open and query from an empty cache: seconds and bytes), its warm queries on the
folded version and on the version as the compactions left it, and at N what it fetches to
follow each publish.

Each role runs in a process of its own (spawned, ``roles.py``), so each peak RSS is that
role's: the build, the warm compactor (one process for all its rounds; its cache on disk
between them, as a long-running compactor keeps it), each cold compactor, the reader, and
moto's server. moto serves ranged GETs from the range (``moto_bench_server.py``)."""

from __future__ import annotations

import cProfile
import logging
import os
import pstats
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from vector_pipeline import ChromaCompactor
from vector_pipeline.config import Settings
from vector_pipeline.compaction.maintenance import fold_segments
from vector_pipeline.read.snapshot_reader import SnapshotReader
from vector_pipeline.format.segments import FoldKind, plan_fold
from vector_pipeline.format.version_manifest import segments_of
from vector_pipeline.table.snapshot_store import SnapshotStore

from .roles import CHILD, Role, child_logging, process_peak_rss_mb
from .scale_build import build_collection, collection_name, reuse_collection, write_build_summary
from .suite import DELTA_SIZE, Workload, counted_requests, timed

__all__ = ["DEFAULTS", "run", "write_build_summary"]

log = logging.getLogger("benchmarks.scale")

DEFAULTS: dict[str, Any] = {"vectors": 1_000_000, "small_vectors": 10_000, "build_delta_vectors": 5_000,
                            "build_chunk_vectors": 100_000, "build_budget_s": 0, "build_only": 0, "deltas": 50,
                            "queries": 1_000}
ROUND_KINDS = ("warm", "warm, cProfile", "cold")


# -- compactions (warm: one process; cold: a fresh process and cache each) ------------------------------

def compact_round(settings: Settings, collection: str, keys: list[str], profile_to: str | None = None) -> dict[str, Any]:
    """One compaction of ``keys``; under cProfile (of this thread: the transfer threads show
    as waits) when ``profile_to`` names a file."""
    child_logging()
    compactor = CHILD.setdefault(f"compactor {settings.cache_dir}", ChromaCompactor(settings=settings))
    profiler = cProfile.Profile() if profile_to else None
    with counted_requests(settings) as requests:
        if profiler:
            profiler.enable()
        result = compactor.compact_deltas(keys, collection)
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile_to)
    if str(result.status) != "ok":
        raise RuntimeError(f"compaction of {collection}: {result.status} {result.error}")
    return {"seconds": result.duration_seconds, "publish_s": result.publish_seconds,
            "merge_s": result.merge_seconds, "fold": result.fold, "segments": result.segments,
            "version": result.version, "vector_count": result.vector_count,
            "bytes_downloaded": result.bytes_downloaded, "bytes_uploaded": result.bytes_uploaded,
            "requests_per_delta": sum(requests.values()) / max(len(keys), 1), "requests": dict(requests)}


def fold_if_base_would_fold(settings: Settings, collection: str, incoming: int) -> str | None:
    """The background fold, when the next compaction would otherwise fold the base itself
    (every measured round is then an append, the ingest path)."""
    child_logging()
    store = SnapshotStore(settings)
    manifest = store.read_manifest(collection, store.read_pointer(collection).version)
    if plan_fold(segments_of(manifest), incoming, settings).kind is FoldKind.APPEND:
        return None
    return str(fold_segments(settings, collection).status)


def hot_spots(profile_path: str, limit: int = 80) -> list[dict[str, Any]]:
    """The functions a profiled compaction spent most time in (cumulative), as rows."""
    stats = pstats.Stats(profile_path)
    rows = []
    for (filename, line, function), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{_short(filename)}:{line}({function})", "calls": calls, "own_s": own,
                     "cumulative_s": cumulative})
    rows.sort(key=lambda r: r["cumulative_s"], reverse=True)
    return rows[:limit]


def _short(filename: str) -> str:
    for marker in ("site-packages/", "vector_pipeline/", "benchmarks/"):
        if marker in filename:
            return (marker if marker != "site-packages/" else "") + filename.split(marker, 1)[1]
    return filename


# -- reader (one process, its readers kept open) ---------------------------------------------------------

def reader_cold_start(settings: Settings, collection: str, root: str, probe: list[float]) -> dict[str, Any]:
    """From an empty cache: pointer, manifest, download, checksums, open; then the first query."""
    child_logging()
    # No follower thread and no pointer re-reads between queries: a warm query is the search
    # on the open version, and a refresh happens where ``reader_follow`` asks for it.
    reader = SnapshotReader(collection, root, settings.with_overrides(reader_follow_pointer=False,
                                                                      reader_pointer_ttl_seconds=86_400.0))
    CHILD.setdefault("readers", {})[collection] = reader
    started = time.perf_counter()
    reader.refresh()
    opened = time.perf_counter() - started
    started = time.perf_counter()
    reader.query(None, [probe], 10, None)
    first = time.perf_counter() - started
    return {"open_s": opened, "first_query_s": first, "seconds": opened + first,
            "bytes": reader.local.fetched.bytes, "files": reader.local.fetched.files,
            "version": reader.version, "segments": len(segments_of(reader.manifest))}


def reader_queries(collection: str, probes: list[list[float]]) -> dict[str, Any]:
    reader: SnapshotReader = CHILD["readers"][collection]
    warm = timed(lambda q: reader.query(None, [q], 10, None), probes)
    where = timed(lambda q: reader.query(None, [q], 10, {"merchant": "m3"}), probes)
    return {"warm": warm, "warm_where": where, "version": reader.version,
            "segments": len(segments_of(reader.manifest)), "vectors": reader.manifest.vector_count}


def reader_follow(collection: str, probe: list[float]) -> dict[str, Any]:
    """A query that follows the pointer itself (``consistency="strong"``) after a publish."""
    reader: SnapshotReader = CHILD["readers"][collection]
    before_bytes, before_files = reader.local.fetched.bytes, reader.local.fetched.files
    started = time.perf_counter()
    reader.query(None, [probe], 10, None, consistency="strong")
    return {"first_query_ms": 1000 * (time.perf_counter() - started), "version": reader.version,
            "downloaded_bytes": reader.local.fetched.bytes - before_bytes,
            "downloaded_files": reader.local.fetched.files - before_files}


def reader_close_all() -> None:
    for reader in CHILD.pop("readers", {}).values():
        reader.close()


# -- the profile (parent) -------------------------------------------------------------------------------

def run(settings: Settings, parameters: dict[str, Any], scratch: str, moto_pid: int | None = None,
        save: Callable[[dict[str, Any]], None] = lambda partial: None) -> dict[str, Any]:
    """Build, compactions, reader; ``parameters`` as ``DEFAULTS``. ``save`` gets the figures
    so far after each step (a long run cut short keeps what it measured)."""
    sizes = sorted({parameters["small_vectors"], parameters["vectors"]})
    out: dict[str, Any] = {"sizes": sizes, "build": {}, "rounds": [], "cold_start": {}, "queries": [],
                           "refreshes": [], "profiles": {}, "processes": {}}
    started = time.perf_counter()
    with Role("build") as build:
        for seed, size in enumerate(sizes, 7):
            reused = build.call(reuse_collection, settings, collection_name(size))
            out["build"][str(size)] = reused or build.call(
                build_collection, settings, collection_name(size), size, parameters["build_delta_vectors"],
                parameters["build_chunk_vectors"], seed, parameters.get("build_budget_s") or float("inf"))
            if out["build"][str(size)]["vectors"] < size:  # a build budget cut it short: measure what it built
                log.warning("measuring %s at %d vectors", collection_name(size), out["build"][str(size)]["vectors"])
            save(out)
        built = not all(b.get("reused") for b in out["build"].values())
        out["processes"]["build (producer + compactor)" if built else "reuse (the fold check)"] = build.close()
    out["build_seconds"] = time.perf_counter() - started
    if parameters.get("build_only"):
        return out
    work = Workload(settings, seed=99)  # the measured deltas and the probes
    work.next_id = int(time.time()) * 100_000  # ids no earlier run used: the deltas add vectors
    probes = work.vectors(parameters["queries"]).tolist()
    reader_root = Path(scratch) / "reader"
    with Role("reader") as reader, Role("warm compactor") as warm:
        for size in sizes:  # cold start and queries on the folded version
            collection = collection_name(size)
            out["cold_start"][str(size)] = reader.call(reader_cold_start, settings, collection, str(reader_root),
                                                       probes[0])
            log.info("cold start %d: %s", size, out["cold_start"][str(size)])
            out["queries"].append({"snapshot_vectors": size, "layout": "folded",
                                   **reader.call(reader_queries, collection, probes)})
            log.info("queries %d folded: %s", size, out["queries"][-1])
            save(out)
        cold_peaks = []
        for kind in ROUND_KINDS:
            for size in sizes:
                collection = collection_name(size)
                incoming = parameters["deltas"] * DELTA_SIZE
                folded = warm.call(fold_if_base_would_fold, settings, collection, incoming)
                keys = [work.delta(collection) for _ in range(parameters["deltas"])]
                profile_to = str(Path(scratch) / f"compaction-{size}.prof") if "cProfile" in kind else None
                if kind == "cold":
                    cold_settings = settings.with_overrides(cache_dir=tempfile.mkdtemp(prefix="scale-cold-",
                                                                                       dir=scratch))
                    with Role("cold compactor") as cold:
                        row = cold.call(compact_round, cold_settings, collection, keys)
                        cold_peaks.append(cold.close())
                    shutil.rmtree(cold_settings.cache_dir, ignore_errors=True)
                    row["peak_rss_mb"] = cold_peaks[-1]
                else:
                    row = warm.call(compact_round, settings, collection, keys, profile_to)
                if profile_to:
                    out["profiles"][str(size)] = hot_spots(profile_to)
                row = {"snapshot_vectors": size, "kind": kind, "deltas": parameters["deltas"],
                       "merged_vectors": incoming, "folded_first": folded, **row}
                log.info("compaction %s", row)
                out["rounds"].append(row)
                if size == max(sizes) and not folded:
                    out["refreshes"].append({**_new_segment(settings, collection, row["version"]),
                                             "kind": kind, **reader.call(reader_follow, collection, probes[1])})
                    log.info("reader refresh %s", out["refreshes"][-1])
                save(out)
        for size in sizes:  # queries on the version as the compactions left it
            collection = collection_name(size)
            reader.call(reader_follow, collection, probes[2])
            out["queries"].append({"snapshot_vectors": size, "layout": "as compacted",
                                   **reader.call(reader_queries, collection, probes)})
            log.info("queries %d as compacted: %s", size, out["queries"][-1])
        reader.call(reader_close_all)
        out["processes"]["reader"] = reader.close()
        out["processes"]["warm compactor"] = warm.close()
    out["processes"]["cold compactor (largest of its rounds)"] = max(cold_peaks)
    if moto_pid is not None:
        out["processes"]["moto server"] = process_peak_rss_mb(moto_pid)
    out["storage"] = storage(settings, sizes, scratch)
    return out

def _new_segment(settings: Settings, collection: str, version: str) -> dict[str, Any]:
    manifest = SnapshotStore(settings).read_manifest(collection, version)
    newest = segments_of(manifest)[-1].path + "/"
    return {"segment_bytes": sum(e.size for e in manifest.files if e.path.startswith(newest)),
            "version_bytes": manifest.total_bytes, "segments": len(segments_of(manifest))}


def storage(settings: Settings, sizes: list[int], scratch: str) -> dict[str, Any]:
    """S3 bytes by prefix and collection, the published versions' bytes, local bytes on disk."""
    store = SnapshotStore(settings)
    s3: dict[str, int] = {}
    for page in store.s3.get_paginator("list_objects_v2").paginate(Bucket=store.bucket):
        for obj in page.get("Contents", []):
            parts = obj["Key"].split("/")
            group = "/".join(parts[:2]) + "/" if len(parts) > 2 else parts[0]
            s3[group] = s3.get(group, 0) + obj["Size"]
    published = {}
    for size in sizes:
        collection = collection_name(size)
        published[str(size)] = store.read_manifest(collection, store.read_pointer(collection).version).total_bytes
    return {"s3_bytes": s3, "s3_total_bytes": sum(s3.values()), "published_version_bytes": published,
            "compactor_cache_bytes": _du(Path(settings.cache_dir)), "reader_cache_bytes": _du(Path(scratch) / "reader")}


def _du(root: Path) -> int:
    total = 0
    seen: set[tuple[int, int]] = set()
    for directory, _, files in os.walk(root):
        for name in files:
            try:
                info = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if (info.st_dev, info.st_ino) not in seen:  # hard links count once
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total

