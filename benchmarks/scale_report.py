"""The scale profile's results.json → report.md (targets met or not, with ratios) and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .tables import table

QUERY_P50_TARGET_MS = 10.0
COMPACTION_RATIO_TARGET = 1.5


def _verdict(ok: bool) -> str:
    return "met" if ok else "not met"


def _round(results: dict[str, Any], size: int, kind: str) -> dict[str, Any] | None:
    return next((r for r in results["rounds"] if r["snapshot_vectors"] == size and r["kind"] == kind), None)


def held(results: dict[str, Any], size: int) -> int:
    """The vectors the collection built for ``size`` held when the measurements began."""
    return int(results["build"][str(size)]["vectors"])


def scale_targets(results: dict[str, Any]) -> list[list[Any]]:
    small, large = min(results["sizes"]), max(results["sizes"])
    deltas = results["parameters"]["deltas"]
    rows = []
    for kind, label in (("warm", "warm compactor"), ("cold", "cold compactor"),
                        ("warm, cProfile", "warm compactor under cProfile")):
        at_large, at_small = _round(results, large, kind), _round(results, small, kind)
        if at_large and at_small:
            ratio = at_large["seconds"] / at_small["seconds"]
            rows.append([f"{deltas}×100 compaction into {held(results, large):,} ≤ {COMPACTION_RATIO_TARGET}× "
                         f"into {held(results, small):,} "
                         f"({label})", f"{ratio:.2f}× ({at_large['seconds']:.2f} s / {at_small['seconds']:.2f} s)",
                         _verdict(ratio <= COMPACTION_RATIO_TARGET)])
    for query in (q for q in results["queries"] if q["snapshot_vectors"] == large):
        p50 = query["warm"]["p50_ms"]
        rows.append([f"warm query p50 ≤ {QUERY_P50_TARGET_MS:.0f} ms at {query['vectors']:,} ({query['layout']}, "
                     f"{query['segments']} segments)", f"{p50:.2f} ms (p95 {query['warm']['p95_ms']:.2f})",
                     _verdict(p50 <= QUERY_P50_TARGET_MS)])
    cold = results["cold_start"][str(large)]
    rows.append([f"reader cold start at {held(results, large):,} (empty cache → first answer)",
                 f"{cold['seconds']:.1f} s, {cold['bytes'] / 1e6:,.0f} MB", "reported"])
    peaks = ", ".join(f"{name} {mb:,.0f} MB" for name, mb in results["processes"].items() if mb)
    rows.append(["peak memory of each process (RSS)", peaks, "reported"])
    return rows


def write_scale_report(results: dict[str, Any], out: Path) -> None:
    small, large = min(results["sizes"]), max(results["sizes"])
    parameters = results["parameters"]
    machine = results["machine"]
    load = lambda values: "/".join(f"{v:.1f}" for v in values)  # noqa: E731
    lines = [f"# A million vectors: the scale profile ({held(results, large):,} vectors)", "",
             f"Machine: {machine['platform']}, {machine['cpus']} CPUs, Python {machine['python']}; moto server on "
             f"loopback (ranged GETs served from the range); 384-d seeded random vectors. `{results['command']}`, "
             f"run {results['started_at']}, {results['wall_seconds']:.0f} s; load average (1/5/15 min) "
             f"{load(results['load_before'])} before, {load(results['load_after'])} after.", "",
             "## Targets", "", *table(["target", "measured", "verdict"], scale_targets(results)), ""]
    lines += ["## Build (as a backfill loads a collection)", "",
              f"Deltas of {parameters['build_delta_vectors']:,} vectors, compacted "
              f"{parameters['build_chunk_vectors']:,} vectors at a time, each compaction folding its chunk into "
              "the one base segment (the collection's segment_max_count is 1 for the load, restored after).", ""]
    built = {size: b for size, b in results["build"].items() if not b.get("reused")}
    lines += [] if not built else table(["collection", "vectors", "deltas", "compactions", "produce s", "compact s", "fold s", "total s",
                     "version MB", "lowest GB available"],
                    [[f"{int(size):,}", f"{b['vectors']:,}", b["deltas"], b["chunks"], f"{b['produce_s']:.0f}",
                      f"{b['compact_s']:.0f}", f"{b['fold_s']:.0f}", f"{b['seconds']:.0f}",
                      f"{b['version_bytes'] / 1e6:,.0f}", f"{b['lowest_available_gb']:.1f}"]
                     for size, b in built.items()])
    reused = [f"{int(size):,} ({b['vectors']:,} vectors, folded back to one segment in {b['fold_s']:.0f} s)"
              for size, b in results["build"].items() if b.get("reused")]
    if reused:
        lines += ["", "Reused from an earlier run on the same server (`--scale-endpoint`): " + ", ".join(reused) + "."]
    lines += ["", f"## Compactions ({parameters['deltas']} deltas × 100 vectors, each an append)", "",
              "In the order run. Warm: one compactor process for all rounds, its cache on disk kept between them. "
              "Cold: a fresh process with an empty cache per round. At the small size the background fold runs "
              "first when the next compaction would fold the base (the column says).", ""]
    lines += table(["snapshot", "kind", "fold first", "seconds", "published at s", "merge s", "fold → segments",
                     "MB down / up", "AWS requests per delta", "peak RSS MB"],
                    [[f"{held(results, r['snapshot_vectors']):,}", r["kind"], r["folded_first"] or "", f"{r['seconds']:.2f}",
                      f"{r['publish_s']:.2f}", f"{r['merge_s']:.2f}", f"{r['fold']} → {r['segments']}",
                      f"{r['bytes_downloaded'] / 1e6:.1f} / {r['bytes_uploaded'] / 1e6:.1f}",
                      f"{r['requests_per_delta']:.1f}" if "requests_per_delta" in r else "",
                      f"{r['peak_rss_mb']:.0f}" if "peak_rss_mb" in r else "(warm process, below)"]
                     for r in results["rounds"]])
    lines += _profile_lines(results, small, large)
    lines += ["", "## Reader", "", "Cold start: an empty cache, then pointer, manifest, download, checksums, open, "
              "first query.", ""]
    lines += table(["collection", "segments", "open s", "first query s", "MB downloaded (files)"],
                    [[f"{held(results, int(size)):,}", c["segments"], f"{c['open_s']:.2f}", f"{c['first_query_s']:.3f}",
                      f"{c['bytes'] / 1e6:,.1f} ({c['files']})"] for size, c in results["cold_start"].items()])
    lines += ["", "Warm queries (n_results=10, the search on the open version; with where: merchant = m3):", ""]
    lines += table(["collection", "layout", "segments", "p50 / p95 / p99 ms", "with where p50 / p95 / p99 ms"],
                    [[f"{q['vectors']:,}", q["layout"], q["segments"],
                      " / ".join(f"{q['warm'][k]:.2f}" for k in ("p50_ms", "p95_ms", "p99_ms")),
                      " / ".join(f"{q['warm_where'][k]:.2f}" for k in ("p50_ms", "p95_ms", "p99_ms"))]
                     for q in results["queries"]])
    if results["refreshes"]:
        lines += ["", f"Refresh after each publish at {held(results, large):,} (a query with consistency=\"strong\": pointer, "
                  "manifest, new files, open, search):", ""]
        lines += table(["after", "segments", "new segment MB", "downloaded MB (files)", "ratio", "version MB",
                         "first query ms"],
                        [[r["kind"], r["segments"], f"{r['segment_bytes'] / 1e6:.2f}",
                          f"{r['downloaded_bytes'] / 1e6:.2f} ({r['downloaded_files']})",
                          f"{r['downloaded_bytes'] / max(r['segment_bytes'], 1):.2f}×",
                          f"{r['version_bytes'] / 1e6:,.0f}", f"{r['first_query_ms']:.0f}"]
                         for r in results["refreshes"]])
    lines += ["", "## Memory and storage", ""]
    lines += table(["process", "peak RSS MB"], [[name, f"{mb:,.0f}" if mb else "n/a"]
                                                 for name, mb in results["processes"].items()])
    storage = results["storage"]
    lines += ["", f"S3 (moto) after the run: {storage['s3_total_bytes'] / 1e9:.2f} GB in all; published versions "
              + ", ".join(f"{held(results, int(s)):,} vectors {b / 1e6:,.0f} MB"
                          for s, b in storage["published_version_bytes"].items())
              + f". Local disk: compactor cache {storage['compactor_cache_bytes'] / 1e9:.2f} GB, reader cache "
              f"{storage['reader_cache_bytes'] / 1e9:.2f} GB.", ""]
    lines += table(["S3 prefix", "MB"], [[prefix, f"{size / 1e6:,.1f}"]
                                          for prefix, size in sorted(storage["s3_bytes"].items())])
    plots = _plots(results, out)
    lines += ["", "## Plots", "", *[f"![{name}]({name})" for name in plots], ""]
    (out / "report.md").write_text("\n".join(lines))


def _profile_lines(results: dict[str, Any], small: int, large: int) -> list[str]:
    profiles = results.get("profiles", {})
    if str(large) not in profiles:
        return []
    at_small = {r["function"]: r for r in profiles.get(str(small), [])}
    largest = profiles[str(large)]
    small, large = held(results, small), held(results, large)  # from here on: labels
    def row(r: dict[str, Any]) -> list[Any]:
        before = at_small.get(r["function"])
        return [f"`{r['function']}`", f"{r['cumulative_s']:.3f}", f"{before['cumulative_s']:.3f}" if before else "",
                f"{r['cumulative_s'] - (before['cumulative_s'] if before else 0.0):+.3f}", r["calls"]]

    header = ["function", f"at {large:,}", f"at {small:,}", "difference", f"calls at {large:,}"]
    lines = ["", f"### Where a warm compaction's time goes (cProfile of the compacting thread; cumulative s, at "
             f"{large:,} beside {small:,})", "", "The largest:", ""]
    lines += table(header, [row(r) for r in largest[:25]])
    grown = sorted(largest, key=lambda r: r["cumulative_s"] - at_small.get(r["function"], {}).get(
        "cumulative_s", 0.0), reverse=True)
    lines += ["", f"What grew most from {small:,} to {large:,}:", ""]
    lines += table(header, [row(r) for r in grown[:15]])
    return lines


def _plots(results: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = results["sizes"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    kinds = list(dict.fromkeys(r["kind"] for r in results["rounds"]))
    width = 0.8 / max(len(sizes), 1)
    for offset, size in enumerate(sizes):
        seconds = [next((r["seconds"] for r in results["rounds"] if r["kind"] == k and r["snapshot_vectors"] == size),
                        0.0) for k in kinds]
        left.bar([i + offset * width for i in range(len(kinds))], seconds, width, label=f"{size:,} vectors")
    left.set_xticks([i + width * (len(sizes) - 1) / 2 for i in range(len(kinds))], kinds)
    left.set(ylabel="seconds", title=f"{results['parameters']['deltas']} deltas × 100 vectors")
    left.legend(fontsize=8)
    labels = [f"{q['vectors']:,}\n{q['layout']}" for q in results["queries"]]
    for key, marker in (("p50_ms", "o"), ("p95_ms", "s"), ("p99_ms", "^")):
        right.plot(labels, [q["warm"][key] for q in results["queries"]], marker, label=key.replace("_ms", ""))
    right.axhline(QUERY_P50_TARGET_MS, color="grey", linestyle="--", linewidth=1, label="p50 target")
    right.set(ylabel="ms", title="warm query latency")
    right.tick_params(axis="x", labelsize=7)
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "scale.png", dpi=110)
    plt.close("all")
    return ["scale.png"]
