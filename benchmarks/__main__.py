"""``python -m benchmarks [--quick]``: run every figure and write results.json + report.md."""

import argparse
import json
import logging
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from vector_pipeline.config import Settings
from vector_pipeline.local_aws import MotoServer, setup_resources
from vector_pipeline.processes import stop_on_signals

from . import suite
from .report import write_report

PROFILES = {
    # 2 cores: quick finishes in under 3 minutes; full is the one docs/performance.md reports.
    "quick": {"snapshot_sizes": [2_000, 10_000], "delta_counts": [1, 10, 50], "producer_repeats": 5,
              "queries": 100, "ceiling_vectors": 5_000},
    "full": {"snapshot_sizes": [10_000, 100_000], "delta_counts": [1, 10, 50, 200], "producer_repeats": 20,
             "queries": 1_000, "ceiling_vectors": 5_000},
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, < 3 minutes on 2 cores")
    parser.add_argument("--sizes", type=int, nargs="+", help="snapshot sizes (vectors), overriding the profile")
    parser.add_argument("--deltas", type=int, nargs="+", help="delta counts, overriding the profile")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/results/<stamp>)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for quiet in ("vector_pipeline", "botocore", "urllib3", "chromadb"):
        logging.getLogger(quiet).setLevel(logging.WARNING)
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
            "machine": {"platform": platform.platform(), "python": platform.python_version(),
                        "processor": platform.processor() or platform.machine(), "cpus": _cpus()},
            "producer": suite.producer_latency(work, [100, 1000], profile["producer_repeats"]),
        }
        results["compaction"], results["folds"] = suite.compaction(work, profile["snapshot_sizes"],
                                                                   profile["delta_counts"])
        results["ceilings"] = suite.ceilings(work, profile["snapshot_sizes"][-1], profile["ceiling_vectors"])
        results["query"] = suite.query_latency(work, profile["snapshot_sizes"], profile["queries"])
    results["peak_rss_mb"] = suite.peak_rss_mb()
    results["wall_seconds"] = time.perf_counter() - started
    (out / "results.json").write_text(json.dumps(results, indent=2))
    write_report(results, out)
    print(f"report: {out / 'report.md'} ({results['wall_seconds']:.0f}s)")
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    raise SystemExit(main())
