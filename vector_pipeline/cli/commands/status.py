"""``status``: per collection the published version and counts, pending and quarantined
deltas, the lock; the queue's depth and its dead letters."""

from __future__ import annotations

import argparse
from typing import Any

from ..output import Answer, add_json_flag


def register(commands: Any) -> None:
    status = commands.add_parser("status", help="versions, counts, pending and quarantined deltas, lock holders, "
                                                "queue and dead-letter depth")
    add_json_flag(status)
    status.set_defaults(handler=show_status)


def show_status(args: argparse.Namespace) -> Answer:
    from ...config import Settings
    from ..status import collection_status

    return Answer(collection_status(Settings.from_env()), print_status)


def _leftover_lines(leftovers: list[dict[str, Any]]) -> list[str]:
    """Version prefixes without a manifest (``compaction.stored``), in words: not versions."""
    from ...table.snapshot_store import version_number

    def named(version: str) -> str:  # "3", or "fork 3" for a fork's version
        collection, _, own = version.rpartition("/")
        return f"{collection} {version_number(own)}" if collection else str(version_number(own))

    lines = []
    shared = [entry for entry in leftovers if entry["kind"] == "shared"]
    if shared:
        readers = sorted({reader for entry in shared for reader in entry["shared_by"]})
        lines.append(f"{len(shared)} deleted version{'s' if len(shared) > 1 else ''}' segments kept "
                     f"({', '.join(named(e['version']) for e in shared)}): shared by version "
                     f"{', '.join(named(r) for r in readers)}; not counted as stored")
    bare = [entry["version"] for entry in leftovers if entry["kind"] == "unreferenced"]
    if bare:
        lines.append(f"{len(bare)} version prefix{'es' if len(bare) > 1 else ''} without a manifest "
                     f"({', '.join(named(v) for v in bare)}): a write in progress or a crash's leftovers "
                     "(gc removes them after the grace)")
    return lines


def print_status(report: dict[str, Any]) -> None:
    from ..terminal import print_table

    queue = report["queue"]
    title = (f"AWS endpoint: {report['endpoints']}; bucket {report['bucket']}; queue: {queue['visible']} visible, "
             f"{queue['in_flight']} in flight, {queue.get('dead_lettered', 0)} dead-lettered")
    live = report.get("reader_recall")
    if live:  # readers' sampled live queries against exact search (READER_RECALL_SAMPLE_RATE)
        title += f"; live recall@k {live['average']:.4f} ({live['samples']} sampled queries, last hour)"
    if not report["collections"]:
        print(f"{title}\nno collections yet")
        return
    rows = []
    for name, info in report["collections"].items():
        lock = (f"{info['lock_owner'][:8]}, {info['lock_expires_in_s']}s left" if info["lock_owner"] else "free")
        published = (info["published_at"] or "")[:19].replace("T", " ")  # to the second, UTC
        age = info.get("oldest_pending_age_s")
        rows.append([name, info["version"], info["vector_count"], info["versions_stored"], info["pending_deltas"],
                     f"{'-' if age is None else f'{age:.0f}s'} / {info['freshness_target_s']:.0f}s",
                     info["cadence"]["compact"], info["cadence"]["fold"],
                     info.get("quarantined_deltas", 0), lock, info["lock_fence"], published])
    # "stored": versions with a manifest (a deleted version's shared segments are noted below);
    # "pending": deltas not compacted yet; "age / target": the oldest pending
    # delta's age against the collection's freshness target; "next", "fold": cadence.due's
    # decision; "quarantined": refused deltas.
    print_table(title, ["collection", "version", "vectors", "stored", "pending", "age / target", "next", "fold",
                        "quarantined", "lock", "fence", "published (UTC)"],
                rows, right=["vectors", "stored", "pending", "age / target", "quarantined", "fence"])
    for name, info in report["collections"].items():
        if info.get("quarantined_deltas"):
            print(f"{name}: {info['quarantined_deltas']} deltas quarantined (reasons in "
                  f"s3://{report['bucket']}/quarantine/{name}/*/reason.json)")
        for line in _leftover_lines(info.get("version_leftovers", [])):
            print(f"{name}: {line}")
        if info.get("pinecone_mirror"):
            print(f"{name}: pinecone mirror {info['pinecone_mirror']['lag_deltas']} deltas behind, "
                  f"watermark {info['pinecone_mirror']['watermark']}")
