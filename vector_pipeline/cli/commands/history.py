"""History: ``rollback`` (readers back to an earlier version) and ``gc`` (versions and deltas
past each collection's retention)."""

from __future__ import annotations

import argparse
from typing import Any

from ..output import Answer, Exit, add_json_flag, show_table

VERSION_HELP = ("the version to point readers at: its number (2) or its full name "
                "(00000002-20261203T101500000Z, as `status` and `compact` print it)")


def register(commands: Any) -> None:
    back = commands.add_parser("rollback", help="point readers back at an earlier version, or at the one current at "
                                                "a time")
    back.add_argument("collection", help="the collection to roll back")
    target = back.add_mutually_exclusive_group(required=True)
    target.add_argument("--version", default=None, help=VERSION_HELP)
    target.add_argument("--as-of", default=None, metavar="TIME", help="the version current at this time (ISO 8601)")
    target.add_argument("--tag", default=None, help="the version a tag names (vector-pipeline versions list)")
    add_json_flag(back)
    back.set_defaults(handler=run_rollback)

    gc = commands.add_parser("gc", help="delete versions and expire deltas past each collection's retention")
    gc.add_argument("collection", nargs="*", help="collections (default: every one in the catalog)")
    gc.add_argument("--keep-versions", type=int, default=None, metavar="N",
                    help="newest published versions kept (default: each collection's retention)")
    gc.add_argument("--grace-hours", type=float, default=None, metavar="HOURS",
                    help="a version replaced less than this ago is kept (default: each collection's retention)")
    add_json_flag(gc)
    gc.set_defaults(handler=run_gc)


def resolve_version(versions: list[str], collection: str, given: str) -> str:
    """``given`` as a stored version name: itself, or the version of that number."""
    if given in versions:
        return given
    if given.isdigit():
        numbered = [v for v in versions if v.split("-", 1)[0].isdigit() and int(v.split("-", 1)[0]) == int(given)]
        if len(numbered) == 1:
            return numbered[0]
    listed = ", ".join(versions[-10:]) or "none"
    raise ValueError(f"collection {collection!r} has no version {given!r}; stored: {listed} "
                     "(give the number, e.g. --version 2, or the full name)")


def run_rollback(args: argparse.Namespace) -> Answer:
    from ...compaction.maintenance import rollback
    from ...compaction.retention import parse_time
    from ...config import Settings
    from ...table.snapshot_store import PublishOutcome, SnapshotStore

    settings = Settings.from_env()
    store = SnapshotStore(settings)
    if args.tag is not None:
        from ...table.tags import TagStore

        version = TagStore(settings).version_of(args.collection, args.tag)
    else:
        version = None if args.version is None else resolve_version(
            store.list_versions(args.collection), args.collection, args.version)
    outcome = rollback(settings, args.collection, version, as_of=parse_time(args.as_of) if args.as_of else None)
    pointer = store.read_pointer(args.collection)
    data = {"collection": args.collection, "outcome": outcome.value, "version": pointer and pointer.version}
    return Answer(data, show_table(None, ["collection", "outcome", "current version"],
                                   lambda d: [[d["collection"], d["outcome"], d["version"]]]),
                  Exit.OK if outcome is PublishOutcome.PUBLISHED else Exit.FAILED)


def run_gc(args: argparse.Namespace) -> Answer:
    from datetime import timedelta

    from ...compaction.retention import collect_garbage
    from ...config import Settings
    from ...table.catalog import CollectionCatalog

    settings = Settings.from_env()
    grace = None if args.grace_hours is None else timedelta(hours=args.grace_hours)
    reports = [collect_garbage(settings, collection, retain_versions=args.keep_versions, grace=grace).__dict__
               for collection in args.collection or CollectionCatalog(settings).names()]

    def show(data: list[dict[str, Any]]) -> None:
        show_table(None, ["collection", "kept", "deleted versions", "objects deleted", "archived expired",
                          "quarantined expired"],
                   lambda rows: [[r["collection"], len(r["kept_versions"]), ", ".join(r["deleted_versions"]),
                                  r["deleted_objects"], r["expired_archived_deltas"], r["expired_quarantined_deltas"]]
                                 for r in rows], empty="no collections")(data)
        if any(r["deleted_versions"] for r in data):
            print("a deleted version's segments that a kept version shares stay (the kept version reads them); "
                  "`status` names them, shared by that version, until they are no longer shared")

    return Answer(reports, show)
