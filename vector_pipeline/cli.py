"""``vector-pipeline``: run, feed, compact, query and inspect the pipeline.

Every command reads its configuration from the environment (see ``config.py``); with no
``AWS_ENDPOINT_URL`` it talks to real AWS. ``local-aws`` and ``demo`` start the embedded
AWS (moto's server on loopback) themselves.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from .config import Settings

EPILOG = """\
environment:
  VECTORS_BUCKET, DELTA_QUEUE_NAME (or DELTA_QUEUE_URL), DYNAMODB_TABLE_NAME,
  COMPACTION_LOCK_TTL_SECONDS (default 900), EMBEDDING_PROVIDER (minilm | openai),
  AWS_ENDPOINT_URL (unset = real AWS), AWS_DEFAULT_REGION, VECTOR_PIPELINE_CACHE_DIR

typical session on the embedded AWS:
  vector-pipeline local-aws            # terminal 1: prints the exports for terminal 2
  vector-pipeline produce receipts.jsonl --collection words
  vector-pipeline compact
  vector-pipeline query walmart --collection words
  vector-pipeline status
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "chromadb", "sentence_transformers", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, ValueError, FileNotFoundError) as exc:  # UnknownCollectionError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vector-pipeline", description="Run, feed, compact, query and inspect the vector pipeline (ChromaDB deltas and snapshots on S3).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    local = commands.add_parser("local-aws", help="run the embedded AWS (moto server) in the foreground")
    local.add_argument("--port", type=int, default=5000, help="loopback port (default 5000)")
    local.set_defaults(handler=_local_aws)

    commands.add_parser("setup", help="create bucket, queues and lock table (idempotent)").set_defaults(handler=_setup)

    demo = commands.add_parser("demo", help="the whole pipeline on shipped receipts, on the embedded AWS")
    demo.add_argument("--receipts", type=int, default=None, help="use only the first N receipts")
    demo.set_defaults(handler=_demo)

    produce = commands.add_parser("produce", help="write deltas from a JSONL or Parquet file")
    produce.add_argument("path", type=Path, help="rows: id, and embedding or text; optional document, "
                                                 "metadata (object) or extra columns, delete (bool)")
    produce.add_argument("--collection", default="words")
    produce.add_argument("--batch-size", type=int, default=500, help="rows per delta (default 500)")
    produce.set_defaults(handler=_produce)

    compact = commands.add_parser("compact", help="compact every collection with pending deltas (queue + delta/ listing)")
    compact.add_argument("--collection", default=None, help="only this collection (its delta/ is always listed)")
    compact.add_argument("--delta-key", action="append", default=[], help="compact exactly these keys")
    compact.add_argument("--no-reconcile", action="store_true",
                         help="only collections the queue announces (skip listing all of delta/)")
    compact.set_defaults(handler=_compact)

    fold = commands.add_parser("fold", help="fold a collection's recent segments back into its base (background merge)")
    fold.add_argument("collection", nargs="+", help="collection(s) to fold")
    fold.set_defaults(handler=_fold)

    query = commands.add_parser("query", help="query the published snapshot")
    query.add_argument("text", nargs="+", help="query text(s), embedded with EMBEDDING_PROVIDER")
    query.add_argument("--collection", default="words")
    query.add_argument("-n", "--n-results", type=int, default=5)
    query.add_argument("--where", type=json.loads, default=None, help='metadata filter, e.g. \'{"merchant": "TARGET"}\'')
    query.add_argument("--snapshot-path", default=None, help="local cache root for snapshot copies")
    query.set_defaults(handler=_query)

    status = commands.add_parser("status", help="versions, counts, pending deltas, lock holders")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=_status)

    _collections_parser(commands)

    dagster = commands.add_parser("dagster-dev", help="`dagster dev` on the embedded AWS (or AWS_ENDPOINT_URL)")
    dagster.add_argument("--port", type=int, default=3000)
    dagster.add_argument("--seed-receipts", type=int, default=6,
                         help="produce deltas of the first N shipped receipts for the sensors to find (0: none)")
    dagster.set_defaults(handler=_dagster_dev)
    return parser


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

    server = MotoServer(args.port).start()
    settings = server.settings(Settings.from_env())
    setup_resources(settings)
    print("embedded AWS (moto) running; in another shell:\n")
    for name, value in settings.local_aws_environment().items():
        print(f"export {name}={value}")
    print("\nCtrl-C stops it (its data lives in memory only).", flush=True)
    stop = lambda *_: (_ for _ in ()).throw(KeyboardInterrupt)  # noqa: E731
    signal.signal(signal.SIGTERM, stop)
    try:
        while server.process is not None and server.process.poll() is None:
            time.sleep(1)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


def _setup(_args: argparse.Namespace) -> int:
    from .local_aws import setup_resources

    print(json.dumps(setup_resources(Settings.from_env()), indent=2))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    base = Settings.from_env()
    if not os.environ.get("VECTOR_PIPELINE_CACHE_DIR"):
        base = base.with_overrides(cache_dir=tempfile.mkdtemp(prefix="vp-demo-"))
    started = time.perf_counter()
    with _embedded_aws(base) as settings:
        print(f"AWS endpoint: {settings.describe_endpoints()}; bucket {settings.vectors_bucket}")
        summary = run_demo(settings, receipts_limit=args.receipts)
        from .status import collection_status

        _print_status(collection_status(settings))
    print(f"demo finished in {time.perf_counter() - started:.1f}s; timings: "
          + ", ".join(f"{k}={v:.2f}" for k, v in summary["timings"].items()))
    return 0


def _produce(args: argparse.Namespace) -> int:
    from .delta import produce_embedding_delta

    settings = Settings.from_env()
    rows = _read_rows(args.path)
    if not rows:
        raise ValueError(f"{args.path}: no rows")
    keys = []
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
        keys.append(result["delta_key"])
        print(f"{result['delta_key']}  {result['upsert_count']} upserts, {result['delete_count']} deletes, "
              f"{result['seconds'] * 1000:.0f} ms")
    print(f"{len(keys)} deltas written and announced")
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
    from .embeddings import provider_from_settings

    missing = [r for r in rows if "embedding" not in r and "text" not in r]
    if missing:
        raise ValueError(f"row {missing[0]['id']!r} has neither 'embedding' nor 'text'")
    return provider_from_settings(settings).embed([str(r["text"]) for r in rows])


def _metadata_of(row: dict[str, Any]) -> dict[str, Any] | None:
    metadata = dict(row.get("metadata") or {})
    metadata.update({k: v for k, v in row.items() if k not in _RESERVED and v is not None})
    return metadata or None


def _compact(args: argparse.Namespace) -> int:
    from .compactor import ChromaCompactor, CompactionStatus

    compactor = ChromaCompactor(settings=Settings.from_env())
    if args.delta_key:
        if not args.collection:
            raise ValueError("--delta-key needs --collection")
        results = [compactor.compact_deltas(args.delta_key, args.collection)]
    else:
        results = compactor.compact_pending(args.collection, reconcile=not args.no_reconcile)
    if not results:
        print("nothing to compact")
    for result in results:
        print(json.dumps(result.as_dict(), indent=2, default=str))
    if any(r.status is CompactionStatus.FAILED for r in results):
        return 1
    return 75 if any(r.status is CompactionStatus.BUSY for r in results) else 0


def _fold(args: argparse.Namespace) -> int:
    from .compactor import CompactionStatus
    from .lock import LockBusyError
    from .maintenance import fold_segments

    settings = Settings.from_env()
    failed = busy = False
    for collection in args.collection:
        try:
            result = fold_segments(settings, collection)
        except LockBusyError as exc:
            print(f"{collection}: busy ({exc})")
            busy = True
            continue
        print(json.dumps(result.as_dict(), indent=2, default=str))
        failed = failed or result.status is CompactionStatus.FAILED
    return 1 if failed else 75 if busy else 0


def _query(args: argparse.Namespace) -> int:
    from .reader import query_snapshot

    settings = Settings.from_env()
    started = time.perf_counter()
    result = query_snapshot(query_texts=args.text, n_results=args.n_results, where=args.where,
                            collection_name=args.collection, snapshot_path=args.snapshot_path, settings=settings)
    elapsed = (time.perf_counter() - started) * 1000
    for text, ids, documents, metadatas, distances in zip(args.text, result["ids"], result["documents"],
                                                          result["metadatas"], result["distances"]):
        print(f"{text!r}:")
        for record_id, document, metadata, distance in zip(ids, documents, metadatas, distances):
            print(f"  {distance:.3f}  {record_id}  {document!r}  {json.dumps(metadata)}")
    print(f"({elapsed:.0f} ms)")
    return 0


def _status(args: argparse.Namespace) -> int:
    from .status import collection_status

    report = collection_status(Settings.from_env())
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_status(report)
    return 0


def _print_status(report: dict[str, Any]) -> None:
    print(f"bucket {report['bucket']}; queue: {report['queue']['visible']} visible, "
          f"{report['queue']['in_flight']} in flight")
    if not report["collections"]:
        print("  no collections yet")
    for name, info in report["collections"].items():
        lock = (f"locked by {info['lock_owner'][:8]} for {info['lock_expires_in_s']}s more"
                if info["lock_owner"] else "unlocked")
        print(f"  {name}: version {info['version']} ({info['vector_count']} vectors, "
              f"{info['versions_stored']} stored), {info['pending_deltas']} pending deltas, {lock}, "
              f"fence {info['lock_fence']}")


# -- collections: settings per collection, as data in the bucket (catalog.py) ------------------

_COLLECTION_OPTIONS = [  # (flag, CollectionConfig.changed key, type, help)
    ("--embedding-provider", "embedding_provider", str, "provider the vectors come from (e.g. minilm)"),
    ("--dimension", "dimension", int, "vector dimension (0: the first delta decides)"),
    ("--hnsw-space", "hnsw_space", str, "cosine, l2 or ip"),
    ("--hnsw-search-ef", "hnsw_search_ef", int, "HNSW search breadth (recall vs latency)"),
    ("--hnsw-construction-ef", "hnsw_construction_ef", int, "HNSW build breadth"),
    ("--hnsw-m", "hnsw_max_neighbors", int, "HNSW neighbours per node"),
    ("--segment-max-count", "segment_max_count", int, "most segments per version"),
    ("--segment-fold-ratio", "segment_fold_ratio", float, "fold recent segments past this share of the base"),
    ("--keep-versions", "retention_versions_kept", int, "newest published versions GC keeps"),
    ("--grace-hours", "retention_grace_hours", float, "a version replaced less than this ago is kept"),
    ("--archive-days", "retention_archive_days", float, "expire archived deltas after this (default: never)"),
    ("--quarantine-days", "retention_quarantine_days", float, "expire quarantined deltas after this"),
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
    listing = verbs.add_parser("list", help="every collection in the catalog")
    show = verbs.add_parser("show", help="one collection's settings")
    show.add_argument("name")
    for parser in (create, setter, listing, show):
        parser.add_argument("--json", action="store_true", help="machine-readable output")
    group.set_defaults(handler=_collections)


def _collections(args: argparse.Namespace) -> int:
    from .catalog import CollectionCatalog, CollectionConfig

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


def _dagster_dev(args: argparse.Namespace) -> int:
    from .local_aws import stop_process_group

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
        process = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml",
                                    "-p", str(args.port), "-h", "127.0.0.1"], env=env, start_new_session=True)
        try:
            return process.wait()
        except KeyboardInterrupt:
            stop_process_group(process, signal.SIGINT, grace_seconds=30)
            return 130


if __name__ == "__main__":
    sys.exit(main())
