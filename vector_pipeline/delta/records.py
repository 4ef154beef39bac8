"""The rules a delta's records obey, applied by the producer before anything is written and
by the compactor to every delta it reads (a delta written by anything else obeys them too).

Invariant: a record that breaks a rule is refused with a ``ValueError`` naming the record
and the rule, before any byte of its delta reaches S3.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..chroma.client import check_metadata_value
from ..format.keys import check_collection_name

MAX_ID_LENGTH = 512


def validate_delta_input(
    ids: Sequence[str],
    embeddings: Sequence[Sequence[float]],
    documents: Sequence[str] | None,
    metadatas: Sequence[dict[str, Any] | None] | None,
    collection_name: str,
    delete_ids: Sequence[str] | None,
) -> int:
    """Raise ``ValueError`` naming the first problem; returns the dimension (0 if no upserts)."""
    check_collection_name(collection_name)
    ids, delete_ids = list(ids), list(delete_ids or [])
    if not ids and not delete_ids:
        raise ValueError("a delta needs at least one upsert or delete")
    if len(embeddings) != len(ids):
        raise ValueError(f"{len(ids)} ids but {len(embeddings)} embeddings")
    for name, values in (("documents", documents), ("metadatas", metadatas)):
        if values is not None and len(values) != len(ids):
            raise ValueError(f"{len(ids)} ids but {len(values)} {name}")
    for what, values in (("id", ids), ("delete id", delete_ids)):
        check_ids(what, values)
    dimension = _check_embeddings(embeddings)
    if documents is not None:
        for position, document in enumerate(documents):
            if document is not None and not isinstance(document, str):
                raise ValueError(f"document {position} is a {type(document).__name__}, not a str")
    if metadatas is not None:
        for position, metadata in enumerate(metadatas):
            check_metadata(position, metadata)
    return dimension


def check_ids(what: str, values: list[str]) -> None:
    for position, value in enumerate(values):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{what} {position} is empty or not a string: {value!r}")
        if len(value) > MAX_ID_LENGTH:
            raise ValueError(f"{what} {position} is {len(value)} characters (max {MAX_ID_LENGTH})")
    if len(set(values)) != len(values):
        duplicate = next(v for v in values if values.count(v) > 1)
        raise ValueError(f"{what}s are not unique: {duplicate!r} repeats")


def _check_embeddings(embeddings: Sequence[Sequence[float]]) -> int:
    try:  # the common case in one vectorised pass; the loop below names the first problem
        matrix = np.asarray(embeddings, dtype=np.float64)
        if matrix.ndim == 2 and matrix.shape[1] > 0 and np.isfinite(matrix).all():
            return int(matrix.shape[1])
    except (TypeError, ValueError):
        pass
    dimension = 0
    for position, vector in enumerate(embeddings):
        try:
            values = [float(x) for x in vector]
        except (TypeError, ValueError):
            raise ValueError(f"embedding {position} is not a sequence of numbers") from None
        if not values:
            raise ValueError(f"embedding {position} is empty")
        if dimension and len(values) != dimension:
            raise ValueError(f"embedding {position} has dimension {len(values)}, expected {dimension}")
        dimension = len(values)
        if not all(math.isfinite(x) for x in values):
            raise ValueError(f"embedding {position} contains NaN or infinity")
    return dimension


def check_metadata(position: int, metadata: dict[str, Any] | None) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata {position} is a {type(metadata).__name__}, not a dict")
    for key, value in metadata.items():
        if value is None:
            raise ValueError(f"metadata {position}: {key!r} is None (omit the key instead)")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"metadata {position}: {key!r} is NaN or infinity")
    try:
        check_metadata_value(metadata or None)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata {position}: {exc}") from None
