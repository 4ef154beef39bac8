"""Helpers for the pure-layer tests: hand-made ``LoadedDelta`` objects and ids in order."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from vector_pipeline.format.delta_manifest import DELTA_FORMAT, DeltaManifest
from vector_pipeline.format.keys import DeltaRef, new_delta_id
from vector_pipeline.format.loaded_delta import LoadedDelta

COLLECTION = "docs"


def delta_ids(count: int) -> list[str]:
    """``count`` ULIDs in ascending order (one millisecond apart)."""
    return [new_delta_id(now_ms=1_700_000_000_000 + n) for n in range(count)]


def loaded(delta_id: str, upserts: Iterable[str] = (), deletes: Iterable[str] = (),
           dimension: int = 2) -> LoadedDelta:
    """A delta upserting ``upserts`` and deleting ``deletes``; each row's vector, document and
    metadata name the delta and the id, so a test can tell which delta a row came from."""
    ids = list(upserts)
    embeddings = np.asarray([[float(n)] * dimension for n in range(len(ids))], dtype=np.float32)
    return LoadedDelta(
        ref=DeltaRef(COLLECTION, delta_id),
        manifest=DeltaManifest(DELTA_FORMAT, delta_id, COLLECTION, delete_ids=tuple(deletes), dimension=dimension,
                               embedding_provider="test"),
        ids=ids,
        embeddings=embeddings.reshape(len(ids), dimension),
        documents=[f"{delta_id}:{i}" for i in ids],
        metadatas=[{"delta": delta_id, "id": i} for i in ids],
    )
