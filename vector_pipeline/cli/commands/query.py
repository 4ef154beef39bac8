"""``query``: the nearest records of the published snapshot (and, on request, of the deltas
not compacted yet). The table's title gives the query's own time; loading the model and the
snapshot is reported apart (``-v``)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, Sequence

from ..output import Answer, add_json_flag



def register(commands: Any) -> None:
    query = commands.add_parser("query", help="query the published snapshot of a collection")
    query.add_argument("text", nargs="+", help="query text(s), embedded with EMBEDDING_PROVIDER")
    query.add_argument("--collection", default="words", help="the collection to search")
    query.add_argument("-n", "--n-results", type=int, default=5, help="answers per query text")
    query.add_argument("--where", type=json.loads, default=None, metavar="JSON",
                       help='metadata filter, e.g. \'{"merchant": "TARGET"}\' (default: none)')
    query.add_argument("--snapshot-path", default=None, metavar="DIR",
                       help="local cache root for snapshot copies (default: VECTOR_PIPELINE_CACHE_DIR)")
    query.add_argument("--include-pending", action="store_true",
                       help="also search the deltas not compacted yet (exact search; last writer wins over the snapshot)")
    query.add_argument("--consistency", choices=["bounded", "strong"], default="bounded",
                       help="bounded: the version the pointer named at most READER_POINTER_TTL_SECONDS ago "
                            "(a one-shot query reads the pointer anyway); strong: read the pointer for this query")
    add_json_flag(query)
    query.set_defaults(handler=run_query)


def run_query(args: argparse.Namespace) -> Answer:
    from ...config import Settings
    from ...read.reader import query_snapshot

    settings = Settings.from_env()
    started = time.perf_counter()
    result = query_snapshot(query_texts=args.text, n_results=args.n_results, where=args.where,
                            collection_name=args.collection, snapshot_path=args.snapshot_path, settings=settings,
                            include_pending=args.include_pending, consistency=args.consistency)
    elapsed = (time.perf_counter() - started) * 1000
    data = {"collection": args.collection, "query_texts": args.text, **result, "milliseconds": elapsed}
    return Answer(data, lambda d: print_query_table(f"{args.collection} ({elapsed:.0f} ms, model and snapshot "
                                                    f"loading included)", args.text, d))


def print_query_table(title: str, texts: Sequence[str], result: dict[str, Any],
                      metadata_keys: Sequence[str] | None = None) -> None:
    from ..terminal import print_table, query_rows

    columns, rows, sections = query_rows(texts, result, metadata_keys)
    print_table(title, columns, rows, sections=sections, right=["rank", "distance"])
