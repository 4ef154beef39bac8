"""``python -m benchmarks [--quick]``: run every figure and write results.json + report.md.

``python -m benchmarks --collections [--quick]``: the collections-by-the-thousand profile
instead (``collections.py``): sensor ticks, drain, nothing lost, query routing.

``python -m benchmarks --ingest [--quick]``: sustained ingest instead (``ingest.py``):
producers at a steady rate, a compaction loop (``compact --watch``, then the Dagster
sensors), freshness and queue depth over time.

``python -m benchmarks --scale``: the scale profile instead (``scale.py``): a collection of a
million vectors (or what the machine holds), compaction at N against 10,000, queries, cold
start, peak memory.

``python -m benchmarks --fold [--fold-vectors N]``: a base fold of a collection of N vectors
while appends continue (``fold_during_ingest.py``): append publish latency during the fold
against without it."""

import argparse
import contextlib
import json
import logging
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from vector_pipeline.config import Settings
from vector_pipeline.cli.local_aws import MotoServer, setup_resources
from vector_pipeline.cli.processes import stop_on_signals

from . import arguments, suite, suite_refresh
from .roles import peak_rss_mb
from .report import write_report

# moto's server with ranged GETs from the range and a ReceiveMessage that does not grow with the queue.
BENCH_SERVER = Path(__file__).with_name("moto_bench_server.py")

PROFILES = {
    # 2 cores: quick finishes in under 3 minutes; full is the one docs/performance.md reports.
    "quick": {"snapshot_sizes": [2_000, 10_000], "delta_counts": [1, 10, 50], "producer_repeats": 5,
              "queries": 100, "ceiling_vectors": 5_000},
    "full": {"snapshot_sizes": [10_000, 100_000], "delta_counts": [1, 10, 50, 200], "producer_repeats": 20,
             "queries": 1_000, "ceiling_vectors": 5_000},
}
COLLECTION_PROFILES = {
    # 384-d like the suite, so the shared collection's where-filter compares with its query figures.
    "quick": {"collections": 100, "deltas_per_collection": 3, "vectors_per_delta": 50, "workers": 2,
              "query_merchants": 50, "queries": 200},
    "full": {"collections": 1_000, "deltas_per_collection": 3, "vectors_per_delta": 50, "workers": 2,
             "query_merchants": 200, "queries": 1_000},
}


def main() -> int:
    args = arguments.parser(__doc__).parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for quiet in ("vector_pipeline", "botocore", "urllib3", "chromadb", "alembic"):
        logging.getLogger(quiet).setLevel(logging.WARNING)
    if args.collections:
        return _collections(args)
    if args.ingest:
        return _ingest(args)
    if args.scale:
        return _scale(args)
    if args.fold:
        return _fold(args)
    profile = dict(PROFILES["quick" if args.quick else "full"])
    profile["snapshot_sizes"] = args.sizes or profile["snapshot_sizes"]
    profile["delta_counts"] = args.deltas or profile["delta_counts"]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path(__file__).resolve().parent / "results" / stamp
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with stop_on_signals(), MotoServer() as moto:  # SIGTERM/SIGHUP stop moto too
        settings = moto.settings(Settings(cache_dir=tempfile.mkdtemp(prefix="bench-cache-"),
                                          collections=tuple(f"bench{s}" for s in profile["snapshot_sizes"])
                                          + ("producer",)))
        setup_resources(settings)
        work = suite.Workload(settings)
        results = {
            "profile": "quick" if args.quick else "full", "parameters": profile, "started_at": stamp,
            "machine": _machine(),
            "producer": suite.producer_latency(work, [100, 1000], profile["producer_repeats"]),
        }
        results["compaction"], results["folds"] = suite.compaction(work, profile["snapshot_sizes"],
                                                                   profile["delta_counts"])
        results["ceilings"] = suite.ceilings(work, profile["snapshot_sizes"][-1], profile["ceiling_vectors"])
        results["query"] = suite.query_latency(work, profile["snapshot_sizes"], profile["queries"])
        results["reader_refresh"] = suite_refresh.reader_refresh(work, profile["snapshot_sizes"][-1:], profile["queries"])
    return _finish(results, out, started, write_report)


def _collections(args: argparse.Namespace) -> int:
    from . import collections
    from .collections_report import write_collections_report

    parameters = _profile(COLLECTION_PROFILES, args, collections=args.collection_count,
                          deltas_per_collection=args.deltas_per_collection, vectors_per_delta=args.vectors_per_delta,
                          workers=args.workers, queries=args.queries)
    stamp, out = _output(args, "collections")
    started = time.perf_counter()
    scratch = tempfile.mkdtemp(prefix="bench-collections-")
    with MotoServer() as moto:
        settings = moto.settings(Settings(cache_dir=scratch + "/cache"))
        setup_resources(settings)
        results = {"profile": "collections" + (" quick" if args.quick else ""), "parameters": parameters,
                   "started_at": stamp, "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
                   "machine": _machine()}
        save = lambda partial: (out / "partial.json").write_text(json.dumps({**results, **partial}, indent=2))  # noqa: E731
        results.update(collections.run(settings, parameters, scratch, args.wait_for_in_flight, save,
                                       args.tick_budget, args.sensors_only))
    return _finish(results, out, started, write_collections_report)


INGEST_PROFILES = {
    "quick": {"seconds": 6.0, "rate": 2.0, "vectors_per_delta": 10, "producers": 1, "poll_seconds": 0.5,
              "drain_seconds": 60.0, "modes": ["watch", "dagster"], "seed_vectors": 50, "query_rate": 5.0,
              "idle_queries": 20, "freshness_target_s": 4.0},  # the collections' target (full: the default)
    "full": {"seconds": 600.0, "rate": 10.0, "vectors_per_delta": 100, "producers": 4, "poll_seconds": 0.5,
             "drain_seconds": 180.0, "modes": ["watch", "dagster"], "seed_vectors": 1000, "query_rate": 5.0,
             "idle_queries": 300},
}


def _ingest(args: argparse.Namespace) -> int:
    from . import ingest
    from .ingest_report import write_ingest_report

    parameters = _profile(INGEST_PROFILES, args, seconds=args.ingest_seconds, rate=args.ingest_rate,
                          vectors_per_delta=args.vectors_per_delta, producers=args.ingest_producers,
                          modes=args.ingest_modes, query_rate=args.ingest_query_rate,
                          idle_queries=args.ingest_idle_queries, seed_vectors=args.ingest_seed_vectors,
                          freshness_target_s=args.ingest_freshness_target)
    stamp, out = _output(args, "ingest")
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    parameters["endpoint"] = "moto (stock)" if args.ingest_stock_moto else "moto (benchmarks/moto_bench_server.py)"
    server = {} if args.ingest_stock_moto else {"server_command": [str(BENCH_SERVER)]}
    with stop_on_signals(), MotoServer(**server) as moto:
        settings = moto.settings(Settings(cache_dir=str(scratch / "cache")))
        setup_resources(settings)
        results = {"profile": "ingest" + (" quick" if args.quick else ""), "parameters": parameters,
                   "started_at": stamp, "command": _command(), "machine": _machine(), "uptime": _uptime()}
        results.update(ingest.run(settings, parameters, scratch))
    return _finish(results, out, started, write_ingest_report)


def _scale(args: argparse.Namespace) -> int:
    import os
    import shutil

    from . import scale
    from .scale_report import write_scale_report

    parameters = _overridden(scale.DEFAULTS, (
        ("vectors", args.scale_vectors), ("small_vectors", args.scale_small), ("build_chunk_vectors", args.scale_chunk),
        ("build_delta_vectors", args.scale_delta_vectors), ("build_budget_s", args.scale_build_budget),
        ("queries", args.queries), ("build_only", int(args.scale_build_only)),
        ("deltas", args.deltas[0] if args.deltas else None)))
    stamp, out = _output(args, "scale")
    started = time.perf_counter()
    scratch = tempfile.mkdtemp(prefix="bench-scale-")
    results: dict[str, Any] = {"profile": "scale", "parameters": parameters, "started_at": stamp,
                                  "command": "python -m benchmarks " + " ".join(sys.argv[1:]), "machine": _machine(),
                                  "load_before": os.getloadavg()}
    save = lambda partial: (out / "partial.json").write_text(json.dumps({**results, **partial}, indent=2))  # noqa: E731
    try:
        with stop_on_signals(), contextlib.ExitStack() as stack:
            if args.scale_endpoint:  # a server left running: collections it holds at N are reused
                moto, pid = MotoServer(), args.scale_server_pid
                moto.endpoint_url = args.scale_endpoint
            else:
                moto = stack.enter_context(MotoServer(server_command=[str(BENCH_SERVER)]))
                pid = moto.process.pid if moto.process else None
            settings = moto.settings(Settings(cache_dir=scratch + "/compactor"))
            setup_resources(settings)
            results.update(scale.run(settings, parameters, scratch, pid, save))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["load_after"] = os.getloadavg()
    if parameters["build_only"]:
        return _finish(results, out, started, scale.write_build_summary)
    return _finish(results, out, started, write_scale_report)


def _fold(args: argparse.Namespace) -> int:
    from . import fold_during_ingest as fold

    parameters = _overridden(fold.DEFAULTS, (("vectors", args.fold_vectors), ("appends", args.fold_appends)))
    stamp, out = _output(args, "fold")
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="bench-fold-"))
    with stop_on_signals(), MotoServer(server_command=[str(BENCH_SERVER)]) as moto:
        settings = moto.settings(Settings(cache_dir=str(scratch / "cache")))
        setup_resources(settings)
        results = {"profile": "fold", "parameters": parameters, "started_at": stamp, "command": _command(),
                   "machine": _machine(), "uptime": _uptime()}
        results.update(fold.run(settings, parameters))
    return _finish(results, out, started, lambda r, o: (o / "report.md").write_text("\n".join(fold.report(r))))


def _finish(results: dict[str, Any], out: Path, started: float,
            write: Callable[[dict[str, Any], Path], None]) -> int:
    """Peak RSS and wall time added; results.json and the report written; the partial file gone."""
    results["peak_rss_mb"] = peak_rss_mb()
    results["wall_seconds"] = time.perf_counter() - started
    (out / "results.json").write_text(json.dumps(results, indent=2))
    write(results, out)
    (out / "partial.json").unlink(missing_ok=True)
    print(f"report: {out / 'report.md'} ({results['wall_seconds']:.0f}s)")
    return 0


def _profile(profiles: dict[str, dict[str, Any]], args: argparse.Namespace, **overrides: Any) -> dict[str, Any]:
    """The quick or full profile, with the options given on the command line."""
    return _overridden(profiles["quick" if args.quick else "full"], tuple(overrides.items()))


def _overridden(profile: dict[str, Any], overrides: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    """``profile`` with the options given on the command line (those not None)."""
    return {**profile, **{name: value for name, value in overrides if value is not None}}


def _output(args: argparse.Namespace, kind: str) -> tuple[str, Path]:
    """The run's UTC stamp and its output folder (``--out``, else results/<stamp>-<kind>), created."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or Path(__file__).resolve().parent / "results" / f"{stamp}-{kind}"
    out.mkdir(parents=True, exist_ok=True)
    return stamp, out


def _command() -> str:
    """The command line as typed, less ``--out`` (a machine's own path)."""
    argv = sys.argv[1:]
    if "--out" in argv:
        at = argv.index("--out")
        argv = argv[:at] + argv[at + 2:]
    return " ".join(["./dev bench", *[a for a in argv if not a.startswith("--out=")]])


def _uptime() -> str:
    import subprocess

    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _machine() -> dict[str, object]:
    return {"platform": platform.platform(), "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(), "cpus": _cpus()}


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    raise SystemExit(main())
