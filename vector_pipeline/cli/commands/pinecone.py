"""``pinecone backfill|mirror|compare|export|query``: migrating from a Pinecone index
(docs/migration.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from ..output import Answer, Exit, add_json_flag, print_lines, show_table
from ..parsers import verbs

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


def register(commands: Any) -> None:
    group = commands.add_parser("pinecone", help="migrate from a Pinecone index: backfill, mirror, compare, export",
                                epilog=PINECONE_EPILOG)
    actions = verbs(group, "pinecone_command", "ACTION")

    backfill = actions.add_parser("backfill", help="every vector of the namespace into deltas of the collection "
                                  "(resumable: a checkpoint in the bucket)")
    backfill.add_argument("--collection", required=True, help="the collection the vectors go to")
    backfill.add_argument("--batch", type=int, default=100, help="ids per page, one delta per page")
    backfill.add_argument("--restart", action="store_true", help="ignore the checkpoint and copy everything again")
    backfill.set_defaults(handler=pinecone_backfill)

    mirror = actions.add_parser("mirror", help="dual-write: send the published snapshot's unmirrored deltas "
                                "(upserts and deletes) to Pinecone, from the watermark in the bucket")
    mirror.add_argument("--collection", action="append", default=None,
                        help="repeatable (default: VECTOR_COLLECTIONS, else every published collection)")
    mirror.set_defaults(handler=pinecone_mirror)

    compare = actions.add_parser("compare", help="recall@k of the snapshot and of Pinecone against exact search, "
                                 "overlap@k, drift and latency; exits 1 below --min-recall")
    compare.add_argument("--collection", required=True, help="the collection (and its namespace) to compare")
    source = compare.add_mutually_exclusive_group()
    source.add_argument("--queries", type=Path, help="file of query texts, one per line (embedded with "
                                                     "EMBEDDING_PROVIDER)")
    source.add_argument("--sample", type=int, help="sample N stored vectors as queries (default 100)")
    compare.add_argument("--k", type=int, default=10, help="answers compared per query")
    compare.add_argument("--min-recall", type=float, default=None, help="recall bar of the Chroma snapshot "
                         "(default PINECONE_MIN_RECALL, 0.95)")
    compare.add_argument("--out", type=Path, required=True, help="directory for report.json, report.md, per_query.csv")
    compare.set_defaults(handler=pinecone_compare)

    export = actions.add_parser("export", help="the whole namespace to Parquet in the bucket, verified against "
                                "describe_index_stats and a listing before it says the index may be deleted")
    export.add_argument("--collection", default=None,
                        help="whose namespace (default: VECTOR_COLLECTIONS, else every published collection)")
    export.add_argument("--out", default=None, help="s3://bucket/key.parquet (default "
                        "s3://$VECTORS_BUCKET/exports/pinecone/<namespace>/<UTC stamp>.parquet)")
    export.set_defaults(handler=pinecone_export)

    route = actions.add_parser("query", help="phase 2: query through the cutover router (the share of routing "
                               "keys Chroma answers; the rest Pinecone), optionally shadowing the other backend")
    route.add_argument("text", nargs="+", help="query text(s), embedded with EMBEDDING_PROVIDER")
    route.add_argument("--collection", default="words", help="the collection to search")
    route.add_argument("--routing-key", default=None, help="e.g. a user id (default: the first text)")
    route.add_argument("--chroma-share", type=float, default=None, help="0..1 (default PINECONE_CUTOVER_CHROMA_SHARE)")
    route.add_argument("--shadow", action="store_true", help="also ask the other backend; print overlap@k")
    route.add_argument("-n", "--n-results", type=int, default=5, help="answers per query text")
    route.add_argument("--where", type=json.loads, default=None, metavar="JSON",
                       help="metadata filter, as for `query` (default: none)")
    route.set_defaults(handler=pinecone_query)
    for action in (backfill, mirror, compare, export, route):
        add_json_flag(action)


def pinecone_backfill(args: argparse.Namespace) -> Answer:
    from ...config import Settings
    from ...migration.backfill import backfill

    result = backfill(Settings.from_env(), args.collection, args.batch, restart=args.restart, say=_narrator(args))
    data = result.as_dict()
    return Answer(data, show_table(None, ["key", "value"], lambda d: [[k, v] for k, v in d.items()]))


def _narrator(args: argparse.Namespace) -> Callable[[str], None]:
    """Progress lines: on stdout for a person, on stderr beside --json's answer."""
    stream = sys.stderr if args.json else sys.stdout
    return lambda line: print(line, file=stream, flush=True)


def pinecone_mirror(args: argparse.Namespace) -> Answer:
    from ...config import Settings
    from ...migration.mirror import MirrorOutcome, mirror
    from ...migration.state import migrating_collections

    settings = Settings.from_env()
    results = [mirror(settings, c, say=_narrator(args)) for c in (args.collection or migrating_collections(settings))]
    data = [r.as_dict() for r in results]
    behind = any(r.outcome is MirrorOutcome.BEHIND for r in results)
    return Answer(data, _rows_table("nothing to mirror"), Exit.BUSY if behind else Exit.OK)


def _rows_table(empty: str) -> Any:
    """A table of dicts: the first one's keys are the columns."""
    return lambda data: _print_dicts(data, empty)


def _print_dicts(data: list[dict[str, Any]], empty: str) -> None:
    from ..terminal import print_table

    if not data:
        print(empty, flush=True)
        return
    columns = list(data[0])
    print_table(None, columns, [[json.dumps(r.get(c)) if isinstance(r.get(c), (dict, list)) else r.get(c)
                                 for c in columns] for r in data])


def pinecone_compare(args: argparse.Namespace) -> Answer:
    from ...config import Settings
    from ...migration.compare import compare_collection, read_query_file, write_report

    texts = read_query_file(args.queries) if args.queries else None
    comparison = compare_collection(Settings.from_env(), args.collection, texts=texts,
                                    sample=None if texts else (args.sample or 100), k=args.k,
                                    min_recall=args.min_recall)
    paths = write_report(comparison, args.out)
    report = comparison.report
    text = (f"{report['collection']}: recall@{report['k']} chroma {report['recall_at_k']['chroma']}, "
            f"pinecone {report['recall_at_k']['pinecone']}; overlap@{report['k']} {report['overlap_at_k']}; "
            f"ids only in chroma {report['ids_only_in_chroma']}, only in pinecone {report['ids_only_in_pinecone']}\n"
            f"report: {paths['md']} ({paths['json'].name}, {paths['csv'].name})")
    if not comparison.passed():
        print(f"recall of the Chroma snapshot is below {report['min_recall']}", file=sys.stderr)
    return Answer({**report, "report_paths": {k: str(v) for k, v in paths.items()}}, print_lines(text),
                  Exit.OK if comparison.passed() else Exit.FAILED)


def pinecone_export(args: argparse.Namespace) -> Answer:
    from ...config import Settings
    from ...migration.export import ExportOutcome, export_namespace
    from ...migration.state import migrating_collections

    settings = Settings.from_env()
    collections = [args.collection] if args.collection else migrating_collections(settings)
    if args.out and len(collections) > 1:
        raise ValueError("--out names one object: pass --collection too")
    results = [export_namespace(settings, c, args.out, say=_narrator(args)) for c in collections]
    return Answer([r.as_dict() for r in results], _rows_table("nothing to export"),
                  Exit.OK if all(r.outcome is ExportOutcome.VERIFIED for r in results) else Exit.FAILED)


def pinecone_query(args: argparse.Namespace) -> Answer:
    from ...config import Settings
    from ...migration.router import CutoverRouter

    router = CutoverRouter(Settings.from_env(), args.collection, chroma_share=args.chroma_share,
                           shadow=args.shadow or None)
    key = args.routing_key or args.text[0]
    result = router.query(query_texts=args.text, n_results=args.n_results, where=args.where, routing_key=key)
    data = {"routing_key": key, "backend": router.route(key).value, "chroma_share": router.chroma_share,
            "query_texts": args.text, **result, "shadow": router.counters.as_dict() if router.shadow else None}

    def show(d: dict[str, Any]) -> None:
        from .query import print_query_table

        print_query_table(f"routing key {key!r} → {d['backend']} (Chroma share {d['chroma_share']})", args.text, d)
        if d["shadow"]:
            print(json.dumps(d["shadow"]))
    return Answer(data, show)
