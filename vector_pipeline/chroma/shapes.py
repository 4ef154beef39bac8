"""Records in the shapes chroma takes and gives, and chroma's own rule for metadata.

Keeps: what goes in is one float32 matrix of one dimension (anything else is refused with a
``ValueError`` naming the rule) and, for a repeated id, the last occurrence only; what comes
out is plain lists (no numpy), with exactly the fields asked for; metadata chroma would refuse
is found before a write (``check_metadata_value``).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from chromadb.api.types import validate_metadata


def check_metadata_value(metadata: dict[str, Any] | None) -> None:
    """Raise ``ValueError``/``TypeError`` if chroma would refuse this metadata."""
    validate_metadata(metadata)


def last_occurrence_wins(ids, embeddings, documents, metadatas):  # type: ignore[no-untyped-def]
    """The upsert's columns with each id once, at its last occurrence; embeddings as one
    float32 matrix."""
    ids = list(ids)
    embeddings = _float_matrix(embeddings)
    if len(set(ids)) == len(ids):
        return ids, embeddings, _listed(documents), _listed(metadatas)
    last = {record_id: position for position, record_id in enumerate(ids)}
    keep = sorted(last.values())
    pick = lambda values: None if values is None else [list(values)[i] for i in keep]  # noqa: E731
    return [ids[i] for i in keep], embeddings[keep], pick(documents), pick(metadatas)


def _float_matrix(embeddings: Any) -> np.ndarray:
    """Embeddings as one float32 matrix (what chroma stores), converted in one pass."""
    try:
        matrix = np.asarray(embeddings, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError("embeddings must be sequences of numbers, all of one dimension") from None
    if matrix.ndim != 2 and len(matrix):
        raise ValueError("embeddings must be sequences of numbers, all of one dimension")
    return matrix


def plain_result(result: Any, include: Sequence[str], nested: bool = False) -> dict[str, Any]:
    """Chroma's result as plain lists (embeddings as lists of floats, not numpy)."""
    plain: dict[str, Any] = {"ids": list(result["ids"])}
    for field in include:
        values = result.get(field)
        if field == "embeddings" and values is not None:
            values = [[list(map(float, v)) for v in row] for row in values] if nested else \
                [list(map(float, v)) for v in values]
        plain[field] = [] if values is None else list(values)
    plain["included"] = list(include)
    return plain


def _listed(values):  # type: ignore[no-untyped-def]
    return None if values is None else list(values)
