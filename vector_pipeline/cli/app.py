"""``vector-pipeline``: run, feed, compact, query and inspect the pipeline.

Every command reads its configuration from the environment (see ``config.py``); with no
``AWS_ENDPOINT_URL`` it talks to real AWS. ``local-aws`` and ``demo`` start the embedded
AWS (moto's server on loopback) themselves.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from .. import progress
from ..config import Settings

if TYPE_CHECKING:
    from ..compaction.compactor import CompactionResult

log = logging.getLogger(__name__)

EPILOG = """\
environment:
  VECTORS_BUCKET, DELTA_QUEUE_NAME (or DELTA_QUEUE_URL), DYNAMODB_TABLE_NAME,
  COMPACTION_LOCK_TTL_SECONDS (default 900), EMBEDDING_PROVIDER (minilm | openai),
  AWS_ENDPOINT_URL or per service AWS_ENDPOINT_URL_S3 / _SQS / _DYNAMODB (unset = real AWS),
  AWS_DEFAULT_REGION, VECTOR_PIPELINE_CACHE_DIR, VECTORS_SSE (AES256 | aws:kms | none)

typical session on the embedded AWS:
  vector-pipeline local-aws            # terminal 1: prints the exports for terminal 2
  vector-pipeline produce receipts.jsonl --collection words
  vector-pipeline compact
  vector-pipeline query walmart --collection words
  vector-pipeline status

answers print as tables; --json prints JSON instead (query, status, compact, fold, rebuild,
produce, setup, demo). -v logs the per-delta detail. SIGINT, SIGTERM and SIGHUP stop every
process a command started.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command: progress bars (or plain lines) on stderr, answers on stdout; SIGINT,
    SIGTERM and SIGHUP stop every child process it started and exit with 128 + signal."""
    from .processes import Interrupted, stop_on_signals
    from ..progress import reporting_to
    from .terminal import configure_logging, reporter_for, stderr_console

    parser = _parser()
    args = parser.parse_args(argv)
    console = stderr_console()
    configure_logging(args.verbose, console)
    try:
        with stop_on_signals(), reporter_for(console) as reporter, reporting_to(reporter):
            return int(args.handler(args) or 0)
    except Interrupted as exc:
        return exc.exit_status
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, ValueError, FileNotFoundError) as exc:  # UnknownCollectionError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vector-pipeline", description="Run, feed, compact, query and inspect the vector pipeline (ChromaDB deltas and snapshots on S3).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log the per-delta detail (-vv: debug); by default only bars, answers and warnings")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # -v after the command too (`./dev demo -v`); SUPPRESS keeps a -v given before it.
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    commands.add_parser = functools.partial(commands.add_parser, parents=[verbose])  # type: ignore[method-assign]

    local = commands.add_parser("local-aws", help="run the embedded AWS (moto server) in the foreground")
    local.add_argument("--port", type=int, default=5000, help="loopback port (default 5000)")
    local.set_defaults(handler=_local_aws)

    setup = commands.add_parser("setup", help="create bucket, queues and lock table (idempotent); refuse an S3 "
                                              "endpoint that ignores conditional writes")
    _json_flag(setup)
    setup.set_defaults(handler=_setup)

    demo = commands.add_parser("demo", help="the whole pipeline on shipped receipts, on the embedded AWS")
    demo.add_argument("--receipts", type=int, default=None, help="use only the first N receipts")
    _json_flag(demo)
    demo.set_defaults(handler=_demo)

    produce = commands.add_parser("produce", help="write deltas from a JSONL or Parquet file")
    produce.add_argument("path", type=Path, help="rows: id, and embedding or text; optional document, "
                                                 "metadata (object) or extra columns, delete (bool)")
    produce.add_argument("--collection", default="words")
    produce.add_argument("--batch-size", type=int, default=500, help="rows per delta (default 500)")
    _json_flag(produce)
    produce.set_defaults(handler=_produce)

    compact = commands.add_parser("compact", help="compact every collection with pending deltas (queue + delta/ listing)")
    compact.add_argument("--collection", default=None, help="only this collection (its delta/ is always listed)")
    compact.add_argument("--delta-key", action="append", default=[], help="compact exactly these keys")
    compact.add_argument("--no-reconcile", action="store_true",
                         help="only collections the queue announces (skip listing all of delta/)")
    _json_flag(compact)
    compact.set_defaults(handler=_compact)
    _watch_options(compact)

    fold = commands.add_parser("fold", help="fold a collection's recent segments back into its base (background merge)")
    fold.add_argument("collection", nargs="+", help="collection(s) to fold")
    _json_flag(fold)
    fold.set_defaults(handler=_fold)

    rebuild = commands.add_parser("rebuild", help="a new version of a collection from archive/ (all of it, or as of a time)")
    rebuild.add_argument("collection", help="collection to rebuild")
    rebuild.add_argument("--until", "--until-delta-id", dest="until", metavar="DELTA_ID", default=None,
                         help="apply archived deltas up to this delta id only (the collection as it was then)")
    rebuild.add_argument("--as-of", default=None,
                         help="only deltas produced up to this time (ISO 8601, e.g. 2026-11-25T10:00:00Z)")
    rebuild.add_argument("--tag", default=None,
                         help="apply archived deltas up to the newest one the tagged version holds")
    rebuild.add_argument("--hnsw-search-ef", type=int, default=None,
                         help="new HNSW search breadth (needs the whole archive)")
    _json_flag(rebuild)
    rebuild.set_defaults(handler=_rebuild)

    query = commands.add_parser("query", help="query the published snapshot")
    query.add_argument("text", nargs="+", help="query text(s), embedded with EMBEDDING_PROVIDER")
    query.add_argument("--collection", default="words")
    query.add_argument("-n", "--n-results", type=int, default=5)
    query.add_argument("--where", type=json.loads, default=None, help='metadata filter, e.g. \'{"merchant": "TARGET"}\'')
    query.add_argument("--snapshot-path", default=None, help="local cache root for snapshot copies")
    query.add_argument("--include-pending", action="store_true",
                       help="also search the deltas not compacted yet (exact search; last writer wins over the snapshot)")
    query.add_argument("--consistency", choices=["bounded", "strong"], default="bounded",
                       help="bounded (default): the version the pointer named at most READER_POINTER_TTL_SECONDS ago "
                            "(a one-shot query reads the pointer anyway); strong: read the pointer for this query")
    _json_flag(query)
    query.set_defaults(handler=_query)

    status = commands.add_parser("status", help="versions, counts, pending deltas, lock holders")
    _json_flag(status)
    status.set_defaults(handler=_status)

    _collections_parser(commands)
    _history_parsers(commands)
    # -- recall, versions (tags), collections fork: wiring in cli/versions.py ----------------
    from .versions import add_commands as add_version_commands

    add_version_commands(commands)

    dagster = commands.add_parser("dagster-dev", help="`dagster dev` on the embedded AWS (or the configured endpoints)")
    dagster.add_argument("--port", type=int, default=3000)
    dagster.add_argument("--seed-receipts", type=int, default=6,
                         help="produce deltas of the first N shipped receipts for the sensors to find (0: none)")
    dagster.set_defaults(handler=_dagster_dev)
    _pinecone_commands(commands)
    return parser


def _json_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument("--json", action="store_true",
                         help="machine-readable output (JSON on stdout) instead of a table")


@contextmanager
def _embedded_aws(settings: Settings, port: int | None = None) -> Iterator[Settings]:
    """The configured endpoint, or a moto server started (and stopped) here if none is set."""
    from .local_aws import MotoServer, setup_resources

    if settings.uses_custom_endpoints:
        setup_resources(settings)
        yield settings
        return
    with MotoServer(port) as server:
        local = server.settings(settings)
        setup_resources(local)
        yield local


def _local_aws(args: argparse.Namespace) -> int:
    from .local_aws import MotoServer, setup_resources

    with MotoServer(args.port) as server:
        settings = server.settings(Settings.from_env())
        setup_resources(settings)
        print("embedded AWS (moto) running; in another shell:\n")
        for name, value in settings.local_aws_environment().items():
            print(f"export {name}={value}")
        print("\nCtrl-C (or SIGTERM, SIGHUP) stops it; its data lives in memory only.", flush=True)
        while server.process is not None and server.process.poll() is None:
            time.sleep(1)
    print("error: the moto server exited on its own", file=sys.stderr)
    return 1


def _setup(args: argparse.Namespace) -> int:
    from .local_aws import setup_resources
    from .terminal import print_json, print_table

    resources = setup_resources(Settings.from_env())
    if args.json:
        print_json(resources)
    else:
        print_table("ready (created where absent)", ["resource", "name"], sorted(resources.items()))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import ANSWER_FIELDS, run_demo

    base = Settings.from_env()
    if not os.environ.get("VECTOR_PIPELINE_CACHE_DIR"):
        base = base.with_overrides(cache_dir=tempfile.mkdtemp(prefix="vp-demo-"))
    started = time.perf_counter()
    with _embedded_aws(base) as settings:
        log.info("AWS endpoint: %s; bucket %s", settings.describe_endpoints(), settings.vectors_bucket)
        summary = run_demo(settings, receipts_limit=args.receipts)
        from .status import collection_status

        summary["status"] = collection_status(settings)
    summary["seconds"] = time.perf_counter() - started
    if args.json:
        from .terminal import print_json

        print_json(summary)
        return 0
    for collection, answers in summary["answers"].items():
        texts = list(answers)
        result = {key: [answers[t][key] for t in texts] for key in ANSWER_FIELDS}
        _print_query_table(f"{collection}: the 3 nearest of each query", texts, result,
                           metadata_keys=["receipt_id", "merchant"])
    if log.isEnabledFor(logging.INFO):
        _print_status(summary["status"])
    log.info("demo finished in %.1fs; timings: %s", summary["seconds"],
             ", ".join(f"{k}={v:.2f}" for k, v in summary["timings"].items()))
    return 0


def _produce(args: argparse.Namespace) -> int:
    from ..delta.produce import produce_embedding_delta

    settings = Settings.from_env()
    rows = _read_rows(args.path)
    if not rows:
        raise ValueError(f"{args.path}: no rows")
    results = []
    with progress.stage(f"produce {args.collection}", len(rows), "rows") as bar:
        for start in range(0, len(rows), args.batch_size):
            batch = rows[start:start + args.batch_size]
            upserts = [r for r in batch if not r.get("delete")]
            embeddings = _embeddings_for(upserts, settings)
            result = produce_embedding_delta(
                [str(r["id"]) for r in upserts], embeddings,
                documents=[r.get("document", r.get("text")) for r in upserts] if upserts else None,
                metadatas=[_metadata_of(r) for r in upserts] if upserts else None,
                collection_name=args.collection,
                delete_ids=[str(r["id"]) for r in batch if r.get("delete")] or None, settings=settings)
            results.append(result)
            bar.advance(len(batch))
    upserted, deleted = sum(r["upsert_count"] for r in results), sum(r["delete_count"] for r in results)
    if args.json:
        from .terminal import print_json

        print_json({"collection": args.collection, "delta_count": len(results), "upsert_count": upserted,
                    "delete_count": deleted, "deltas": results})
    else:
        print(f"{len(results)} deltas written and announced ({upserted} upserts, {deleted} deletes "
              f"to {args.collection})")
    return 0


_RESERVED = {"id", "embedding", "text", "document", "metadata", "delete"}


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix == ".parquet":
        import pandas as pd

        frame = pd.read_parquet(path)
        return [{k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in row.items()}
                for row in frame.to_dict(orient="records")]
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc})") from None
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or "id" not in row:
            raise ValueError(f"{path}: row {number} has no 'id'")
    return rows


def _embeddings_for(rows: list[dict[str, Any]], settings: Settings) -> list[list[float]]:
    if all("embedding" in r for r in rows):
        return [list(r["embedding"]) for r in rows]
    from ..chroma.embeddings import provider_from_settings

    missing = [r for r in rows if "embedding" not in r and "text" not in r]
    if missing:
        raise ValueError(f"row {missing[0]['id']!r} has neither 'embedding' nor 'text'")
    return provider_from_settings(settings).embed([str(r["text"]) for r in rows])


def _metadata_of(row: dict[str, Any]) -> dict[str, Any] | None:
    metadata = dict(row.get("metadata") or {})
    metadata.update({k: v for k, v in row.items() if k not in _RESERVED and v is not None})
    return metadata or None


def _compact(args: argparse.Namespace) -> int:
    from ..compaction.compactor import ChromaCompactor, CompactionStatus

    if args.watch:
        return _compact_watch(args)
    compactor = ChromaCompactor(settings=Settings.from_env())
    if args.delta_key:
        if not args.collection:
            raise ValueError("--delta-key needs --collection")
        results = [compactor.compact_deltas(args.delta_key, args.collection)]
    else:
        results = compactor.compact_pending(args.collection, reconcile=not args.no_reconcile)
    _print_results(results, args.json, empty="nothing to compact")
    if any(r.status is CompactionStatus.FAILED for r in results):
        return 1
    return 75 if any(r.status is CompactionStatus.BUSY for r in results) else 0


# -- compact --watch: the compaction loop (watch.py) -------------------------------------------

def _watch_options(compact: argparse.ArgumentParser) -> None:
    compact.description = (
        "Compact every collection with pending deltas once, or with --watch as a long-running loop: each "
        "cycle long-polls the queue, compacts the collections it announces (and, every --reconcile-every "
        "seconds, every collection with deltas under delta/), then prints one line (collections, deltas, "
        "version, seconds, queue depth; --json: one JSON object per cycle). SIGINT, SIGTERM or SIGHUP stop "
        "the loop after the cycle under way, locks released, exit 0; a second signal abandons the cycle "
        "(nothing unpublished is lost: it stays pending). With --watch a collection is compacted when its "
        "oldest pending delta nears its freshness_target_seconds or more than backlog_max_deltas are pending "
        "(else its deltas accumulate), and its base is folded in the background in its fold_window "
        "(collections set); --no-cadence compacts everything pending every cycle.")
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
    watch.add_argument("--max-cycles", type=int, default=None, help="stop after this many cycles")
    watch.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                       help="stop after the cycle that ends past this many seconds")


def _compact_watch(args: argparse.Namespace) -> int:
    from .watch import CompactionWatch, WatchCycle, stop_between_cycles

    if args.delta_key:
        raise ValueError("--watch compacts what is pending: it takes no --delta-key")
    reconcile = float("inf") if args.no_reconcile else args.reconcile_every
    watch = CompactionWatch(Settings.from_env(), wait_seconds=args.interval, reconcile_seconds=reconcile,
                            max_cycles=args.max_cycles, duration_seconds=args.duration, collection=args.collection,
                            cadence=not args.no_cadence)

    def show(cycle: WatchCycle) -> None:
        print(json.dumps(cycle.as_dict()) if args.json else cycle.line(), flush=True)

    with stop_between_cycles(watch):
        summary = watch.run(show)
    print(json.dumps({"summary": summary.as_dict()}) if args.json else
          f"stopped ({summary.stopped_by}) after {summary.cycles} cycles: {summary.deltas} deltas compacted in "
          f"{summary.seconds:.1f}s; {summary.errors} cycles failed", flush=True)
    return 0


def _fold(args: argparse.Namespace) -> int:
    from ..compaction.maintenance import fold_segments

    return _each_collection(args, args.collection, fold_segments)


def _rebuild(args: argparse.Namespace) -> int:
    from ..compaction.maintenance import rebuild_from_archive
    from ..table.catalog import CollectionCatalog
    from ..compaction.retention import parse_time

    as_of = parse_time(args.as_of) if args.as_of else None
    hnsw = None if args.hnsw_search_ef is None else \
        CollectionCatalog(Settings.from_env()).hnsw_with_search_ef(args.collection, args.hnsw_search_ef)
    until = args.until
    if args.tag is not None:
        from ..table.tags import newest_delta_of_tag

        until = min(filter(None, [until, newest_delta_of_tag(Settings.from_env(), args.collection, args.tag)]))
    return _each_collection(args, [args.collection], lambda settings, collection: rebuild_from_archive(
        settings, collection, until_delta_id=until, as_of=as_of, hnsw=hnsw))


def _each_collection(args: argparse.Namespace, collections: Sequence[str],
                     write_and_publish: "Callable[[Settings, str], CompactionResult]") -> int:
    """Run a maintenance step per collection; print the results; 1 if one failed, 75 if busy."""
    from ..compaction.compactor import CompactionResult, CompactionStatus
    from ..io.lock import LockBusyError

    settings = Settings.from_env()
    results = []
    for collection in collections:
        try:
            results.append(write_and_publish(settings, collection))
        except LockBusyError as exc:
            results.append(CompactionResult(CompactionStatus.BUSY, collection, error=str(exc)))
    _print_results(results, args.json, empty="nothing to do")
    if any(r.status is CompactionStatus.FAILED for r in results):
        return 1
    return 75 if any(r.status is CompactionStatus.BUSY for r in results) else 0


def _print_results(results: "list[CompactionResult]", as_json: bool, empty: str) -> None:
    from .terminal import print_json, print_table

    if as_json:
        print_json([r.as_dict() for r in results])
    elif not results:
        print(empty)
    else:
        print_table(None, ["collection", "status", "deltas", "version", "vectors", "segments", "fold", "seconds",
                           "error"],
                    [[r.collection, r.status, r.deltas_processed, r.version, r.vector_count, r.segments, r.fold,
                      f"{r.duration_seconds:.2f}", r.error] for r in results],
                    right=["deltas", "vectors", "segments", "seconds"])


def _query(args: argparse.Namespace) -> int:
    from ..read.reader import query_snapshot

    settings = Settings.from_env()
    started = time.perf_counter()
    result = query_snapshot(query_texts=args.text, n_results=args.n_results, where=args.where,
                            collection_name=args.collection, snapshot_path=args.snapshot_path, settings=settings,
                            include_pending=args.include_pending, consistency=args.consistency)
    elapsed = (time.perf_counter() - started) * 1000
    if args.json:
        from .terminal import print_json

        print_json({"collection": args.collection, "query_texts": args.text, **result, "milliseconds": elapsed})
    else:
        _print_query_table(f"{args.collection} ({elapsed:.0f} ms)", args.text, result)
    return 0


def _print_query_table(title: str, texts: Sequence[str], result: dict[str, Any],
                       metadata_keys: Sequence[str] | None = None) -> None:
    from .terminal import print_table, query_rows

    columns, rows, sections = query_rows(texts, result, metadata_keys)
    print_table(title, columns, rows, sections=sections, right=["rank", "distance"])


def _status(args: argparse.Namespace) -> int:
    from .status import collection_status

    report = collection_status(Settings.from_env())
    if args.json:
        from .terminal import print_json

        print_json(report)
    else:
        _print_status(report)
    return 0


def _print_status(report: dict[str, Any]) -> None:
    from .terminal import print_table

    title = (f"AWS endpoint: {report['endpoints']}; bucket {report['bucket']}; queue: "
             f"{report['queue']['visible']} visible, {report['queue']['in_flight']} in flight")
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
        age = info["oldest_pending_age_s"]
        rows.append([name, info["version"], info["vector_count"], info["versions_stored"], info["pending_deltas"],
                     f"{'-' if age is None else f'{age:.0f}s'} / {info['freshness_target_s']:.0f}s",
                     info["cadence"]["compact"], info["cadence"]["fold"], lock, info["lock_fence"], published])
    # "stored": versions kept in the bucket; "pending": deltas not yet compacted; "age / target": the
    # oldest pending delta's age against the collection's freshness target; "next": cadence.due's decision.
    print_table(title, ["collection", "version", "vectors", "stored", "pending", "age / target", "next", "fold",
                        "lock", "fence", "published (UTC)"],
                rows, right=["vectors", "stored", "pending", "age / target", "fence"])
    for name, info in report["collections"].items():
        if info.get("pinecone_mirror"):
            print(f"{name}: pinecone mirror {info['pinecone_mirror']['lag_deltas']} deltas behind, "
                  f"watermark {info['pinecone_mirror']['watermark']}")


# -- collections: settings per collection, as data in the bucket (table/catalog.py) ------------------

_COLLECTION_OPTIONS = [  # (flag, CollectionConfig.changed key, type, help)
    ("--embedding-provider", "embedding_provider", str, "provider the vectors come from (e.g. minilm)"),
    ("--dimension", "dimension", int, "vector dimension (0: the first delta decides)"),
    ("--hnsw-space", "hnsw_space", str, "cosine, l2 or ip"),
    ("--hnsw-search-ef", "hnsw_search_ef", int, "HNSW search breadth (recall vs latency)"),
    ("--hnsw-construction-ef", "hnsw_construction_ef", int, "HNSW build breadth"),
    ("--hnsw-m", "hnsw_max_neighbors", int, "HNSW neighbours per node"),
    ("--segment-max-count", "segment_max_count", int, "most segments a reader searches per version"),
    ("--segment-fan-in", "segment_fan_in", int, "segments per size tier before they merge into the next tier"),
    ("--segment-fold-ratio", "segment_fold_ratio", float,
     "fold the base outside its quiet window once its masked ids pass this share of it"),
    ("--freshness-target-seconds", "freshness_target_seconds", float,
     "compact --watch compacts once the oldest pending delta nears this age"),
    ("--backlog-max-deltas", "backlog_max_deltas", int, "... or once this many deltas are pending"),
    ("--fold-window", "fold_window", str,
     "when base folds run: cron fields 'minute hour day-of-month month day-of-week' (UTC), e.g. '0 2 * * *'"),
    ("--fold-window-minutes", "fold_window_minutes", int, "how long the fold window stays open"),
    ("--keep-versions", "retention_versions_kept", int, "newest published versions GC keeps"),
    ("--grace-hours", "retention_grace_hours", float, "a version replaced less than this ago is kept"),
    ("--archive-days", "retention_archive_days", float, "expire archived deltas after this (default: never)"),
    ("--quarantine-days", "retention_quarantine_days", float, "expire quarantined deltas after this"),
    ("--recall-target", "recall_target", float, "recall@k a new version should reach (below: the check warns)"),
    ("--recall-floor", "recall_floor", float, "recall@k below which a new version is not published"),
]


def _collections_parser(commands: Any) -> None:
    group = commands.add_parser("collections", help="create, list, show and configure collections (kept in the bucket)",
                                description="A collection's settings live in collections/<name>.json in the bucket: "
                                            "create one before its first delta, or let the first delta create it with "
                                            "the defaults (VECTOR_COLLECTIONS_AUTO_CREATE, on by default).")
    verbs = group.add_subparsers(dest="verb", required=True, metavar="VERB")
    create = verbs.add_parser("create", help="a new collection (options default to this environment's settings)")
    setter = verbs.add_parser("set", help="change settings of an existing collection (new versions and rebuilds use them)")
    for parser in (create, setter):
        parser.add_argument("name")
        for flag, key, kind, text in _COLLECTION_OPTIONS:
            parser.add_argument(flag, dest=key, type=kind, default=None, help=text)
    from .versions import add_fork_verb  # recall/versions/fork wiring (cli/versions.py)

    add_fork_verb(verbs)
    listing = verbs.add_parser("list", help="every collection in the catalog")
    show = verbs.add_parser("show", help="one collection's settings")
    show.add_argument("name")
    for parser in (create, setter, listing, show):
        parser.add_argument("--json", action="store_true", help="machine-readable output")
    group.set_defaults(handler=_collections)


def _collections(args: argparse.Namespace) -> int:
    from ..table.catalog import CollectionCatalog, CollectionConfig

    if args.verb == "fork":
        from .versions import fork_command

        return fork_command(args)
    settings = Settings.from_env()
    catalog = CollectionCatalog(settings)
    if args.verb == "list":
        names = catalog.names()
        print(json.dumps(names) if args.json else "\n".join(names) or "no collections yet")
        return 0
    changes = {key: getattr(args, key) for _flag, key, _kind, _text in _COLLECTION_OPTIONS
               if getattr(args, key, None) is not None}
    if args.verb == "create":
        config = catalog.create(CollectionConfig.defaults_for(args.name, settings).changed(**changes))
    elif args.verb == "set":
        if not changes:
            raise ValueError("collections set: name at least one setting to change (see --help)")
        config = catalog.update(args.name, **changes)
    else:
        config = catalog.get(args.name)
        if config is None:
            raise ValueError(f"collection {args.name!r} does not exist (vector-pipeline collections list)")
    print(json.dumps(config.as_dict(), indent=None if args.json else 2))
    return 0


# -- history: rollback, GC (maintenance.py, retention.py) ------------------------------


def _history_parsers(commands: Any) -> None:
    back = commands.add_parser("rollback", help="point readers back at an earlier version, or at the one current at a time")
    back.add_argument("collection")
    target = back.add_mutually_exclusive_group(required=True)
    target.add_argument("--version", default=None)
    target.add_argument("--as-of", default=None, help="the version current at this time (ISO 8601)")
    target.add_argument("--tag", default=None, help="the version a tag names (vector-pipeline versions list)")
    back.set_defaults(handler=_rollback)
    gc = commands.add_parser("gc", help="delete versions and expire deltas past each collection's retention")
    gc.add_argument("collection", nargs="*", help="collections (default: every one in the catalog)")
    gc.add_argument("--keep-versions", type=int, default=None, help="override the collections' retention")
    gc.add_argument("--grace-hours", type=float, default=None, help="override the collections' grace")
    gc.set_defaults(handler=_gc)


def _rollback(args: argparse.Namespace) -> int:
    from ..compaction.maintenance import rollback
    from ..compaction.retention import parse_time
    from ..table.snapshot_store import PublishOutcome, SnapshotStore

    from .versions import resolve_version

    settings = Settings.from_env()
    version = resolve_version(settings, args.collection, args.version, args.tag)
    outcome = rollback(settings, args.collection, version, as_of=parse_time(args.as_of) if args.as_of else None)
    pointer = SnapshotStore(settings).read_pointer(args.collection)
    print(json.dumps({"collection": args.collection, "outcome": outcome.value, "version": pointer and pointer.version}))
    return 0 if outcome is PublishOutcome.PUBLISHED else 1


def _gc(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from ..table.catalog import CollectionCatalog
    from ..compaction.retention import collect_garbage

    settings = Settings.from_env()
    grace = None if args.grace_hours is None else timedelta(hours=args.grace_hours)
    for collection in args.collection or CollectionCatalog(settings).names():
        report = collect_garbage(settings, collection, retain_versions=args.keep_versions, grace=grace)
        print(json.dumps(report.__dict__))
    return 0


def _dagster_dev(args: argparse.Namespace) -> int:
    from .processes import start_group, stop_process_group

    root = Path.cwd()
    home = root / ".tmp_dagster_home_dev"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text((root / "dagster.yaml").read_text())
    with _embedded_aws(Settings.from_env()) as settings:
        if args.seed_receipts:
            from .demo import produce_receipts

            produced = produce_receipts(settings, args.seed_receipts)
            print(f"seeded {produced} deltas; the delta_queue_sensor picks them up within a minute")
        env = {**os.environ, **settings.local_aws_environment(), "DAGSTER_HOME": str(home)}
        print(f"dagster dev on http://127.0.0.1:{args.port} (AWS endpoint {settings.describe_endpoints()})")
        process = start_group([sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml",
                               "-p", str(args.port), "-h", "127.0.0.1"], env=env)
        try:
            return process.wait()
        finally:  # on a signal too: dagster dev stops its webserver and daemon on SIGINT
            stop_process_group(process, signal.SIGINT, grace_seconds=30)


# -- Pinecone migration (docs/migration.md) -------------------------------------------------

PINECONE_EPILOG = """\
environment: PINECONE_API_KEY, PINECONE_INDEX_HOST (the index's data-plane URL), optional
PINECONE_NAMESPACES=collection=namespace,... (default namespace: the collection's name),
PINECONE_DOCUMENT_FIELD (metadata key carrying the text, default "text").

the three phases:
  1 parallel  vector-pipeline pinecone backfill --collection words && vector-pipeline compact
              vector-pipeline pinecone mirror --collection words      (after each publish)
              vector-pipeline pinecone compare --collection words --sample 200 --out report/
  2 cutover   vector-pipeline pinecone query milk --routing-key user-7 --chroma-share 0.1 --shadow
              (in a service: migration.router.CutoverRouter; PINECONE_CUTOVER_CHROMA_SHARE 0.1 → 0.5 → 1.0)
  3 cleanup   vector-pipeline pinecone export --collection words   (says when it is safe to delete)
"""


def _pinecone_commands(commands: Any) -> None:
    group = commands.add_parser("pinecone", help="migrate from a Pinecone index: backfill, mirror, compare, export",
                                epilog=PINECONE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = group.add_subparsers(dest="pinecone_command", required=True, metavar="ACTION")

    backfill = actions.add_parser("backfill", help="every vector of the namespace into deltas of the collection "
                                  "(resumable: a checkpoint in the bucket)")
    backfill.add_argument("--collection", required=True)
    backfill.add_argument("--batch", type=int, default=100, help="ids per page, one delta per page (default 100)")
    backfill.add_argument("--restart", action="store_true", help="ignore the checkpoint and copy everything again")
    backfill.set_defaults(handler=_pinecone_backfill)

    mirror = actions.add_parser("mirror", help="dual-write: send the published snapshot's unmirrored deltas "
                                "(upserts and deletes) to Pinecone, from the watermark in the bucket")
    mirror.add_argument("--collection", action="append", default=None,
                        help="default: VECTOR_COLLECTIONS, else every published collection")
    mirror.set_defaults(handler=_pinecone_mirror)

    compare = actions.add_parser("compare", help="recall@k of the snapshot and of Pinecone against exact search, "
                                 "overlap@k, drift and latency; exits 1 below --min-recall")
    compare.add_argument("--collection", required=True)
    source = compare.add_mutually_exclusive_group()
    source.add_argument("--queries", type=Path, help="file of query texts, one per line (embedded with EMBEDDING_PROVIDER)")
    source.add_argument("--sample", type=int, help="sample N stored vectors as queries (default 100)")
    compare.add_argument("--k", type=int, default=10)
    compare.add_argument("--min-recall", type=float, default=None, help="recall bar of the Chroma snapshot "
                         "(default PINECONE_MIN_RECALL, 0.95)")
    compare.add_argument("--out", type=Path, required=True, help="directory for report.json, report.md, per_query.csv")
    compare.set_defaults(handler=_pinecone_compare)

    export = actions.add_parser("export", help="the whole namespace to Parquet in the bucket, verified against "
                                "describe_index_stats and a listing before it says the index may be deleted")
    export.add_argument("--collection", default=None,
                        help="whose namespace (default: VECTOR_COLLECTIONS, else every published collection)")
    export.add_argument("--out", default=None, help="s3://bucket/key.parquet (default "
                        "s3://$VECTORS_BUCKET/exports/pinecone/<namespace>/<UTC stamp>.parquet)")
    export.set_defaults(handler=_pinecone_export)

    route = actions.add_parser("query", help="phase 2: query through the cutover router (the share of routing "
                               "keys Chroma answers; the rest Pinecone), optionally shadowing the other backend")
    route.add_argument("text", nargs="+", help="query text(s), embedded with EMBEDDING_PROVIDER")
    route.add_argument("--collection", default="words")
    route.add_argument("--routing-key", default=None, help="e.g. a user id (default: the first text)")
    route.add_argument("--chroma-share", type=float, default=None, help="0..1 (default PINECONE_CUTOVER_CHROMA_SHARE)")
    route.add_argument("--shadow", action="store_true", help="also ask the other backend; print overlap@k")
    route.add_argument("-n", "--n-results", type=int, default=5)
    route.add_argument("--where", type=json.loads, default=None, help="metadata filter, as for `query`")
    route.set_defaults(handler=_pinecone_query)


def _pinecone_backfill(args: argparse.Namespace) -> int:
    from ..migration.backfill import backfill

    result = backfill(Settings.from_env(), args.collection, args.batch, restart=args.restart,
                      say=lambda line: print(line, flush=True))
    print(json.dumps(result.as_dict()))
    return 0


def _pinecone_mirror(args: argparse.Namespace) -> int:
    from ..migration.mirror import MirrorOutcome, mirror
    from ..migration.state import migrating_collections

    settings = Settings.from_env()
    results = [mirror(settings, c) for c in (args.collection or migrating_collections(settings))]
    print(json.dumps([r.as_dict() for r in results], indent=2))
    return 75 if any(r.outcome is MirrorOutcome.BEHIND for r in results) else 0


def _pinecone_compare(args: argparse.Namespace) -> int:
    from ..migration.compare import compare_collection, read_query_file, write_report

    texts = read_query_file(args.queries) if args.queries else None
    comparison = compare_collection(Settings.from_env(), args.collection, texts=texts,
                                    sample=None if texts else (args.sample or 100), k=args.k,
                                    min_recall=args.min_recall)
    paths = write_report(comparison, args.out)
    report = comparison.report
    print(f"{report['collection']}: recall@{report['k']} chroma {report['recall_at_k']['chroma']}, "
          f"pinecone {report['recall_at_k']['pinecone']}; overlap@{report['k']} {report['overlap_at_k']}; "
          f"ids only in chroma {report['ids_only_in_chroma']}, only in pinecone {report['ids_only_in_pinecone']}")
    print(f"report: {paths['md']} ({paths['json'].name}, {paths['csv'].name})")
    if not comparison.passed():
        print(f"recall of the Chroma snapshot is below {report['min_recall']}", file=sys.stderr)
        return 1
    return 0


def _pinecone_export(args: argparse.Namespace) -> int:
    from ..migration.export import ExportOutcome, export_namespace
    from ..migration.state import migrating_collections

    settings = Settings.from_env()
    collections = [args.collection] if args.collection else migrating_collections(settings)
    if args.out and len(collections) > 1:
        raise ValueError("--out names one object: pass --collection too")
    results = [export_namespace(settings, c, args.out) for c in collections]
    print(json.dumps([r.as_dict() for r in results], indent=2))
    return 0 if all(r.outcome is ExportOutcome.VERIFIED for r in results) else 1


def _pinecone_query(args: argparse.Namespace) -> int:
    from ..migration.router import CutoverRouter

    router = CutoverRouter(Settings.from_env(), args.collection, chroma_share=args.chroma_share,
                           shadow=args.shadow or None)
    key = args.routing_key or args.text[0]
    result = router.query(query_texts=args.text, n_results=args.n_results, where=args.where, routing_key=key)
    print(f"routing key {key!r} → {router.route(key).value} (Chroma share {router.chroma_share})")
    for text, ids, documents, distances in zip(args.text, result["ids"], result["documents"], result["distances"]):
        print(f"{text!r}:")
        for record_id, document, distance in zip(ids, documents, distances):
            print(f"  {distance:.3f}  {record_id}  {document!r}")
    if router.shadow:
        print(json.dumps(router.counters.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
