"""``python -m benchmarks --fold``: a base fold of a large collection while appends continue.

Builds a collection of ``vectors`` (deltas of 5,000 compacted a chunk at a time with
``segment_max_count`` 1, as the scale profile loads one), restores the tiered policy, appends
``appends`` deltas of 100 vectors (each: produce, then ``compact_deltas``; its publish latency is
the compaction's wall time, retried while the fold's rebase holds the lock) with no fold running, then starts ``fold_base`` in a thread and
appends the same way until it has finished. The ratio of the append latencies (p50, max) during
and without the fold is the figure; the fold's time off and under the lock, its outcome
(rebased: appends were published meanwhile) and the final count against the model are reported.
No figure is asserted."""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import numpy as np

from vector_pipeline import ChromaCompactor, open_snapshot, produce_embedding_delta
from vector_pipeline.compaction.base_fold import BaseFold, fold_base
from vector_pipeline.config import Settings
from vector_pipeline.read.reader import close_readers
from vector_pipeline.table.catalog import CollectionCatalog, CollectionConfig

DEFAULTS = {"vectors": 100_000, "appends": 10, "append_vectors": 100, "dimension": 384}
COLLECTION = "foldbench"


def _delta(settings: Settings, rng: np.random.Generator, ids: list[str], dimension: int) -> str:
    embeddings = rng.standard_normal((len(ids), dimension), dtype=np.float32)
    return produce_embedding_delta(ids, embeddings, documents=ids, collection_name=COLLECTION, settings=settings,
                                   notify=False)["delta_key"]


def _append(settings: Settings, compactor: ChromaCompactor, rng: np.random.Generator, start: int,
            parameters: dict[str, Any]) -> float:
    ids = [f"a{start + i}" for i in range(parameters["append_vectors"])]
    key = _delta(settings, rng, ids, parameters["dimension"])
    began = time.perf_counter()
    while True:  # busy while the fold rebases under the lock: retried, the wait counted in
        result = compactor.compact_deltas([key], COLLECTION)
        if result.status == "ok":
            return time.perf_counter() - began
        if result.status != "busy":
            raise RuntimeError(f"append failed: {result.status} {result.error}")
        time.sleep(0.1)


def run(settings: Settings, parameters: dict[str, Any]) -> dict[str, Any]:
    rng = np.random.default_rng(21)
    catalog = CollectionCatalog(settings)
    defaults = CollectionConfig.defaults_for(COLLECTION, settings)
    catalog.create(defaults.changed(segment_max_count=1))
    compactor = ChromaCompactor(settings=settings)
    built = time.perf_counter()
    for start in range(0, parameters["vectors"], 5_000):
        ids = [f"b{i}" for i in range(start, min(start + 5_000, parameters["vectors"]))]
        assert compactor.compact_deltas([_delta(settings, rng, ids, parameters["dimension"])], COLLECTION).ok
    build_seconds = time.perf_counter() - built
    catalog.update(COLLECTION, segment_max_count=defaults.segment_max_count)
    appended = 0
    quiet = []
    for _ in range(parameters["appends"]):
        quiet.append(_append(settings, compactor, rng, appended, parameters))
        appended += parameters["append_vectors"]
    done: list[BaseFold] = []
    fold = threading.Thread(target=lambda: done.append(fold_base(settings, COLLECTION)), name="bench-fold")
    fold.start()
    during = []
    while fold.is_alive():
        during.append(_append(settings, compactor, rng, appended, parameters))
        appended += parameters["append_vectors"]
    fold.join()
    close_readers()
    count = open_snapshot(COLLECTION, settings=settings).count(COLLECTION)
    folded = done[0] if done else None
    return {"build_seconds": build_seconds, "appends_without_fold_s": quiet, "appends_during_fold_s": during,
            "fold": None if folded is None else {
                "outcome": str(folded.outcome), "off_lock_seconds": folded.fold_seconds,
                "locked_seconds": folded.locked_seconds, "version": folded.result.version,
                "rebased_onto": folded.rebased_onto},
            "final_count": count, "expected_count": parameters["vectors"] + appended}


def report(results: dict[str, Any]) -> list[str]:
    quiet, during = results["appends_without_fold_s"], results["appends_during_fold_s"]
    lines = ["# Base fold while appends continue", "", f"`{results.get('command', '')}`", ""]
    fold = results["fold"] or {}
    lines += [f"- collection: {results['parameters']['vectors']:,} vectors of {results['parameters']['dimension']} "
              f"dimensions (built in {results['build_seconds']:.0f} s)",
              f"- fold: {fold.get('outcome')}, {fold.get('off_lock_seconds', 0):.1f} s off the lock, "
              f"{fold.get('locked_seconds', 0):.2f} s under it (rebased onto {fold.get('rebased_onto')})",
              f"- appends published during the fold: {len(during)}; count after: {results['final_count']:,} "
              f"(model {results['expected_count']:,}: {'equal' if results['final_count'] == results['expected_count'] else 'DIFFERENT'})",
              ""]
    if quiet and during:
        p50 = statistics.median(during) / statistics.median(quiet)
        worst = max(during) / max(quiet)
        lines += ["| target | measured | verdict |", "| --- | --- | --- |",
                  f"| append publish latency during the fold ≤ 2× without (p50) | {statistics.median(during):.2f} s / "
                  f"{statistics.median(quiet):.2f} s = {p50:.2f}× | {'met' if p50 <= 2 else 'not met'} |",
                  f"| same, worst append | {max(during):.2f} s / {max(quiet):.2f} s = {worst:.2f}× | "
                  f"{'met' if worst <= 2 else 'not met'} |", ""]
    return lines
