"""``recall`` (recall@k of a version against exact search) and ``versions list|tag|untag``
(versions named by tags). The logic lives in read/recall.py and table/tags.py; this parses
and shows."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..output import Answer, add_json_flag, print_lines, show_table
from ..parsers import verbs


def register(commands: Any) -> None:
    recall = commands.add_parser("recall", help="recall@k of a version: its HNSW search against exact search over "
                                                "the same live records")
    recall.add_argument("collection", help="the collection to measure")
    which = recall.add_mutually_exclusive_group()
    which.add_argument("--version", default=None, help="the version: its number or full name (default: the "
                                                       "published one)")
    which.add_argument("--tag", default=None, help="the version a tag names")
    recall.add_argument("--k", type=int, default=10, help="results per query")
    recall.add_argument("--queries", type=int, default=100,
                        help="sample queries: the version's own vectors drawn with a fixed seed, or the stored sample")
    recall.add_argument("--seed", type=int, default=0, help="the sample's seed")
    recall.add_argument("--store-queries", type=Path, default=None, metavar="FILE.npy",
                        help="first keep these query vectors (a .npy matrix, one query a row) as the collection's "
                             "sample: this and every later measure (the Dagster check too) answers them")
    add_json_flag(recall)
    recall.set_defaults(handler=measure)

    group = commands.add_parser("versions", help="list a collection's versions; name them with tags")
    found = verbs(group, "verb", "VERB")
    listing = found.add_parser("list", help="number, time, vectors, segments, tags, which is current")
    listing.add_argument("collection", help="the collection")
    add_json_flag(listing)
    tag = found.add_parser("tag", help="name a version (GC keeps a tagged version until it is untagged)")
    tag.add_argument("collection", help="the collection")
    tag.add_argument("version", help="a version's number (e.g. 3) or full name")
    tag.add_argument("name", help="the tag")
    untag = found.add_parser("untag", help="remove a tag (its version is GC'd by retention again)")
    untag.add_argument("collection", help="the collection")
    untag.add_argument("name", help="the tag")
    for parser in (tag, untag):
        add_json_flag(parser)
    group.set_defaults(handler=versions)


def resolve_version(settings: Any, collection: str, version: str | None, tag: str | None) -> str | None:
    """The version named by ``version`` (a name or a number) or ``tag``; None: neither given."""
    from ...table.tags import TagStore, version_named

    if tag is not None:
        return TagStore(settings).version_of(collection, tag)
    return None if version is None else version_named(settings, collection, version)


def measure(args: argparse.Namespace) -> Answer:
    import numpy as np

    from ...config import Settings
    from ...read.recall import measure_recall, store_query_sample

    settings = Settings.from_env()
    if args.store_queries is not None:
        if not args.store_queries.is_file():
            raise FileNotFoundError(f"{args.store_queries}: no such file")
        store_query_sample(settings, args.collection, np.load(args.store_queries, allow_pickle=False))
    version = resolve_version(settings, args.collection, args.version, args.tag)
    report = measure_recall(settings, args.collection, version, k=args.k, queries=args.queries, seed=args.seed)
    columns = ["recall@k", "k", "queries", "records", "search_ef", "exact s", "exact MB", "hnsw s"]
    return Answer(report.as_dict(), show_table(
        f"{report.collection} {report.version}", columns,
        lambda r: [[f"{r['recall_at_k']:.4f}", r["k"], r["queries"], r["records"], r["search_ef"],
                    f"{r['exact_seconds']:.3f}", f"{r['exact_bytes_scanned'] / 1e6:.1f}",
                    f"{r['approximate_seconds']:.3f}"]], right=tuple(columns)))


def versions(args: argparse.Namespace) -> Answer:
    from ...config import Settings
    from ...table.tags import TagStore, list_versions, version_named

    settings = Settings.from_env()
    tags = TagStore(settings)
    if args.verb == "tag":
        version = version_named(settings, args.collection, args.version)
        tags.tag(args.collection, version, args.name)
        return Answer({"collection": args.collection, "tag": args.name, "version": version},
                      print_lines(f"{args.collection}: {args.name} → {version}"))
    if args.verb == "untag":
        version = tags.untag(args.collection, args.name)
        return Answer({"collection": args.collection, "tag": args.name, "version": version},
                      print_lines(f"{args.collection}: {args.name} (was {version}) removed"))
    rows = [row.as_dict() for row in list_versions(settings, args.collection)]
    return Answer(rows, show_table(
        args.collection, ["number", "version", "created (UTC)", "vectors", "segments", "tags", "current"],
        lambda data: [[r["number"], r["version"], r["created_at"][:19].replace("T", " "), r["vector_count"],
                       r["segments"], ", ".join(r["tags"]), "*" if r["current"] else ""] for r in data],
        empty=f"{args.collection}: no versions", right=("number", "vectors", "segments")))
