"""The command line of ``python -m benchmarks`` (``__main__.py`` dispatches to the profile it
names): the suite's sizes, and each profile's options (collections, ingest, scale, fold)."""

from __future__ import annotations

import argparse
from pathlib import Path


def parser(description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes, < 3 minutes on 2 cores")
    parser.add_argument("--sizes", type=int, nargs="+", help="snapshot sizes (vectors), overriding the profile")
    parser.add_argument("--deltas", type=int, nargs="+", help="delta counts, overriding the profile")
    parser.add_argument("--collections", action="store_true",
                        help="the collections profile instead: 1,000 collections (100 with --quick), sensor ticks, "
                             "drain, query routing")
    parser.add_argument("--collection-count", type=int, help="collections, overriding the collections profile")
    parser.add_argument("--deltas-per-collection", type=int, help="deltas per collection (collections profile)")
    parser.add_argument("--vectors-per-delta", type=int, help="vectors per delta (collections and ingest profiles; ingest default 100)")
    parser.add_argument("--workers", type=int, help="compaction worker processes of the drain (collections profile)")
    parser.add_argument("--queries", type=int, help="routed and filtered queries each (collections profile)")
    parser.add_argument("--wait-for-in-flight", type=float, default=180.0,
                        help="seconds the ticks wait for messages an earlier tick read to come back (collections "
                             "profile; 0: stop ticking once only those remain)")
    parser.add_argument("--tick-budget", type=float, default=float("inf"),
                        help="seconds of queue-sensor ticks at most; reconciliation ticks register the rest "
                             "(collections profile)")
    parser.add_argument("--sensors-only", action="store_true",
                        help="stop after the sensor ticks: no drain, no query routing (collections profile)")
    parser.add_argument("--ingest", action="store_true",
                        help="sustained ingest instead: producers at --ingest-rate for --ingest-seconds per compaction "
                             "loop, freshness and queue depth over time")
    parser.add_argument("--ingest-seconds", type=float, help="seconds of producing per loop (default 600; --quick 6)")
    parser.add_argument("--ingest-rate", type=float, help="deltas a second, all producers together (default 10)")
    parser.add_argument("--ingest-producers", type=int, help="producer processes (default 4)")
    parser.add_argument("--ingest-modes", nargs="+", choices=["watch", "dagster"],
                        help="compaction loops, run one after the other (default both)")
    parser.add_argument("--ingest-query-rate", type=float,
                        help="queries a second per read kind (default and fresh reads), idle and during ingest "
                             "(default 5)")
    parser.add_argument("--ingest-idle-queries", type=int,
                        help="queries per read kind timed before the producers start (default 300; --quick 20)")
    parser.add_argument("--ingest-seed-vectors", type=int,
                        help="vectors of the seed delta published before the idle queries (default 1000)")
    parser.add_argument("--ingest-freshness-target", type=float,
                        help="the collection's freshness_target_seconds (default: the catalog's default, 30 s; "
                             "--quick 4 s)")
    parser.add_argument("--ingest-stock-moto", action="store_true",
                        help="stock moto instead of benchmarks/moto_bench_server.py, whose ReceiveMessage does "
                             "not grow with the queue's depth (ingest profile)")
    parser.add_argument("--scale", action="store_true",
                        help="the scale profile instead: a collection of --scale-vectors (1,000,000) built as a "
                             "backfill loads one; compaction at N against 10,000, queries, cold start, peak memory")
    parser.add_argument("--scale-vectors", type=int, help="vectors of the large collection (scale profile)")
    parser.add_argument("--scale-small", type=int, help="vectors of the collection it is compared with (10,000)")
    parser.add_argument("--scale-chunk", type=int,
                        help="vectors per build compaction (scale profile; 100,000: the memory a chunk needs)")
    parser.add_argument("--scale-delta-vectors", type=int, help="vectors per build delta (scale profile; 5,000)")
    parser.add_argument("--scale-build-budget", type=int,
                        help="seconds the build of the large collection may take: it stops after the chunk that "
                             "passes them and the profile measures what it built (scale profile; default: no limit)")
    parser.add_argument("--scale-build-only", action="store_true",
                        help="build the collections and stop (with --scale-endpoint, a later run measures them)")
    parser.add_argument("--scale-endpoint",
                        help="an S3 endpoint already running (e.g. python benchmarks/moto_bench_server.py -p PORT) "
                             "instead of a fresh moto: collections it holds from an earlier --scale run are folded "
                             "and reused, not rebuilt (scale profile)")
    parser.add_argument("--scale-server-pid", type=int, help="that server's pid, for its peak RSS (scale profile)")
    parser.add_argument("--fold", action="store_true",
                        help="the base-fold profile instead: a fold of --fold-vectors while appends continue")
    parser.add_argument("--fold-vectors", type=int, help="vectors of the folded collection (fold profile; 100,000)")
    parser.add_argument("--fold-appends", type=int, help="appends timed without the fold (fold profile; 10)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/results/<stamp>)")
    return parser
