"""Writing versions: ``compact`` (once, or ``--watch`` as a loop), ``fold`` and ``rebuild``.

Exit status of a run (output.py): 1 if a collection FAILED, else 65 if a delta was
quarantined (the table's "quarantined" column, ``status`` counts them), else 75 if a lock was
busy, else 0."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..output import Answer, Exit, add_json_flag

if TYPE_CHECKING:
    from ...compaction.result import CompactionResult
    from ...config import Settings


def register(commands: Any) -> None:
    compact = commands.add_parser("compact", help="compact every collection with pending deltas (queue + delta/ "
                                                  "listing) into a new published version")
    compact.add_argument("--collection", default=None, help="only this collection (its delta/ is always listed; "
                                                            "default: every collection with pending deltas)")
    compact.add_argument("--delta-key", action="append", default=[], metavar="KEY",
                         help="compact exactly these keys (repeatable; needs --collection)")
    compact.add_argument("--no-reconcile", action="store_true",
                         help="only collections the queue announces (skip listing all of delta/)")
    add_json_flag(compact)
    compact.set_defaults(handler=compact_once)
    _watch_options(compact)

    fold = commands.add_parser("fold", help="fold a collection's recent segments back into its base (background merge)")
    fold.add_argument("collection", nargs="+", help="collection(s) to fold")
    fold.add_argument("--tiers", action="store_true",
                      help="merge the recent tiers that reached the fan-in among themselves instead, never the base "
                           "(what compact --watch runs in the background; off the lock, rebased)")
    add_json_flag(fold)
    fold.set_defaults(handler=fold_collections)

    rebuild = commands.add_parser("rebuild", help="a new version of a collection from archive/ (all of it, or as of "
                                                  "a time)")
    rebuild.add_argument("collection", help="collection to rebuild")
    rebuild.add_argument("--until", "--until-delta-id", dest="until", metavar="DELTA_ID", default=None,
                         help="apply archived deltas up to this delta id only (the collection as it was then)")
    rebuild.add_argument("--as-of", default=None, metavar="TIME",
                         help="only deltas produced up to this time (ISO 8601, e.g. 2026-11-25T10:00:00Z)")
    rebuild.add_argument("--tag", default=None,
                         help="apply archived deltas up to the newest one the tagged version holds")
    rebuild.add_argument("--hnsw-search-ef", type=int, default=None,
                         help="new HNSW search breadth (needs the whole archive; default: the collection's)")
    add_json_flag(rebuild)
    rebuild.set_defaults(handler=rebuild_collection)


def _watch_options(compact: argparse.ArgumentParser) -> None:
    compact.description = (
        "Compact every collection with pending deltas once, or with --watch as a long-running loop: each "
        "cycle long-polls the queue, compacts the collections it announces (and, every --reconcile-every "
        "seconds, every collection with deltas under delta/), then prints one line (collections, deltas, "
        "version, seconds, queue depth; --json: one JSON object per cycle). SIGINT, SIGTERM or SIGHUP stop "
        "the loop after the cycle under way, locks released, exit 0; a second signal abandons the cycle "
        "(nothing unpublished is lost: it stays pending). Exit status of one run: 1 a collection failed, "
        "65 a delta was quarantined (see `vector-pipeline status`), 75 a lock was busy, else 0. With --watch a "
        "collection is compacted when its oldest pending delta nears its freshness_target_seconds or more than "
        "backlog_max_deltas are pending (else its deltas accumulate), and its base is folded in the background "
        "in its fold_window (collections set); --no-cadence compacts everything pending every cycle.")
    watch = compact.add_argument_group("loop (--watch)")
    watch.add_argument("--watch", action="store_true", help="run cycle after cycle until stopped")
    watch.add_argument("--interval", type=int, default=None, metavar="SECONDS",
                       help="longest SQS long poll of an idle cycle, 1-20; also the longest a stop waits "
                            "(default COMPACT_WATCH_WAIT_SECONDS, 10)")
    watch.add_argument("--reconcile-every", type=float, default=None, metavar="SECONDS",
                       help="list all of delta/ at most this often (0: every cycle; default "
                            "COMPACT_WATCH_RECONCILE_SECONDS, 60; --no-reconcile: never)")
    watch.add_argument("--no-cadence", action="store_true",
                       help="compact every collection with pending deltas each cycle; no background base folds")
    watch.add_argument("--max-cycles", type=int, default=None, metavar="N",
                       help="stop after this many cycles (default: no limit)")
    watch.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                       help="stop after the cycle that ends past this many seconds (default: no limit)")


def compact_once(args: argparse.Namespace) -> "Answer | Exit":
    from ...compaction.compactor import ChromaCompactor
    from ...config import Settings

    if args.watch:
        return compact_watch(args)
    compactor = ChromaCompactor(settings=Settings.from_env())
    if args.delta_key:
        if not args.collection:
            raise ValueError("--delta-key needs --collection")
        results = [compactor.compact_deltas(args.delta_key, args.collection)]
    else:
        results = compactor.compact_pending(args.collection, reconcile=not args.no_reconcile)
    return results_answer(results, empty="nothing to compact")


def compact_watch(args: argparse.Namespace) -> Exit:
    from ...config import Settings
    from ..watch import CompactionWatch, WatchCycle, stop_between_cycles

    if args.delta_key:
        raise ValueError("--watch compacts what is pending: it takes no --delta-key")
    reconcile = float("inf") if args.no_reconcile else args.reconcile_every
    watch = CompactionWatch(Settings.from_env(), wait_seconds=args.interval, reconcile_seconds=reconcile,
                            max_cycles=args.max_cycles, duration_seconds=args.duration, collection=args.collection,
                            cadence=not args.no_cadence)

    def show(cycle: WatchCycle) -> None:  # JSON lines with --json: one object per cycle
        print(json.dumps(cycle.as_dict()) if args.json else cycle.line(), flush=True)

    with stop_between_cycles(watch):
        summary = watch.run(show)
    print(json.dumps({"summary": summary.as_dict()}) if args.json else
          f"stopped ({summary.stopped_by}) after {summary.cycles} cycles: {summary.deltas} deltas compacted in "
          f"{summary.seconds:.1f}s; {summary.errors} cycles failed", flush=True)
    return Exit.OK


def fold_collections(args: argparse.Namespace) -> Answer:
    from ...compaction.maintenance import fold_segments, merge_tiers

    return _each_collection(args.collection, merge_tiers if args.tiers else fold_segments)


def rebuild_collection(args: argparse.Namespace) -> Answer:
    from ...compaction.maintenance import rebuild_from_archive
    from ...compaction.retention import parse_time
    from ...config import Settings
    from ...table.catalog import CollectionCatalog

    settings = Settings.from_env()
    as_of = parse_time(args.as_of) if args.as_of else None
    hnsw = None if args.hnsw_search_ef is None else \
        CollectionCatalog(settings).hnsw_with_search_ef(args.collection, args.hnsw_search_ef)
    until = args.until
    if args.tag is not None:
        from ...table.tags import newest_delta_of_tag

        until = min(filter(None, [until, newest_delta_of_tag(settings, args.collection, args.tag)]))
    return _each_collection([args.collection], lambda settings, collection: rebuild_from_archive(
        settings, collection, until_delta_id=until, as_of=as_of, hnsw=hnsw))


def _each_collection(collections: Sequence[str],
                     write_and_publish: "Callable[[Settings, str], CompactionResult]") -> Answer:
    """Run a maintenance step per collection; a busy lock is a result, not an error."""
    from ...compaction.result import CompactionResult, CompactionStatus
    from ...config import Settings
    from ...io.lock import LockBusyError

    settings = Settings.from_env()
    results = []
    for collection in collections:
        try:
            results.append(write_and_publish(settings, collection))
        except LockBusyError as exc:
            results.append(CompactionResult(CompactionStatus.BUSY, collection, error=str(exc)))
    return results_answer(results, empty="nothing to do")


def result_exit(result: "CompactionResult") -> Exit:
    from ...compaction.result import CompactionStatus

    if result.status is CompactionStatus.FAILED:
        return Exit.FAILED
    if result.quarantined:
        return Exit.QUARANTINED
    return Exit.BUSY if result.status is CompactionStatus.BUSY else Exit.OK


def results_answer(results: "list[CompactionResult]", empty: str) -> Answer:
    def show(data: list[dict[str, Any]]) -> None:
        from ..terminal import print_table

        if not data:
            print(empty, flush=True)
            return
        print_table(None, ["collection", "status", "deltas", "version", "vectors", "segments", "fold", "seconds",
                           "quarantined", "error"],
                    [[r["collection"], r["status"], r["deltas_processed"], r["version"], r["vector_count"],
                      r["segments"], r["fold"], f"{r['duration_seconds']:.2f}", len(r["quarantined"]) or "",
                      r["error"] or _reasons(r["quarantined"])] for r in data],
                    right=["deltas", "vectors", "segments", "seconds", "quarantined"])

    return Answer([r.as_dict() for r in results], show, Exit.worst(result_exit(r) for r in results))


def _reasons(quarantined: dict[str, str]) -> str:
    """The first quarantine reason (and how many more), for the error column."""
    if not quarantined:
        return ""
    key, reason = next(iter(quarantined.items()))
    more = f" (+{len(quarantined) - 1} more)" if len(quarantined) > 1 else ""
    return f"quarantined {key}: {reason}{more}"
