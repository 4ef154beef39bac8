"""The scale profile's build: a collection loaded as a backfill loads one (``scale.py``)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from vector_pipeline import ChromaCompactor, progress
from vector_pipeline.table.catalog import CollectionCatalog, CollectionConfig
from vector_pipeline.config import Settings
from vector_pipeline.compaction.maintenance import fold_segments
from vector_pipeline.format.version_manifest import segments_of
from vector_pipeline.table.snapshot_store import SnapshotStore

from .roles import available_bytes, child_logging
from .suite import Workload

log = logging.getLogger("benchmarks.scale")

MIN_AVAILABLE_BYTES = 3 * 1024**3  # the build stops (clearly) rather than push a shared machine into swap


def collection_name(size: int) -> str:
    return f"scale{size}"


def build_collection(settings: Settings, collection: str, size: int, delta_vectors: int, chunk_vectors: int,
                     seed: int, budget_s: float = float("inf")) -> dict[str, Any]:
    """Deltas of ``delta_vectors``, compacted ``chunk_vectors`` at a time, each compaction
    merging its chunk into the one base segment (so every vector is inserted once, into the
    index it stays in). Stops early, with what it built, once ``budget_s`` has passed."""
    child_logging()
    from vector_pipeline.cli.terminal import reporter_for, stderr_console

    catalog = CollectionCatalog(settings)
    chunks = -(-size // chunk_vectors)
    defaults = CollectionConfig.defaults_for(collection, settings)
    # One segment for the load: each chunk's compaction folds into the base (no appended
    # segments to fold again later); the deployment's policy is restored after the load.
    catalog.create(defaults.changed(segment_max_count=1))
    work = Workload(settings, seed)
    compactor = ChromaCompactor(settings=settings)
    produce_s = compact_s = 0.0
    built = 0
    lowest_available = available_bytes()
    started = time.perf_counter()
    try:
        with progress.reporting_to(reporter_for(stderr_console())):
            for number, start in enumerate(range(0, size, chunk_vectors), 1):
                end = min(size, start + chunk_vectors)
                begun = time.perf_counter()
                with progress.stage(f"{collection}: produce chunk {number}/{chunks}", end - start, "vectors") as bar:
                    keys = []
                    for first in range(start, end, delta_vectors):
                        keys.append(work.delta(collection, min(delta_vectors, end - first)))
                        bar.advance(min(delta_vectors, end - first))
                produce_s += time.perf_counter() - begun
                begun = time.perf_counter()
                with progress.stage(f"{collection}: compact chunk {number}/{chunks}", len(keys), "deltas") as bar:
                    result = compactor.compact_deltas(keys, collection)
                    bar.advance(len(keys))
                compact_s += time.perf_counter() - begun
                if str(result.status) != "ok":
                    raise RuntimeError(f"build compaction of {collection} chunk {number}: {result.status} {result.error}")
                built = end
                lowest_available = min(lowest_available, available_bytes())
                elapsed = time.perf_counter() - started
                log.info("build %s: %d/%d vectors (%.0f%%) in %.0fs, about %.0fs to go; machine has %.1f GB "
                         "available", collection, end, size, 100 * end / size, elapsed, elapsed * (size - end) / end,
                         lowest_available / 1e9)
                if lowest_available < MIN_AVAILABLE_BYTES:
                    raise MemoryError(f"the machine has {lowest_available / 1e9:.1f} GB available after {end:,} of "
                                      f"{size:,} vectors: run a smaller --scale-vectors")
                if elapsed > budget_s and end < size:
                    log.warning("build %s: budget of %.0fs spent; the collection holds %d vectors", collection,
                                budget_s, end)
                    break
    finally:
        catalog.update(collection, segment_max_count=defaults.segment_max_count,
                       segment_fold_ratio=defaults.segment_fold_ratio)
    store = SnapshotStore(settings)
    manifest = store.read_manifest(collection, store.read_pointer(collection).version)
    log.info("built %s: %d vectors in %.0fs", collection, manifest.vector_count, time.perf_counter() - started)
    return {"vectors": manifest.vector_count, "version": manifest.version,
            "segments": len(segments_of(manifest)), "version_bytes": manifest.total_bytes,
            "deltas": -(-built // delta_vectors), "chunks": -(-built // chunk_vectors), "produce_s": produce_s,
            "compact_s": compact_s, "fold_s": 0.0, "stopped_by_budget": built < size,
            "seconds": time.perf_counter() - started, "lowest_available_gb": lowest_available / 1e9}


def reuse_collection(settings: Settings, collection: str) -> dict[str, Any] | None:
    """A collection an earlier run built (``--scale-endpoint``; whatever it holds, should a
    build budget have cut it short), folded back to one segment (its measured rounds
    appended some); None when there is none."""
    child_logging()
    store = SnapshotStore(settings)
    if store.read_pointer(collection) is None:
        return None
    started = time.perf_counter()
    defaults = CollectionConfig.defaults_for(collection, settings)  # in case a build was cut short mid-load
    CollectionCatalog(settings).update(collection, segment_max_count=defaults.segment_max_count,
                                       segment_fold_ratio=defaults.segment_fold_ratio)
    folded = fold_segments(settings, collection)
    manifest = store.read_manifest(collection, store.read_pointer(collection).version)
    log.info("reusing %s: %d vectors, folded in %.0fs", collection, manifest.vector_count,
             time.perf_counter() - started)
    return {"reused": True, "vectors": manifest.vector_count, "version": manifest.version,
            "segments": len(segments_of(manifest)), "version_bytes": manifest.total_bytes,
            "fold": str(folded.status), "fold_s": time.perf_counter() - started, "deltas": 0, "chunks": 0,
            "produce_s": 0.0, "compact_s": 0.0, "seconds": time.perf_counter() - started,
            "lowest_available_gb": available_bytes() / 1e9}


def write_build_summary(results: dict[str, Any], out: Path) -> None:
    """``--scale-build-only``: what was built (the measuring run writes the full report)."""
    lines = [f"# Scale profile: build only (`{results['command']}`)", ""]
    lines += [f"- {collection_name(int(size))}: {b['vectors']:,} vectors, {b.get('chunks', 0)} compactions, "
              f"{b['seconds']:.0f} s (produce {b['produce_s']:.0f} s, compact {b['compact_s']:.0f} s), version "
              f"{b['version_bytes'] / 1e6:,.0f} MB" for size, b in results["build"].items()]
    lines += ["", "Peak RSS: " + ", ".join(f"{name} {mb:,.0f} MB" for name, mb in results["processes"].items()), ""]
    (out / "report.md").write_text("\n".join(lines))
