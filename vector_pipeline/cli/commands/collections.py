"""``collections create|list|show|set``: each collection's settings, kept as data in the
bucket (``collections/<name>.json``, table/catalog.py)."""

from __future__ import annotations

import argparse
from typing import Any

from ..output import Answer, add_json_flag, print_lines
from ..parsers import verbs

OPTIONS = [  # (flag, CollectionConfig.changed key, type, help)
    ("--embedding-provider", "embedding_provider", str, "provider the vectors come from: minilm, openai, or "
                                                        "external for vectors you supply (create: EMBEDDING_PROVIDER "
                                                        "when --dimension is given)"),
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


def register(commands: Any) -> None:
    group = commands.add_parser("collections", help="create, list, show and configure collections (kept in the bucket)",
                                description="A collection's settings live in collections/<name>.json in the bucket: "
                                            "create one before its first delta, or let the first delta create it with "
                                            "the defaults (VECTOR_COLLECTIONS_AUTO_CREATE, on by default).")
    found = verbs(group, "verb", "VERB")
    create = found.add_parser("create", help="a new collection (an option not given: this environment's setting)")
    setter = found.add_parser("set", help="change settings of an existing collection (new versions and rebuilds use "
                                          "them)")
    for parser in (create, setter):
        parser.add_argument("name", help="the collection's name (3-63 letters, digits, '.', '_' or '-')")
        for flag, key, kind, text in OPTIONS:
            parser.add_argument(flag, dest=key, type=kind, default=None, help=text)
    fork = found.add_parser("fork", help="a new collection whose first version is one of SOURCE's, sharing its "
                                         "objects (no segment copied); independent from then on")
    fork.add_argument("source", help="the collection to fork")
    fork.add_argument("target", help="the new collection's name")
    which = fork.add_mutually_exclusive_group()
    which.add_argument("--version", default=None, help="the version to fork: its number or full name (default: the "
                                                       "published one)")
    which.add_argument("--tag", default=None, help="the version a tag names")
    add_json_flag(fork)
    listing = found.add_parser("list", help="every collection in the catalog")
    show = found.add_parser("show", help="one collection's settings")
    show.add_argument("name", help="the collection's name")
    for parser in (create, setter, listing, show):
        add_json_flag(parser)
    group.set_defaults(handler=collections)


def collections(args: argparse.Namespace) -> Answer:
    from ...config import Settings
    from ...table.catalog import CollectionCatalog, CollectionConfig

    settings = Settings.from_env()
    if args.verb == "fork":
        return _fork(settings, args)
    catalog = CollectionCatalog(settings)
    if args.verb == "list":
        names = catalog.names()
        return Answer(names, print_lines("\n".join(names) or "no collections yet"))
    changes = {key: getattr(args, key) for _flag, key, _kind, _text in OPTIONS if getattr(args, key, None) is not None}
    if args.verb == "create":
        if changes.get("dimension") and not changes.get("embedding_provider"):
            changes["embedding_provider"] = settings.embedding_provider
        config = catalog.create(CollectionConfig.defaults_for(args.name, settings).changed(**changes))
    elif args.verb == "set":
        if not changes:
            raise ValueError("collections set: name at least one setting to change (see --help)")
        config = catalog.update(args.name, **changes)
    else:
        found_config = catalog.get(args.name)
        if found_config is None:
            raise ValueError(f"collection {args.name!r} does not exist (vector-pipeline collections list)")
        config = found_config
    return Answer(config.as_dict(), _show_config)


def _fork(settings: Any, args: argparse.Namespace) -> Answer:
    from ...compaction.forks import fork_collection
    from .versions import resolve_version

    version = resolve_version(settings, args.source, args.version, args.tag)
    result = fork_collection(settings, args.source, args.target, version).as_dict()
    return Answer(result, lambda r: print(
        f"{r['target']} forked from {r['source']} {r['source_version']}: version {r['version']}, "
        f"{r['vector_count']} vectors, {r['shared_objects']} objects shared, none copied", flush=True))


def _show_config(config: dict[str, Any]) -> None:
    from ..terminal import print_table

    def flat(prefix: str, values: dict[str, Any]) -> list[list[Any]]:
        rows: list[list[Any]] = []
        for key, value in values.items():
            rows.extend(flat(f"{prefix}{key}.", value) if isinstance(value, dict) else [[f"{prefix}{key}", value]])
        return rows

    print_table(f"collection {config['name']}", ["setting", "value"], flat("", config))
