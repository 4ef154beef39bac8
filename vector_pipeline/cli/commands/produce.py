"""``produce``: rows of a JSONL or Parquet file become deltas (docs/command-line.md, "Rows").

Every row is checked before any text is embedded and before any byte reaches S3: ids, metadata,
vectors, and the collection's recorded embedding (what the compactor would otherwise
quarantine); one message lists every bad row, numbered as in the file (from 1)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..output import Answer, add_json_flag, print_lines

ROW_FORMAT = ("a JSON object per line (.jsonl) or a Parquet table: id (string, required); embedding (list of "
              "numbers) or text (embedded with EMBEDDING_PROVIDER); optional document (stored text, default: text), "
              "metadata (object) and any other column (metadata too); delete: true removes the id")
_RESERVED = {"id", "embedding", "text", "document", "metadata", "delete"}


class ProduceStopped(RuntimeError):
    """A produce that failed after some of its deltas were written: ``note`` says which."""

    def __init__(self, cause: BaseException, note: str) -> None:
        self.note = "\n".join(filter(None, [getattr(cause, "note", None), note]))
        super().__init__(f"{cause}\n{note}")


def register(commands: Any) -> None:
    produce = commands.add_parser("produce", help="write deltas from a JSONL or Parquet file of rows",
                                  description=f"Rows: {ROW_FORMAT}. Example line: "
                                              '{"id": "r1#w0", "text": "walmart", "merchant": "WALMART"}')
    produce.add_argument("path", type=Path, help="the rows' file (.jsonl or .parquet)")
    produce.add_argument("--collection", default="words", help="the collection the rows go to")
    produce.add_argument("--batch-size", type=int, default=500, help="rows per delta")
    add_json_flag(produce)
    produce.set_defaults(handler=produce_file)


def produce_file(args: argparse.Namespace) -> Answer:
    from ... import progress
    from ...chroma.embeddings import provider_from_settings, provider_name
    from ...config import Settings
    from ...delta.produce import produce_embedding_delta
    from ...delta.queue import DeltaQueue
    from ...delta.records import validate_delta_input
    from ...table.embedding import recorded_embedding

    settings = Settings.from_env()
    numbered = read_rows(args.path)
    upserts = [(n, r) for n, r in numbered if not r.get("delete")]
    vectors_given = bool(upserts) and all("embedding" in r for _n, r in upserts)
    _check_shape(upserts, vectors_given)
    provider = None if vectors_given or not upserts else provider_from_settings(settings)
    expected = recorded_embedding(settings, args.collection)
    DeltaQueue(settings).url  # a missing queue is named before anything is uploaded
    validate_delta_input(
        [_id(r) for _n, r in upserts], [r["embedding"] for _n, r in upserts] if vectors_given else None,
        [_document(r) for _n, r in upserts], [_metadata_of(r) for _n, r in upserts], args.collection,
        [_id(r) for _n, r in numbered if r.get("delete")], expected_embedding=expected,
        embedding_provider=provider_name(settings), dimension=getattr(provider, "dimension", 0),
        rows=[n for n, _r in upserts], delete_rows=[n for n, r in numbered if r.get("delete")])
    results: list[dict[str, Any]] = []
    with progress.stage(f"produce {args.collection}", len(numbered), "rows") as bar:
        for start in range(0, len(numbered), args.batch_size):
            batch = [r for _n, r in numbered[start:start + args.batch_size]]
            upserting = [r for r in batch if not r.get("delete")]
            try:
                embeddings = ([list(r["embedding"]) for r in upserting] if vectors_given or not upserting
                              else provider.embed([str(r["text"]) for r in upserting]))  # type: ignore[union-attr]
                results.append(produce_embedding_delta(
                    [_id(r) for r in upserting], embeddings,
                    documents=[_document(r) for r in upserting] if upserting else None,
                    metadatas=[_metadata_of(r) for r in upserting] if upserting else None,
                    collection_name=args.collection, delete_ids=[_id(r) for r in batch if r.get("delete")] or None,
                    settings=settings, expected_embedding=expected))
            except Exception as exc:
                if results:
                    raise ProduceStopped(exc, f"{_deltas(len(results))} of this file (rows 1-{start}) were written "
                                              f"before: produce rows {start + 1}- again with a file of the rest") \
                        from exc
                raise
            bar.advance(len(batch))
    upserted, deleted = sum(r["upsert_count"] for r in results), sum(r["delete_count"] for r in results)
    data = {"collection": args.collection, "delta_count": len(results), "upsert_count": upserted,
            "delete_count": deleted, "deltas": results}
    return Answer(data, print_lines(f"{_deltas(len(results))} written and announced ({upserted} upserts, "
                                    f"{deleted} deletes to {args.collection})"))


def _deltas(count: int) -> str:
    return f"{count} delta{'' if count == 1 else 's'}"


def read_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(row number from 1, row) of a JSONL or Parquet file; a row that is not an object with
    an id is refused with every other such row."""
    from ...delta.records import Problems

    if not path.is_file():
        raise FileNotFoundError(2, "no such file", str(path))
    if path.suffix == ".parquet":
        import pandas as pd

        frame = pd.read_parquet(path)
        numbered = [(n, {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in row.items()})
                    for n, row in enumerate(frame.to_dict(orient="records"), start=1)]
    else:
        numbered = []
        problems = Problems()
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    numbered.append((number, json.loads(line)))
                except ValueError as exc:
                    problems.add(f"row {number}: not JSON ({exc})")
        problems.raise_any()
    problems = Problems()
    for number, row in numbered:
        if not isinstance(row, dict) or "id" not in row:
            problems.add(f"row {number}: not an object with an 'id'")
    problems.raise_any()
    if not numbered:
        raise ValueError(f"{path}: no rows")
    return numbered


def _check_shape(upserts: list[tuple[int, dict[str, Any]]], vectors_given: bool) -> None:
    from ...delta.records import Problems

    problems = Problems()
    for number, row in upserts:
        if "embedding" not in row and "text" not in row:
            problems.add(f"row {number}: neither 'embedding' nor 'text'")
        elif not vectors_given and "embedding" in row:
            problems.add(f"row {number}: has an 'embedding' but other rows only 'text': a file holds vectors or "
                         "texts, not both")
    problems.raise_any()


def _id(row: dict[str, Any]) -> Any:
    value = row["id"]
    return value if isinstance(value, str) or value is None else str(value)


def _document(row: dict[str, Any]) -> Any:
    return row.get("document", row.get("text"))


def _metadata_of(row: dict[str, Any]) -> dict[str, Any] | None:
    metadata = dict(row.get("metadata") or {}) if isinstance(row.get("metadata") or {}, dict) else row["metadata"]
    if isinstance(metadata, dict):
        metadata.update({k: v for k, v in row.items() if k not in _RESERVED and v is not None})
    return metadata or None
