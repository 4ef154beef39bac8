"""The collections profile's results.json → report.md: targets (sensor ticks, drain, nothing
lost, query routing) with verdicts, the ticks by operation, the drain and the routing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .tables import operations, table


def _all_ticks(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [*results["queue_ticks"], *results.get("reconciliation_ticks", [results["reconciliation_pending"]]),
            *results.get("quiet_ticks", [])]


def collection_targets(results: dict[str, Any]) -> list[list[Any]]:
    ticks = _all_ticks(results)
    slowest = max(t["seconds"] for t in ticks)
    slowest_own = max(t["seconds"] - t.get("request_seconds", {}).get("ReceiveMessage", 0.0) for t in ticks)
    whole = sum(t["list_prefixes"].get("(whole bucket)", 0) for t in ticks)
    collections = results["parameters"]["collections"]
    verdict = lambda ok: "met" if ok else "not met"  # noqa: E731
    out = [["a sensor tick ≤ 10 s (slowest of every tick)", f"{slowest:.2f} s", verdict(slowest <= 10)],
           ["same, less the time waiting on ReceiveMessage (moto's grows with queue depth; see below)",
            f"{slowest_own:.2f} s", verdict(slowest_own <= 10)],
           ["no tick lists the whole bucket", f"{whole} whole-bucket listings", verdict(whole == 0)]]
    if "drain" in results:
        verify = results["verify"]
        out += [["everything published",
                 f"{results['drain']['collections_published']:,} of {collections:,} collections",
                 verdict(results["drain"]["collections_published"] == collections)],
                ["nothing lost: every collection's count equals its model",
                 f"{len(verify['collections_wrong'])} wrong of {verify['collections_checked']:,}",
                 verdict(not verify["collections_wrong"])]]
    return out


def write_collections_report(results: dict[str, Any], out: Path) -> None:
    parameters = results["parameters"]
    lines = [f"# Collections by the thousand ({results['profile']})", "",
             f"Machine: {results['machine']['platform']}, {results['machine']['cpus']} CPUs, Python "
             f"{results['machine']['python']}; moto server on loopback. `{results['command']}`, run "
             f"{results['started_at']}, {results['wall_seconds']:.0f} s, peak RSS {results['peak_rss_mb']:.0f} MB.", "",
             f"{parameters['collections']:,} collections × {parameters['deltas_per_collection']} deltas × "
             f"{parameters['vectors_per_delta']} vectors (384-d), produced and announced in "
             f"{results['produce_seconds']:.0f} s.", "",
             "## Targets", "", *table(["target", "measured", "verdict"], collection_targets(results)),
             "", "## Sensor ticks", "",
             "Each tick evaluated with `build_sensor_context` against a sqlite instance; partition adds applied "
             "and compaction requests registered as runs not yet started, as the daemon's launches would (so "
             "later ticks' busy check sees them). Requests counted per HTTP request "
             "on the project's shared clients.", ""]
    rows = []
    labelled = [(f"queue {n}", t) for n, t in enumerate(results["queue_ticks"], 1)]
    labelled += [(f"reconciliation {n}", t) for n, t in
                 enumerate(results.get("reconciliation_ticks", [results["reconciliation_pending"]]), 1)]
    if "quiet_ticks" in results:
        labelled += [("queue, after the drain", results["quiet_ticks"][0]),
                     ("reconciliation, after the drain", results["quiet_ticks"][1])]
    for label, tick in labelled:
        rows.append([label, f"{tick['seconds']:.2f}", operations(tick["requests"]),
                     f"{tick.get('request_seconds', {}).get('ReceiveMessage', 0.0):.2f}", operations(tick["list_prefixes"]),
                     tick["partitions_added"].get("delta", 0), tick["compaction_requests"],
                     f"{tick.get('waited_for_in_flight_s', 0.0):.0f}"])
    lines += table(["tick", "seconds", "requests", "of which ReceiveMessage s", "listings by prefix",
                     "delta partitions added", "compactions requested", "waited for in-flight s"], rows)
    left = results.get("queue_after_ticks", {"visible": 0, "in_flight": 0})
    lines += ["", f"Queue after the ticks: {left} ({results['queue_drained_by_ticks_s']:.0f} s after the first tick); "
                  f"partitions: {results['partitions']}.", ""]
    if "drain" not in results:
        (out / "report.md").write_text("\n".join(lines + ["Sensor ticks only (`--sensors-only`): no drain, no "
                                                          "query routing.", ""]))
        return
    drain, routing = results["drain"], results["query_routing"]
    lines += ["## Drain", "",
              f"{drain['workers']} worker processes, each running `ChromaCompactor.compact_pending()` until nothing "
              f"is pending: {drain['collections_published']:,} collections published in {drain['seconds']:.0f} s "
              f"({drain['collections_published'] / drain['seconds']:.1f} collections/s); results {drain['statuses']}.", ""]
    lines += table(["per collection", "mean s", "p50 s", "p95 s", "max s"],
                    [[name, *(drain[key].get(k, 0.0) for k in ("mean", "p50", "p95", "max"))]
                     for name, key in (("compaction (lock → archive)", "compaction_s"),
                                       ("until published", "publish_s"))])
    lines += ["", f"Checked: {results['verify']['collections_checked']:,} collections, "
                  f"{results['verify']['vectors_expected']:,} vectors, wrong: {results['verify']['collections_wrong'] or 'none'}.",
              "", "## Query routing (n_results=10, warm readers)", "",
              f"{routing['queries']:,} queries over {routing['merchants_queried']} merchants: routed to the merchant's "
              f"own collection (≈ {routing['vectors_per_merchant']:.0f} vectors) or to one shared collection of "
              f"{routing['shared_vectors']:,} vectors with `where={{\"merchant\": m}}`; same top 10 in "
              f"{routing['same_top10']} of {routing['queries']}.", ""]
    lines += table(["routing", "p50 ms", "p95 ms", "p99 ms"],
                    [[name, *(routing[key][k] for k in ("p50_ms", "p95_ms", "p99_ms"))]
                     for name, key in (("own collection", "own_collection"), ("shared + where", "shared_where"))])
    (out / "report.md").write_text("\n".join(lines) + "\n")
