"""results.json → report.md with tables (ours, the baseline, the original design's numbers,
ratios), target verdicts, and plots of compaction time against snapshot size and delta count."""

from pathlib import Path
from typing import Any

ORIGINAL = {  # as the original design reports them, on AWS Lambda
    "producer": "300–600 ms per batch", "warm_query": "30–80 ms", "cold_start": "2–3 s",
    "merge_per_delta": "~100 ms", "compaction": "10–30 s for 10–50 deltas on a 10–100 MB snapshot",
}


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(f"{c:.3g}" if isinstance(c, float) else str(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *[_row(r) for r in rows]]


def targets(results: dict[str, Any]) -> list[list[Any]]:
    rows = results["compaction"]
    largest, smallest = max(r["snapshot_vectors"] for r in rows), min(r["snapshot_vectors"] for r in rows)
    fifty = {r["snapshot_vectors"]: r for r in rows if r["deltas"] == 50}
    verdict = lambda ok: "met" if ok else "not met"  # noqa: E731
    out = []
    if largest in fifty:
        speedup = fifty[largest]["speedup_vs_baseline"]
        out.append([f"50×100 into {largest:,}: ≥ 5× faster than baseline", f"{speedup:.2f}×", verdict(speedup >= 5)])
        if smallest in fifty and smallest != largest:
            ratio = fifty[largest]["ours_warm_s"] / fifty[smallest]["ours_warm_s"]
            out.append([f"same deltas into {largest:,} ≤ 1.5× into {smallest:,} (warm)", f"{ratio:.2f}×",
                        verdict(ratio <= 1.5)])
        ceiling = results["chroma_ceiling"]["vectors_per_s"]
        share = fifty[largest]["ours_warm_vectors_per_s"] / ceiling
        out.append(["merged vectors/s ≥ 90 % of chroma's bulk upsert", f"{100 * share:.0f} %", verdict(share >= 0.9)])
    query = next(q for q in results["query"] if q["snapshot_vectors"] == largest)
    out.append([f"warm query p50 ≤ 5 ms at {largest:,}", f"{query['warm']['p50_ms']:.2f} ms",
                verdict(query["warm"]["p50_ms"] <= 5)])
    producer = results["producer"]["100"]["mean_ms"]
    out.append(["producer ≤ 100 ms per 100 vectors", f"{producer:.0f} ms", verdict(producer <= 100)])
    if largest in fifty:
        row = fifty[largest]
        out.append(["bytes moved (warm) ≈ changed files, not the base again",
                    f"warm {row['ours_warm_bytes_moved'] / 1e6:.1f} MB vs cold {row['ours_cold_bytes_moved'] / 1e6:.1f} MB",
                    verdict(row["ours_warm_bytes_moved"] < row["ours_cold_bytes_moved"])])
    return out


def write_report(results: dict[str, Any], out: Path) -> None:
    lines = [f"# vector_pipeline benchmarks ({results['profile']})", "",
             f"Machine: {results['machine']['platform']}, {results['machine']['cpus']} CPUs, "
             f"Python {results['machine']['python']}; moto server on loopback; 384-d seeded random vectors. "
             f"Run {results['started_at']}, {results['wall_seconds']:.0f} s, peak RSS {results['peak_rss_mb']:.0f} MB.",
             "", "## Targets", "", *_table(["target", "measured", "verdict"], targets(results)),
             "", "## Compaction (deltas of 100 vectors)", ""]
    lines += _table(["snapshot", "deltas", "ours warm s", "ours cold s", "baseline s", "speedup", "merged vec/s",
                     "MB moved warm / cold / baseline"],
                    [[f"{r['snapshot_vectors']:,}", r["deltas"], r["ours_warm_s"], r["ours_cold_s"], r["baseline_s"],
                      f"{r['speedup_vs_baseline']:.2f}×", f"{r['ours_warm_vectors_per_s']:.0f}",
                      f"{r['ours_warm_bytes_moved'] / 1e6:.1f} / {r['ours_cold_bytes_moved'] / 1e6:.1f} / "
                      f"{r['baseline_bytes_moved'] / 1e6:.1f}"] for r in results["compaction"]])
    lines += ["", f"Original design: {ORIGINAL['compaction']}; {ORIGINAL['merge_per_delta']} merge per delta.", "",
              f"chroma's own bulk upsert of {results['chroma_ceiling']['vectors']:,} vectors into a "
              f"{results['chroma_ceiling']['snapshot_vectors']:,}-vector copy: "
              f"{results['chroma_ceiling']['vectors_per_s']:.0f} vectors/s (the ceiling).", "",
              "## Producer", ""]
    lines += _table(["vectors per delta", "mean ms", "p50 ms", "p95 ms", "original design"],
                    [[size, r["mean_ms"], r["p50_ms"], r["p95_ms"], ORIGINAL["producer"]]
                     for size, r in results["producer"].items()])
    lines += ["", "## Queries (n_results=10)", ""]
    lines += _table(["snapshot", "cold start s", "warm p50/p95/p99 ms", "with where p50/p95/p99 ms",
                     "original warm / cold"],
                    [[f"{q['snapshot_vectors']:,}", q["cold_start_s"],
                      "/".join(f"{q['warm'][k]:.2f}" for k in ("p50_ms", "p95_ms", "p99_ms")),
                      "/".join(f"{q['warm_where'][k]:.2f}" for k in ("p50_ms", "p95_ms", "p99_ms")),
                      f"{ORIGINAL['warm_query']} / {ORIGINAL['cold_start']}"] for q in results["query"]])
    plots = _plots(results, out)
    lines += ["", "## Plots", "", *[f"![{name}]({name})" for name in plots], ""]
    (out / "report.md").write_text("\n".join(lines))


def _plots(results: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["compaction"]
    sizes = sorted({r["snapshot_vectors"] for r in rows})
    counts = sorted({r["deltas"] for r in rows})
    names = []
    figure, axis = plt.subplots(figsize=(6, 4))
    for count in counts:
        picked = sorted((r for r in rows if r["deltas"] == count), key=lambda r: r["snapshot_vectors"])
        axis.plot([r["snapshot_vectors"] for r in picked], [r["ours_warm_s"] for r in picked], "o-", label=f"ours, {count} deltas")
        axis.plot([r["snapshot_vectors"] for r in picked], [r["baseline_s"] for r in picked], "x--", label=f"baseline, {count}")
    axis.set(xlabel="snapshot vectors", ylabel="compaction seconds", xscale="log", title="compaction vs snapshot size")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "compaction_vs_snapshot.png", dpi=110)
    names.append("compaction_vs_snapshot.png")
    figure, axis = plt.subplots(figsize=(6, 4))
    for size in sizes:
        picked = sorted((r for r in rows if r["snapshot_vectors"] == size), key=lambda r: r["deltas"])
        axis.plot([r["deltas"] for r in picked], [r["ours_warm_s"] for r in picked], "o-", label=f"ours warm, {size:,}")
        axis.plot([r["deltas"] for r in picked], [r["ours_cold_s"] for r in picked], "s:", label=f"ours cold, {size:,}")
        axis.plot([r["deltas"] for r in picked], [r["baseline_s"] for r in picked], "x--", label=f"baseline, {size:,}")
    axis.set(xlabel="deltas of 100 vectors", ylabel="compaction seconds", title="compaction vs delta count")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "compaction_vs_deltas.png", dpi=110)
    names.append("compaction_vs_deltas.png")
    plt.close("all")
    return names
