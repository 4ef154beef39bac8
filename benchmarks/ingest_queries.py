"""Query latency under sustained ingest (issue 21's "query p99 during ingest ≤ 3× idle p99").

One process per read kind (``default``: ``query_snapshot`` with the default, bounded
consistency; ``fresh``: the same with ``include_pending=True``), each issuing
``query_snapshot(n_results=10)`` for fixed random 384-d probes at a steady ``rate`` (closed
loop: a query slower than the interval delays the next, never a burst to catch up):

1. once the seed is published, a few warm-up queries, not timed (the reader's cold start: the
   version's download, chroma's start), while the loop starts;
2. once the profile says go (the loop running), ``idle_queries`` timed queries, phase ``idle``,
   while nothing is produced (the collection holds its seed version; the compaction loop and
   the freshness readers run); then it marks
   ``idle_done`` and the profile starts its producers;
3. timed queries, phase ``ingest``, until the profile's stop file appears.

Every query is one line ``{phase, at, s, error}``; the summary takes the ``ingest`` queries
issued within the producing window. A failed query is counted, not timed.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from vector_pipeline.config import Settings

from .suite import DIMENSION

QUERY_KINDS = ("default", "fresh")
N_RESULTS = 10
WARM_UP_QUERIES = 5
PROBES = 256
TARGET_P99_RATIO = 3.0


def probes(count: int = PROBES, seed: int = 2_100_000) -> np.ndarray:
    """Query vectors: unit 384-d, from a seed no delta uses."""
    vectors = np.random.default_rng(seed).standard_normal((count, DIMENSION)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def time_queries(settings: Settings, collection: str, kind: str, rate: float, idle_queries: int,
                 paths: dict[str, str]) -> None:
    """One query timer (a child process): warm-up once ``paths["seeded"]`` exists; the idle phase
    once ``paths["go"]`` does (then ``paths["idle_done"]``); the ingest phase until
    ``paths["stop"]``; its queries to ``paths["out"]``."""
    from vector_pipeline import query_snapshot

    logging.getLogger("vector_pipeline").setLevel(logging.WARNING)
    vectors = probes().tolist()
    rows: list[dict[str, Any]] = []
    interval = 1.0 / rate
    number = 0
    next_at = 0.0
    while not os.path.exists(paths["stop"]):
        if number == 0 or number == WARM_UP_QUERIES:  # the seed's version first, the idle phase on go
            if not _wait_for(paths["seeded"] if number == 0 else paths["go"], paths["stop"]):
                break
            next_at = time.time()
        if number == WARM_UP_QUERIES + idle_queries:
            Path(paths["idle_done"]).touch()
        time.sleep(max(0.0, next_at - time.time()))
        at, started = time.time(), time.perf_counter()
        error = None
        try:
            query_snapshot(query_embeddings=[vectors[number % len(vectors)]], n_results=N_RESULTS,
                           collection_name=collection, include_pending=kind == "fresh", settings=settings)
        except Exception as exc:  # noqa: BLE001 - counted in the figures, never timed
            error = f"{type(exc).__name__}: {exc}"[:200]
        seconds = time.perf_counter() - started
        if number >= WARM_UP_QUERIES:
            rows.append({"phase": "idle" if number < WARM_UP_QUERIES + idle_queries else "ingest", "at": at,
                         "s": seconds, "error": error})
        number += 1
        next_at = max(next_at + interval, time.time())
    Path(paths["out"]).write_text(json.dumps(rows))


def _wait_for(path: str, stop_path: str) -> bool:
    """Whether ``path`` appeared (False: the stop file did first)."""
    while not os.path.exists(path):
        if os.path.exists(stop_path):
            return False
        time.sleep(0.05)
    return True


def summarize_queries(raw: dict[str, list[dict[str, Any]]], start: float, until: float,
                      spread: Any) -> dict[str, Any]:
    """Per read kind: idle and during-ingest latency (ms: p50/p95/p99/max/mean), query and error
    counts, and the ratio of the p99s (during / idle)."""
    out = {}
    for kind, rows in raw.items():
        idle = [r for r in rows if r["phase"] == "idle"]
        during = [r for r in rows if r["phase"] == "ingest" and start <= r["at"] <= until]
        idle_ms = spread([1000 * r["s"] for r in idle if not r["error"]])
        during_ms = spread([1000 * r["s"] for r in during if not r["error"]])
        ratio = during_ms["p99"] / idle_ms["p99"] if idle_ms["p99"] > 0 else float("nan")
        out[kind] = {"idle_ms": idle_ms, "during_ms": during_ms, "p99_ratio": ratio,
                     "queries": {"idle": len(idle), "during": len(during)},
                     "errors": {"idle": sum(1 for r in idle if r["error"]),
                                "during": sum(1 for r in during if r["error"])},
                     "first_error": next((r["error"] for r in idle + during if r["error"]), None)}
    return out


def query_rows(name: str, mode: dict[str, Any], verdict: Any) -> list[list[str]]:
    """The target rows of one loop: default reads against ≤ 3× (met / not met), fresh reads reported."""
    loop = "library loop (compact --watch)" if name == "watch" else "Dagster sensors + compaction job"
    rows = []
    for kind, q in mode.get("query_latency", {}).items():
        idle, during = q["idle_ms"], q["during_ms"]
        label = "default reads" if kind == "default" else "fresh reads (include_pending)"
        figure = (f"idle p50 {idle['p50']:.1f} / p99 {idle['p99']:.1f} ms; during p50 {during['p50']:.1f} / "
                  f"p99 {during['p99']:.1f} ms; ratio {q['p99_ratio']:.2f}× ({q['queries']['idle']} idle, "
                  f"{q['queries']['during']} during, {q['errors']['during']} failed)")
        rows.append([f"{loop}: query p99 during ingest ≤ {TARGET_P99_RATIO:g}× idle p99, {label}", figure,
                     verdict(q["p99_ratio"] <= TARGET_P99_RATIO) if kind == "default" else "reported"])
    return rows


def latency_table(modes: dict[str, Any]) -> list[list[Any]]:
    """Rows of the report's query-latency table: loop, reads, idle and during p50/p99 ms, ratio, counts."""
    rows = []
    for name, mode in modes.items():
        for kind, q in mode.get("query_latency", {}).items():
            idle, during = q["idle_ms"], q["during_ms"]
            rows.append([name, kind, f"{idle['p50']:.1f}", f"{idle['p99']:.1f}", f"{during['p50']:.1f}",
                         f"{during['p99']:.1f}", f"{during['max']:.1f}", f"{q['p99_ratio']:.2f}×",
                         f"{q['queries']['idle']}/{q['queries']['during']}",
                         f"{q['errors']['idle']}/{q['errors']['during']}"])
    return rows
