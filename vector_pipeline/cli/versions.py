"""``vector-pipeline recall``, ``versions list|tag|untag`` and ``collections fork``: the CLI
wiring of recall.py, tags.py and forks.py (the logic lives there; this only parses and prints)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..config import Settings


def add_commands(commands: Any) -> None:
    """The ``recall`` and ``versions`` commands."""
    recall = commands.add_parser("recall", help="recall@k of a version: its HNSW search against exact search "
                                                "over the same live records")
    recall.add_argument("collection")
    recall.add_argument("--version", default=None, help="the version to measure (default: the published one)")
    recall.add_argument("--tag", default=None, help="the version a tag names")
    recall.add_argument("--k", type=int, default=10, help="results per query (default 10)")
    recall.add_argument("--queries", type=int, default=100,
                        help="sample queries: the version's own vectors, drawn with a fixed seed (default 100)")
    recall.add_argument("--seed", type=int, default=0, help="the sample's seed (default 0)")
    recall.add_argument("--store-queries", type=Path, default=None, metavar="FILE.npy",
                        help="first keep these query vectors (a .npy matrix, one query a row) as the collection's "
                             "sample: this and every later measure (the Dagster check too) answers them")
    recall.add_argument("--json", action="store_true", help="machine-readable output (JSON on stdout)")
    recall.set_defaults(handler=_recall)

    versions = commands.add_parser("versions", help="list a collection's versions; name them with tags")
    verbs = versions.add_subparsers(dest="verb", required=True, metavar="VERB")
    listing = verbs.add_parser("list", help="number, time, vectors, segments, tags, which is current")
    listing.add_argument("collection")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    tag = verbs.add_parser("tag", help="name a version (GC keeps a tagged version until it is untagged)")
    tag.add_argument("collection")
    tag.add_argument("version", help="a version name, or its number (e.g. 3)")
    tag.add_argument("name")
    untag = verbs.add_parser("untag", help="remove a tag")
    untag.add_argument("collection")
    untag.add_argument("name")
    versions.set_defaults(handler=_versions)


def add_fork_verb(verbs: Any) -> None:
    """``collections fork SOURCE TARGET [--version V | --tag NAME]``."""
    fork = verbs.add_parser("fork", help="a new collection whose first version is one of SOURCE's, sharing its "
                                         "objects (no segment copied); independent from then on")
    fork.add_argument("source")
    fork.add_argument("target")
    which = fork.add_mutually_exclusive_group()
    which.add_argument("--version", default=None, help="the version to fork (default: the published one)")
    which.add_argument("--tag", default=None, help="the version a tag names")
    fork.add_argument("--json", action="store_true", help="machine-readable output")


def _recall(args: argparse.Namespace) -> int:
    import numpy as np

    from ..read.recall import measure_recall, store_query_sample
    from .terminal import print_json, print_table

    settings = Settings.from_env()
    if args.store_queries is not None:
        if not args.store_queries.is_file():
            raise FileNotFoundError(f"{args.store_queries}: no such file")
        store_query_sample(settings, args.collection, np.load(args.store_queries, allow_pickle=False))
    version = resolve_version(settings, args.collection, args.version, args.tag)
    report = measure_recall(settings, args.collection, version, k=args.k, queries=args.queries, seed=args.seed)
    if args.json:
        print_json(report.as_dict())
        return 0
    print_table(f"{report.collection} {report.version}", ["recall@k", "k", "queries", "records", "search_ef",
                                                          "exact s", "exact MB", "hnsw s"],
                [[f"{report.recall_at_k:.4f}", report.k, report.queries, report.records, report.search_ef,
                  f"{report.exact_seconds:.3f}", f"{report.exact_bytes_scanned / 1e6:.1f}",
                  f"{report.approximate_seconds:.3f}"]],
                right=["recall@k", "k", "queries", "records", "search_ef", "exact s", "exact MB", "hnsw s"])
    return 0


def resolve_version(settings: Settings, collection: str, version: str | None, tag: str | None) -> str | None:
    """The version named by ``version`` (a name or a number) or ``tag``; None: neither given."""
    from ..table.tags import TagStore, version_named

    if tag is not None:
        return TagStore(settings).version_of(collection, tag)
    return None if version is None else version_named(settings, collection, version)


def _versions(args: argparse.Namespace) -> int:
    from ..table.tags import TagStore, list_versions, version_named
    from .terminal import print_json, print_table

    settings = Settings.from_env()
    tags = TagStore(settings)
    if args.verb == "tag":
        version = version_named(settings, args.collection, args.version)
        tags.tag(args.collection, version, args.name)
        print(f"{args.collection}: {args.name} → {version}")
        return 0
    if args.verb == "untag":
        version = tags.untag(args.collection, args.name)
        print(f"{args.collection}: {args.name} (was {version}) removed")
        return 0
    rows = list_versions(settings, args.collection)
    if args.json:
        print_json([row.as_dict() for row in rows])
        return 0
    print_table(args.collection, ["number", "version", "created (UTC)", "vectors", "segments", "tags", "current"],
                [[r.number, r.version, r.created_at[:19].replace("T", " "), r.vector_count, r.segments,
                  ", ".join(r.tags), "*" if r.current else ""] for r in rows],
                right=["number", "vectors", "segments"])
    return 0


def fork_command(args: argparse.Namespace) -> int:
    from ..compaction.forks import fork_collection
    from .terminal import print_json

    settings = Settings.from_env()
    version = resolve_version(settings, args.source, args.version, args.tag)
    result = fork_collection(settings, args.source, args.target, version)
    if args.json:
        print_json(result.as_dict())
    else:
        print(f"{result.target} forked from {result.source} {result.source_version}: version {result.version}, "
              f"{result.vector_count} vectors, {result.shared_objects} objects shared, none copied")
    return 0
