"""Sustained ingest: raw samples → figures (``summarize``), report section and plots
(``write_ingest_report``; the plots in ``ingest_plots.py``, query latency in
``ingest_queries.py``). Targets (issue 12): ≥ 10 deltas/s sustained, the queue does not grow,
freshness p99 ≤ 30 s through the library loop, ≤ 2 s with fresh reads. Dagster (issue
20): runs ≈ compaction cycles (none per delta), a publish at least every 2 min, freshness
within one cycle of the watch loop's, sensor tick p99 ≤ 10 s (moto's ReceiveMessage time
apart), instance growth per day. Issue 21: no cycle rewrites the base (bytes per cycle: max
≤ 3× median), query p99 during ingest ≤ 3× idle p99."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from .ingest_plots import plots
from .ingest_queries import QUERY_KINDS, latency_table, query_rows, summarize_queries
from .tables import table

TARGET_RATE = 10.0
TARGET_P99_LOOP_S = 30.0
TARGET_P99_FRESH_S = 2.0
TARGET_PUBLISH_GAP_S = 120.0
TARGET_TICK_P99_S = 10.0


def _spread(samples: list[float]) -> dict[str, float]:
    """p50/p95/p99/max; ``inf`` for a delta never seen counts in, so it cannot flatter them."""
    if not samples:
        return dict.fromkeys(("p50", "p95", "p99", "max", "mean"), math.nan)
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "max": ordered[-1], "mean": float(np.mean(ordered))}


def summarize(raw: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    start = raw["start_at"]
    produced = sorted(raw["produced"], key=lambda p: p["seq"])
    seconds = max((p["produced_at"] for p in produced), default=start) - start
    freshness, timelines = {}, {}
    for mode, seen in raw["seen"].items():
        seen_at = {row["seq"]: row["seen_at"] for row in seen}
        ages = [seen_at.get(p["seq"], math.inf) - p["produced_at"] for p in produced]
        freshness[mode] = {**_spread(ages), "seen": len(seen_at), "unseen": sum(a == math.inf for a in ages)}
        timelines[mode] = [[round(p["produced_at"] - start, 3), round(a, 3) if a != math.inf else None]
                           for p, a in zip(produced, ages)]
    depth = [{**d, "t": round(d["at"] - start, 2)} for d in raw["queue_depth"]]
    window = [d for d in depth if 0 <= d["t"] <= raw["produced_until"] - start]
    cycles = raw["loop"]["cycles"]
    return {
        "collection": raw["collection"], "produced": len(produced), "producing_seconds": seconds,
        "achieved_rate": len(produced) / seconds if seconds > 0 else 0.0,
        "produce_call_s": _spread([p["produced_at"] - p["started_at"] for p in produced]),
        "vectors": len(produced) * parameters["vectors_per_delta"],
        "freshness": freshness, "timelines": timelines,
        "queue": _queue_trend(window, depth), "queue_depth": depth,
        "merge_vectors_per_s": _merge_rate(cycles, parameters["vectors_per_delta"]),
        "versions": raw.get("versions", {}),
        "cycles": {"count": len(cycles), "seconds": _spread([c["seconds"] for c in cycles]),
                   "deltas_per_cycle": _spread([c.get("deltas", 0) for c in cycles]) if cycles and "deltas" in cycles[0]
                   else {}, "timeline": [[round(c["started_at"] - start, 2), c["seconds"]] for c in cycles],
                   "bytes_uploaded": _spread([c["bytes_uploaded"] for c in cycles if c.get("bytes_uploaded")]),
                   "folds": dict(Counter(f for c in cycles for f in c.get("folds", [])))},
        "loop": {k: v for k, v in raw["loop"].items() if k not in ("cycles", "ticks", "growth")},
        **(_dagster_figures(raw["loop"], start, raw["produced_until"]) if "ticks" in raw["loop"] else {}),
        "drained_after_s": raw["drained_after_s"], "load_before": raw["load_before"], "load_after": raw["load_after"],
        "reader_poll_s": {mode: _spread(polls) for mode, polls in raw["reader_polls"].items()},
        "producer_exit_codes": raw["producer_exit_codes"],
        "seed_vectors": parameters["seed_vectors"], "seed_published_s": raw["seed_published_s"],
        "load_idle": raw["load_idle"],
        "query_latency": summarize_queries(raw["queries"], start, raw["produced_until"], _spread),
        "query_timeline": {kind: [[round(r["at"] - start, 2), None if r["error"] else round(1000 * r["s"], 2)]
                                  for r in rows] for kind, rows in raw["queries"].items()},
    }


def _merge_rate(cycles: list[dict[str, Any]], vectors_per_delta: int) -> float | None:
    """Vectors a loop compacted per second of its cycles with deltas (the loop's records carry
    their delta counts; Dagster runs do not: None)."""
    busy = [c for c in cycles if c.get("deltas")]
    seconds = sum(c["seconds"] for c in busy)
    return round(sum(c["deltas"] for c in busy) * vectors_per_delta / seconds, 1) if seconds > 0 else None


def _dagster_figures(loop: dict[str, Any], start: float, until: float) -> dict[str, Any]:
    """Runs per cycle, publish gaps, sensor ticks (whole, SQS receive apart), instance growth."""
    published = sorted(c["ended_at"] for c in loop["cycles"] if c["status"] == "SUCCESS" and start <= c["ended_at"])
    edges = [start, *[t for t in published if t <= until], until]
    gaps = [b - a for a, b in zip(edges, edges[1:])]
    ticks = [t for t in loop["ticks"] if start <= t["at"] <= until]
    before, after = loop["growth"]
    hours = max(1e-9, (after["at"] - before["at"]) / 3600)
    per_hour = {k: (after[k] - before[k]) / hours for k in ("runs", "event_rows", "ticks")}
    per_hour["partitions"] = (sum(after["partitions"].values()) - sum(before["partitions"].values())) / hours
    return {"dagster": {
        "runs": loop["runs"], "publishes": len(published), "publish_gap_s": _spread(gaps),
        "tick_s": _spread([t["seconds"] for t in ticks]),
        "tick_receive_s": _spread([t["receive_s"] for t in ticks if t.get("receive_s") is not None]),
        "tick_body_s": _spread([t["body_s"] for t in ticks if t.get("body_s") is not None]),
        "tick_without_receive_s": _spread([t["seconds"] - t["receive_s"] for t in ticks if t.get("receive_s") is not None]),
        "ticks": len(ticks), "growth_before": before, "growth_after": after,
        "growth_per_hour": per_hour, "growth_per_day": {k: v * 24 for k, v in per_hour.items()}}}


def _queue_trend(window: list[dict[str, Any]], depth: list[dict[str, Any]]) -> dict[str, Any]:
    """Visible messages while producing: start, end, max, and the least-squares slope."""
    if len(window) < 2:
        return {}
    times = np.array([d["t"] for d in window])
    visible = np.array([d["visible"] for d in window], dtype=float)
    slope = float(np.polyfit(times, visible, 1)[0]) if np.ptp(times) > 0 else 0.0
    return {"start": int(visible[0]), "end": int(visible[-1]), "max": int(visible.max()),
            "mean": float(visible.mean()), "slope_per_s": slope,
            "after_drain": depth[-1]["visible"] + depth[-1]["in_flight"] if depth else None}


def targets(modes: dict[str, Any], rate: float, ceiling: dict[str, Any] | None = None,
            seconds: float | None = None) -> list[list[str]]:
    verdict = lambda ok: "met" if ok else "not met"  # noqa: E731
    rows = []
    for name, mode in modes.items():
        loop = "library loop (compact --watch)" if name == "watch" else "Dagster sensors + compaction job"
        # Met when the producers made every delta asked of them inside the window, at ≥ the target rate
        # (the achieved rate divides by the last delta's time, a fraction of a second past the schedule's).
        asked = round(rate * seconds) if seconds else None
        kept_up = mode["achieved_rate"] >= TARGET_RATE or (rate >= TARGET_RATE and mode["produced"] == asked)
        rows.append([f"{loop}: producers ≥ {TARGET_RATE:g} deltas/s (asked {rate:g})",
                     f"{mode['achieved_rate']:.2f}/s ({mode['produced']:,} of {asked or '?':,} deltas)",
                     verdict(kept_up)])
        if ceiling and mode.get("merge_vectors_per_s"):
            merged = mode["merge_vectors_per_s"]
            rows.append([f"{loop}: merge rate against chroma's insert ceiling (same run)",
                         f"{merged:,.0f} vectors/s of cycle time = {merged / ceiling['per_s']:.0%} of chroma's bulk "
                         f"insert of {ceiling['vectors']:,} records into an empty collection ({ceiling['per_s']:,.0f}/s, "
                         f"measured after the loops, load {ceiling['load']:.1f}); produced "
                         f"{mode['achieved_rate'] * mode['vectors'] / max(mode['produced'], 1):,.0f} vectors/s",
                         "reported"])
        queue = mode["queue"]
        if queue:
            grows = queue["slope_per_s"] > 0.01 * rate  # more than 1 % of the produce rate piling up
            rows.append([f"{loop}: the queue does not grow (slope of visible messages ≤ 1 % of the rate)",
                         f"{queue['slope_per_s']:+.3f} msg/s (start {queue['start']}, end {queue['end']}, "
                         f"max {queue['max']})", verdict(not grows)])
        bounded, pending = mode["freshness"]["bounded"], mode["freshness"]["pending"]
        limit = TARGET_P99_LOOP_S if name == "watch" else None
        rows.append([f"{loop}: freshness p99, default reads" + (f" ≤ {limit:g} s" if limit else " (reported)"),
                     f"p50 {bounded['p50']:.1f} s, p99 {bounded['p99']:.1f} s", verdict(bounded["p99"] <= limit)
                     if limit else "reported"])
        written = mode["cycles"].get("bytes_uploaded", {})
        if written and not math.isnan(written["max"]) and name == "watch":
            ratio = written["max"] / max(written["p50"], 1)
            rows.append([f"{loop}: no cycle rewrites the base (bytes written per cycle: max ≤ 3× median)",
                         f"max {written['max'] / 1e6:.2f} MB / median {written['p50'] / 1e6:.2f} MB = {ratio:.2f}×; "
                         f"folds {mode['cycles'].get('folds', {})}", verdict(ratio <= 3)])
        if mode.get("versions"):
            rows.append([f"{loop}: what the published versions wrote, by kind (pointer chain; rebased = a fold "
                         "written off the lock, outside any cycle)",
                         "; ".join(f"{kind} {row['versions']} versions, {row['bytes'] / 1e6:,.1f} MB"
                                   + (f" ({row['rebased']} rebased)" if row["rebased"] else "")
                                   for kind, row in sorted(mode["versions"].items())), "reported"])
        rows.append([f"{loop}: freshness p99 with fresh reads (include_pending) ≤ {TARGET_P99_FRESH_S:g} s",
                     f"p50 {pending['p50']:.2f} s, p99 {pending['p99']:.2f} s",
                     verdict(pending["p99"] <= TARGET_P99_FRESH_S)])
        rows += query_rows(name, mode, verdict)
        if "dagster" in mode:
            rows += _dagster_targets(mode, modes.get("watch"), verdict)
    return rows


def _dagster_targets(mode: dict[str, Any], watch: dict[str, Any] | None, verdict: Any) -> list[list[str]]:
    d = mode["dagster"]
    runs = d["runs"]
    rows = [["Dagster: runs ≈ compaction cycles, none per delta",
             f"{runs.get('compaction', 0)} compaction runs, {runs.get('validate_delta', 0)} validate_delta runs for "
             f"{mode['produced']} deltas", verdict(runs.get("validate_delta", 0) == 0
                                                   and runs.get("compaction", 0) <= mode["cycles"]["count"] + 1)],
            ["Dagster: a publish at least every 2 min (longest gap while producing)",
             f"{d['publishes']} publishes, gap p50 {d['publish_gap_s']['p50']:.0f} s, max {d['publish_gap_s']['max']:.0f} s",
             verdict(d["publish_gap_s"]["max"] <= TARGET_PUBLISH_GAP_S)],
            [f"Dagster: queue sensor tick p99 ≤ {TARGET_TICK_P99_S:g} s (moto's ReceiveMessage apart)",
             f"tick p99 {d['tick_s']['p99']:.1f} s; of which SQS receive p99 {d['tick_receive_s']['p99']:.1f} s; "
             f"tick without receive p99 {d['tick_without_receive_s']['p99']:.1f} s ({d['ticks']} ticks)",
             verdict(d["tick_without_receive_s"]["p99"] <= TARGET_TICK_P99_S)],
            ["Dagster: instance growth per day (runs / event rows / partitions / ticks; before retention and pruning)",
             " / ".join(f"{d['growth_per_day'][k]:,.0f}" for k in ("runs", "event_rows", "partitions", "ticks")),
             "reported"]]
    if watch is not None:
        ours, theirs = mode["freshness"]["bounded"], watch["freshness"]["bounded"]
        cycle = max(mode["cycles"]["seconds"].get("p50", 0) or 0, d["publish_gap_s"].get("p50", 0) or 0)
        rows.append(["Dagster: freshness p50/p99 within one cycle of the watch loop's",
                     f"p50 {ours['p50']:.1f} vs {theirs['p50']:.1f} s, p99 {ours['p99']:.1f} vs {theirs['p99']:.1f} s "
                     f"(cycle {cycle:.0f} s)", verdict(ours["p50"] <= theirs["p50"] + cycle
                                                        and ours["p99"] <= theirs["p99"] + cycle)])
    return rows


def section(results: dict[str, Any], images: list[str]) -> list[str]:
    parameters = results["parameters"]
    lines = ["## Sustained ingest", "",
             f"`{results['command']}`: {parameters['rate']:g} deltas/s of {parameters['vectors_per_delta']} "
             f"{384}-d vectors for {parameters['seconds']:g} s per compaction loop, {parameters['producers']} producer "
             f"processes, readers polling every {parameters['poll_seconds']:g} s, {len(QUERY_KINDS)} query timers at "
             f"{parameters['query_rate']:g}/s each ({parameters['idle_queries']} idle queries, then during ingest) "
             f"against a seed of {parameters['seed_vectors']} vectors; load average before / idle / after: "
             + "; ".join(f"{n} {m['load_before'][0]:.1f} / {m['load_idle'][0]:.1f} → {m['load_after'][0]:.1f}"
                         for n, m in results["modes"].items()) + f". Machine: {results['machine']}.", "",
             *table(["target", "figure", "verdict"], targets(results["modes"], parameters["rate"],
                                                         results.get("insert_ceiling"), parameters["seconds"])), ""]
    rows = []
    for name, mode in results["modes"].items():
        for read, f in mode["freshness"].items():
            rows.append([name, read, f"{mode['achieved_rate']:.2f}", f"{f['p50']:.2f}", f"{f['p95']:.2f}",
                         f"{f['p99']:.2f}", f"{f['max']:.2f}", f"{f['seen']}/{mode['produced']}",
                         f"{mode['reader_poll_s'][read].get('p50', 0):.2f}"])
    lines += table(["loop", "reads", "deltas/s", "p50 s", "p95 s", "p99 s", "max s", "seen", "poll p50 s"], rows)
    lines += ["", *table(["loop", "query reads", "idle p50 ms", "idle p99 ms", "during p50 ms", "during p99 ms",
                          "during max ms", "p99 during / idle", "queries idle/during", "failed idle/during"],
                         latency_table(results["modes"])), ""]
    rows = []
    for name, mode in results["modes"].items():
        q, c = mode["queue"], mode["cycles"]
        rows.append([name, q.get("start"), q.get("end"), q.get("max"), f"{q.get('slope_per_s', 0):+.3f}",
                     q.get("after_drain"), c["count"], f"{c['seconds'].get('p50', 0):.1f}",
                     f"{c['seconds'].get('max', 0):.1f}", f"{c['deltas_per_cycle'].get('p50', 0):.0f}"
                     if c["deltas_per_cycle"] else "-", f"{mode['produce_call_s'].get('p50', 0) * 1000:.0f}",
                     f"{mode['drained_after_s']:.0f}"])
    lines += table(["loop", "queue start", "end", "max", "slope msg/s", "after drain", "cycles", "cycle p50 s",
                     "cycle max s", "deltas/cycle p50", "produce call p50 ms", "drain s"], rows)
    for name, mode in results["modes"].items():
        if name == "dagster":
            lines += ["", f"Dagster runs: {mode['loop'].get('runs')}; run queue at the end "
                          f"{mode['loop'].get('run_queue_at_end')}."]
    lines += ["", *[f"![{p}]({p})" for p in images], ""]
    return lines


def write_ingest_report(results: dict[str, Any], out: Path) -> None:
    (out / "report.md").write_text("\n".join(["# Sustained ingest", "", *section(results, plots(results, out))[2:]]))
