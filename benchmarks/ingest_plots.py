"""The sustained-ingest plots (``ingest_<loop>.png``): freshness of every delta with rolling
p50/p99 per read mode, query latency idle and during ingest, and the queue depth over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

WINDOW_SECONDS = 30.0  # rolling percentiles in the plots


def plots(results: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for name, mode in results["modes"].items():
        figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(8, 8.5), sharex=True)
        for read, colour in (("bounded", "tab:blue"), ("pending", "tab:orange")):
            points = [(t, a) for t, a in mode["timelines"][read] if a is not None]
            if points:
                times, ages = np.array(points).T
                top.scatter(times, ages, s=2, alpha=0.3, color=colour, label=f"{read}: each delta")
                edges = np.arange(0, times.max() + WINDOW_SECONDS, WINDOW_SECONDS)
                for q, style in ((50, "-"), (99, "--")):
                    centres, values = [], []
                    for lo in edges:
                        inside = ages[(times >= lo) & (times < lo + WINDOW_SECONDS)]
                        if len(inside):
                            centres.append(lo + WINDOW_SECONDS / 2)
                            values.append(np.percentile(inside, q))
                    top.plot(centres, values, style, color=colour, label=f"{read}: p{q} per {WINDOW_SECONDS:.0f} s")
        ceiling = max([a for read in ("bounded", "pending") for _t, a in mode["timelines"][read] if a is not None],
                      default=1.0) * 1.5
        for read, colour in (("bounded", "tab:blue"), ("pending", "tab:orange")):
            unseen = [t for t, a in mode["timelines"][read] if a is None]
            if unseen:  # never visible within the run: drawn above every measured point
                top.scatter(unseen, [ceiling] * len(unseen), s=6, marker="x", color=colour,
                            label=f"{read}: not visible by the end ({len(unseen)})")
        top.set(ylabel="freshness s (produced → visible)", yscale="log",
                title=f"sustained ingest, {name}: {mode['achieved_rate']:.1f} deltas/s")
        top.legend(fontsize=7)
        _query_panel(middle, mode)
        depth = mode["queue_depth"]
        bottom.plot([d["t"] for d in depth], [d["visible"] for d in depth], label="visible")
        bottom.plot([d["t"] for d in depth], [d["in_flight"] for d in depth], label="in flight")
        if depth and "runs" in depth[0]:
            bottom.plot([d["t"] for d in depth], [d["runs"]["queued"] for d in depth], label="Dagster runs queued")
        bottom.set(xlabel="seconds since producers started", ylabel="queue depth (messages)")
        bottom.legend(fontsize=7)
        figure.tight_layout()
        file = f"ingest_{name}.png"
        figure.savefig(out / file, dpi=110)
        names.append(file)
    plt.close("all")
    return names


def _query_panel(axes: Any, mode: dict[str, Any]) -> None:
    """Each timed query's latency (idle ones before 0 s), with the idle and during p99 as lines."""
    for kind, colour in (("default", "tab:blue"), ("fresh", "tab:orange")):
        points = [(t, ms) for t, ms in mode.get("query_timeline", {}).get(kind, []) if ms is not None]
        if not points:
            continue
        times, ms = np.array(points).T
        axes.scatter(times, ms, s=2, alpha=0.3, color=colour, label=f"{kind} reads: each query")
        figures = mode["query_latency"][kind]
        for phase, style in (("idle_ms", ":"), ("during_ms", "--")):
            axes.axhline(figures[phase]["p99"], linestyle=style, color=colour, linewidth=1,
                         label=f"{kind}: p99 {phase.split('_')[0]} {figures[phase]['p99']:.0f} ms")
    axes.axvline(0, color="grey", linewidth=0.5)
    axes.set(ylabel="query latency ms (n_results=10)", yscale="log")
    axes.legend(fontsize=6)
