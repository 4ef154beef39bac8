"""The benchmark suite and its collections, ingest and scale profiles run end to end (tiny sizes) and
write their reports; no timing is asserted here: speed is shown by the report, as ratios measured in one run."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_suite_writes_results_and_report(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--sizes", "500", "--deltas", "1", "3",
                             "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert [(r["snapshot_vectors"], r["deltas"]) for r in results["compaction"]] == [(500, 1), (500, 3)]
    assert all(r["baseline_s"] > 0 and r["ours_warm_s"] > 0 for r in results["compaction"])
    assert all(0 < r["state_bytes_written"] and r["ours_cold_bytes_downloaded"] > 0 for r in results["compaction"])
    [refresh] = results["reader_refresh"]
    assert len(refresh["refreshes"]) == 5 and all(r["downloaded_bytes"] > 0 for r in refresh["refreshes"])
    assert refresh["pending_fetched"] == refresh["pending_deltas"]
    report = (tmp_path / "report.md").read_text()
    assert "## Targets" in report and "baseline" in report and "## Reader refresh" in report
    assert (tmp_path / "compaction_vs_snapshot.png").stat().st_size > 1000
    assert (tmp_path / "state_bytes_per_compaction.png").stat().st_size > 1000 and "Merge state per compaction" in report


def test_collections_profile_writes_results_and_report(tmp_path: Path) -> None:
    """The collections profile at tiny counts: ticks counted by operation, the drain, the
    count check and both query routings reported (its figures are for the full profile)."""
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--collections", "--quick", "--collection-count", "3",
                             "--deltas-per-collection", "2", "--vectors-per-delta", "3", "--queries", "10",
                             "--wait-for-in-flight", "0", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    first = results["queue_ticks"][0]
    assert first["partitions_added"] == {"collection": 3}  # deltas are runless events, not partitions and first["requests"]["ReceiveMessage"] >= 1
    assert results["reconciliation_pending"]["list_prefixes"] == {"delta/": 1}
    assert results["drain"]["collections_published"] == 3
    assert results["verify"]["collections_wrong"] == {} and results["verify"]["vectors_expected"] == 3 * 4  # 3 + 3, two replaced
    assert set(results["query_routing"]["own_collection"]) == {"p50_ms", "p95_ms", "p99_ms"}
    assert set(results["query_routing"]["shared_where"]) == {"p50_ms", "p95_ms", "p99_ms"}
    report = (tmp_path / "report.md").read_text()
    assert "## Sensor ticks" in report and "shared + where" in report


def test_ingest_profile_measures_freshness_queue_depth_and_query_latency_for_both_loops(tmp_path: Path) -> None:
    """The sustained-ingest profile at a tiny rate, both compaction loops (compact --watch and
    dagster dev's sensors): every delta produced is accounted for, seen or counted unseen, by
    both readers; the queue is sampled; query latency is timed idle and during ingest for both
    read kinds, with its target rows in the report; report and plots written. Its figures are for
    the full run (a few seconds here say nothing about sustained ingest)."""
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--ingest", "--quick", "--ingest-seconds", "3",
                             "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["modes"]) == {"watch", "dagster"}
    for name, mode in results["modes"].items():
        assert mode["produced"] >= 1 and mode["producer_exit_codes"] == [0]  # how many in 3 s follows the load
        for read in ("bounded", "pending"):
            freshness = mode["freshness"][read]
            assert freshness["seen"] + freshness["unseen"] == mode["produced"]
            assert len(mode["timelines"][read]) == mode["produced"]
        assert mode["queue_depth"] and mode["loop"]["exit_code"] == 0
        assert (tmp_path / f"ingest_{name}.png").stat().st_size > 1000
        for kind in ("default", "fresh"):  # query latency idle vs during ingest: counted, not timed
            latency = mode["query_latency"][kind]
            assert latency["queries"]["idle"] == results["parameters"]["idle_queries"]
            assert latency["errors"]["idle"] == 0 and latency["queries"]["during"] >= 1
            assert {"p50", "p99"} <= set(latency["idle_ms"]) and "p99_ratio" in latency
    watch = results["modes"]["watch"]
    assert watch["freshness"]["bounded"]["seen"] == watch["produced"]  # the loop drained what it was given
    assert watch["loop"]["summary"]["stopped_by"] == "signal" and watch["cycles"]["count"] >= 1
    # How many runs the daemon launched in a few seconds depends on when its sensors ticked: counted, not asserted.
    dagster = results["modes"]["dagster"]
    assert dagster["loop"]["runs"]["validate_delta"] == 0  # no run per delta
    assert set(dagster["dagster"]["growth_per_day"]) == {"runs", "event_rows", "partitions", "ticks"}
    report = (tmp_path / "report.md").read_text()
    assert "| target | figure | verdict |" in report and "ingest_dagster.png" in report
    for loop in ("library loop (compact --watch)", "Dagster sensors + compaction job"):
        assert f"{loop}: query p99 during ingest ≤ 3× idle p99, default reads" in report
        assert f"{loop}: query p99 during ingest ≤ 3× idle p99, fresh reads (include_pending)" in report
    assert "| loop | query reads | idle p50 ms |" in report
    assert results["insert_ceiling"]["per_s"] > 0 and watch["merge_vectors_per_s"] > 0  # the merge against its ceiling
    assert "library loop (compact --watch): merge rate against chroma's insert ceiling (same run)" in report
    assert sum(row["versions"] for row in watch["versions"].values()) >= 2  # the seed and the loop's appends
    assert "what the published versions wrote, by kind" in report
def test_fold_profile_folds_while_appending_and_keeps_every_append(tmp_path: Path) -> None:
    """The ``--fold`` path at a tiny N: the fold runs while appends are timed, every append
    survives it (count equals the model), and the report carries the latency row."""
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--fold", "--fold-vectors", "1500", "--fold-appends",
                             "2", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["fold"]["outcome"] in ("published", "rebased")
    assert results["final_count"] == results["expected_count"]
    assert len(results["appends_without_fold_s"]) == 2
    assert "append publish latency during the fold" in (tmp_path / "report.md").read_text() or \
        not results["appends_during_fold_s"]


def test_scale_profile_writes_every_target_row(tmp_path: Path) -> None:
    """The ``--scale`` path at a tiny N: build by chunks + fold, the compaction rounds at N and
    at the small size (warm, profiled, cold, each a process of its own), the reader's cold
    start, queries and refreshes, peak RSS per process; the report carries every target row."""
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--scale", "--scale-vectors", "1200", "--scale-small",
                             "400", "--scale-chunk", "600", "--scale-delta-vectors", "300", "--deltas", "3",
                             "--queries", "20", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["sizes"] == [400, 1200]
    assert results["build"]["1200"]["vectors"] == 1200 and results["build"]["1200"]["chunks"] == 2
    assert results["build"]["1200"]["segments"] == 1  # each chunk folded into the base
    assert [(r["snapshot_vectors"], r["kind"]) for r in results["rounds"]] == [
        (400, "warm"), (1200, "warm"), (400, "warm, cProfile"), (1200, "warm, cProfile"), (400, "cold"), (1200, "cold")]
    assert all(r["fold"] == "append" and r["vector_count"] > 0 for r in results["rounds"])
    assert set(results["profiles"]) == {"400", "1200"}
    assert [(q["snapshot_vectors"], q["layout"]) for q in results["queries"]] == [
        (400, "folded"), (1200, "folded"), (400, "as compacted"), (1200, "as compacted")]
    assert results["cold_start"]["1200"]["bytes"] > 0
    assert results["refreshes"] and all(r["downloaded_bytes"] > 0 for r in results["refreshes"])
    assert all(mb and mb > 0 for mb in results["processes"].values())
    assert results["storage"]["published_version_bytes"]["1200"] > 0
    report = (tmp_path / "report.md").read_text()
    targets = report.split("## Targets", 1)[1].split("##", 1)[0]
    for row in ("into 1,200 ≤ 1.5× into 400 (warm compactor)", "into 1,200 ≤ 1.5× into 400 (cold compactor)",
                "warm query p50 ≤ 10 ms at 1,200 (folded", "(as compacted", "reader cold start at 1,200",
                "peak memory of each process"):
        assert row in targets, row
    assert "### Where a warm compaction's time goes" in report
    assert (tmp_path / "scale.png").stat().st_size > 1000
