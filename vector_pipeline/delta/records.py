"""The rules a delta's records obey, applied by the producer before anything is written (and
before any text is embedded) and by the compactor to every delta it reads (a delta written
by anything else obeys them too).

Invariant: records that break a rule are refused with one ``InvalidRecordsError`` (a
``ValueError``) listing every bad record, up to ``MAX_REPORTED`` of them, counted from 1 (a
caller with rows from a file passes their row numbers), before any byte of the delta reaches
S3. A delta whose vectors are not of the collection's recorded embedding (provider and
dimension) is refused the same way: the compactor would quarantine it.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..chroma.shapes import check_metadata_value
from ..format.keys import check_collection_name

MAX_ID_LENGTH = 512
MAX_REPORTED = 20


class InvalidRecordsError(ValueError):
    """Records that break the rules: every problem up to ``MAX_REPORTED``, and how many in all."""

    def __init__(self, problems: list[str], count: int) -> None:
        self.problems, self.count = problems, count
        more = f"\n  ... and {count - len(problems)} more" if count > len(problems) else ""
        lead = problems[0] if count == 1 else f"{count} problems in the records:\n  " + "\n  ".join(problems)
        super().__init__(lead + more if count > 1 else lead)


class Problems:
    """Collects problems up to the bound; ``raise_any`` raises them as one error."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.count = 0

    def add(self, line: str) -> None:
        self.count += 1
        if len(self.lines) < MAX_REPORTED:
            self.lines.append(line)

    def raise_any(self) -> None:
        if self.count:
            raise InvalidRecordsError(self.lines, self.count)


def _numbers(count: int, given: Sequence[int] | None, start: int = 1) -> list[int]:
    return list(given) if given is not None else list(range(start, start + count))


def validate_delta_input(
    ids: Sequence[str],
    embeddings: Sequence[Sequence[float]] | None,
    documents: Sequence[str] | None,
    metadatas: Sequence[dict[str, Any] | None] | None,
    collection_name: str,
    delete_ids: Sequence[str] | None,
    *,
    expected_embedding: tuple[str, int] | None = None,
    embedding_provider: str = "",
    dimension: int = 0,
    rows: Sequence[int] | None = None,
    delete_rows: Sequence[int] | None = None,
) -> int:
    """Raise ``InvalidRecordsError`` listing every problem; returns the dimension (0 if no upserts).

    ``embeddings`` None: the texts are not embedded yet; ``dimension`` is then what the
    provider will make, checked against ``expected_embedding`` (the collection's provider and
    dimension, None while it holds no vector). ``rows`` / ``delete_rows`` number the records
    for the message (default 1.. for upserts, then on for deletes)."""
    check_collection_name(collection_name)
    ids, delete_ids = list(ids), list(delete_ids or [])
    if not ids and not delete_ids:
        raise ValueError("a delta needs at least one upsert or delete")
    for name, values in (("embeddings", embeddings), ("documents", documents), ("metadatas", metadatas)):
        if values is not None and len(values) != len(ids):
            raise ValueError(f"{len(ids)} ids but {len(values)} {name}")
    rows = _numbers(len(ids), rows)
    delete_rows = _numbers(len(delete_ids), delete_rows, start=len(ids) + 1)
    problems = Problems()
    check_ids("id", ids, problems, rows)
    check_ids("delete id", delete_ids, problems, delete_rows)
    if embeddings is not None:
        dimension = _check_embeddings(embeddings, problems, rows)
    if documents is not None:
        for row, document in zip(rows, documents):
            if document is not None and not isinstance(document, str):
                problems.add(f"row {row}: document is a {type(document).__name__}, not a str")
    if metadatas is not None:
        for row, metadata in zip(rows, metadatas):
            check_metadata(row, metadata, problems)
    if ids and dimension and expected_embedding is not None and \
            (embedding_provider, dimension) != tuple(expected_embedding):
        problems.add(f"the vectors are {embedding_provider} ({dimension}-d) but collection {collection_name!r} holds "
                     f"{expected_embedding[0]} ({expected_embedding[1]}-d): the compactor would quarantine them "
                     f"(use the collection's model, or another collection)")
    problems.raise_any()
    return dimension


def check_ids(what: str, values: list[str], problems: Problems | None = None,
              rows: Sequence[int] | None = None) -> None:
    """Ids non-empty strings of at most ``MAX_ID_LENGTH`` characters, each once."""
    own = problems is None
    problems = Problems() if problems is None else problems
    first_row: dict[str, int] = {}
    for row, value in zip(_numbers(len(values), rows), values):
        if not isinstance(value, str) or not value:
            problems.add(f"row {row}: {what} is empty or not a string: {value!r}")
        elif len(value) > MAX_ID_LENGTH:
            problems.add(f"row {row}: {what} is {len(value)} characters (max {MAX_ID_LENGTH})")
        elif value in first_row:
            problems.add(f"row {row}: {what} {value!r} repeats row {first_row[value]} ({what}s are unique per delta)")
        else:
            first_row[value] = row
    if own:
        problems.raise_any()


def _check_embeddings(embeddings: Sequence[Sequence[float]], problems: Problems, rows: Sequence[int]) -> int:
    try:  # the common case in one vectorised pass; the loop below names every problem
        matrix = np.asarray(embeddings, dtype=np.float64)
        if matrix.ndim == 2 and matrix.shape[1] > 0 and np.isfinite(matrix).all():
            return int(matrix.shape[1])
    except (TypeError, ValueError):
        pass
    dimension = 0
    for row, vector in zip(rows, embeddings):
        try:
            if isinstance(vector, (str, bytes)):  # iterable, but not a vector
                raise TypeError(type(vector).__name__)
            values = [float(x) for x in vector]
        except (TypeError, ValueError):
            problems.add(f"row {row}: embedding is not a sequence of numbers")
            continue
        if not values:
            problems.add(f"row {row}: embedding is empty")
        elif dimension and len(values) != dimension:
            problems.add(f"row {row}: embedding has dimension {len(values)}, expected {dimension} (as row {rows[0]})")
        elif not all(math.isfinite(x) for x in values):
            problems.add(f"row {row}: embedding contains NaN or infinity")
        dimension = dimension or len(values)
    return dimension


def check_metadata(row: int, metadata: dict[str, Any] | None, problems: Problems | None = None) -> None:
    own = problems is None
    problems = Problems() if problems is None else problems
    if metadata is not None and not isinstance(metadata, dict):
        problems.add(f"row {row}: metadata is a {type(metadata).__name__}, not an object")
    elif metadata:
        bad = False
        for key, value in metadata.items():
            if value is None:
                problems.add(f"row {row}: metadata {key!r} is None (omit the key instead)")
                bad = True
            elif isinstance(value, float) and not math.isfinite(value):
                problems.add(f"row {row}: metadata {key!r} is NaN or infinity")
                bad = True
        if not bad:
            try:
                check_metadata_value(metadata)
            except (TypeError, ValueError) as exc:
                problems.add(f"row {row}: metadata: {exc}")
    if own:
        problems.raise_any()
