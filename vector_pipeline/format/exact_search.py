"""Exact nearest neighbours and recall@k, as pure functions of arrays (no I/O).

Invariant: ``ExactTopK`` holds, for every query, the ``k`` records nearest to it among all
the rows it was fed, by the distance chroma's HNSW uses for the space (cosine: 1 − cos;
l2: squared euclidean; ip: 1 − dot), whatever the order and size of the chunks; its
memory is the queries, one chunk's distances and ``k`` candidates per query, never the
whole collection. ``recall_at_k`` counts ties: an approximate hit whose distance is at
most the k-th exact distance (within ``TIE_TOLERANCE``) is right, since which of several
equally near records fills the last slot is arbitrary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

SPACES = ("cosine", "l2", "ip")
TIE_TOLERANCE = 1e-4  # float32 distances from chroma against float64 ones here
QUERY_BATCH = 256  # queries whose distances to one chunk are computed at once


def distances(space: str, queries: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Distances (queries × rows) as chroma's HNSW computes them for ``space``."""
    if space == "cosine":
        return 1.0 - unit(queries) @ unit(rows).T
    if space == "ip":
        return 1.0 - queries @ rows.T
    if space == "l2":
        squared = (queries * queries).sum(axis=1)[:, None] + (rows * rows).sum(axis=1)[None, :] - 2 * queries @ rows.T
        return np.maximum(squared, 0.0)
    raise ValueError(f"unknown space {space!r} (one of {', '.join(SPACES)})")


def unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


class ExactTopK:
    """The running exact top-k of each query over rows fed chunk by chunk."""

    def __init__(self, queries: np.ndarray, k: int, space: str = "cosine") -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        if space not in SPACES:
            raise ValueError(f"unknown space {space!r} (one of {', '.join(SPACES)})")
        self.queries = np.asarray(queries, dtype=np.float64)
        self.k, self.space = k, space
        self.best_distances = np.full((len(self.queries), 0), np.inf)
        self.best_ids = np.empty((len(self.queries), 0), dtype=object)
        self.rows_seen = 0

    def feed(self, ids: Sequence[str], rows: np.ndarray) -> None:
        """Add a chunk of records (``ids`` and their vectors)."""
        if not len(ids):
            return
        rows = np.asarray(rows, dtype=np.float64)
        if rows.shape[1] != self.queries.shape[1]:
            raise ValueError(f"records of dimension {rows.shape[1]}, queries of {self.queries.shape[1]}")
        chunk_ids = np.asarray(ids, dtype=object)
        merged_d, merged_i = [], []
        for start in range(0, len(self.queries), QUERY_BATCH):
            stop = start + QUERY_BATCH
            found = distances(self.space, self.queries[start:stop], rows)
            all_d = np.concatenate([self.best_distances[start:stop], found], axis=1)
            all_i = np.concatenate([self.best_ids[start:stop], np.broadcast_to(chunk_ids, found.shape)], axis=1)
            keep = min(self.k, all_d.shape[1])
            picked = np.argpartition(all_d, keep - 1, axis=1)[:, :keep]
            merged_d.append(np.take_along_axis(all_d, picked, axis=1))
            merged_i.append(np.take_along_axis(all_i, picked, axis=1))
        self.best_distances = np.concatenate(merged_d)
        self.best_ids = np.concatenate(merged_i)
        self.rows_seen += len(ids)

    def result(self) -> tuple[list[list[str]], np.ndarray]:
        """Per query: ids nearest first, and their distances (queries × min(k, rows))."""
        order = np.lexsort((self.best_ids.astype(str), self.best_distances), axis=1) if self.best_ids.size else \
            np.zeros(self.best_ids.shape, dtype=int)
        ids = np.take_along_axis(self.best_ids, order, axis=1)
        return [list(map(str, row)) for row in ids], np.take_along_axis(self.best_distances, order, axis=1)


def exact_top_k(queries: np.ndarray, ids: Sequence[str], rows: np.ndarray, k: int, space: str = "cosine",
                chunk_rows: int = 16384) -> tuple[list[list[str]], np.ndarray]:
    """``ExactTopK`` over ``rows`` fed in chunks of ``chunk_rows``."""
    top = ExactTopK(queries, k, space)
    for start in range(0, len(ids), chunk_rows):
        top.feed(ids[start:start + chunk_rows], rows[start:start + chunk_rows])
    return top.result()


@dataclass(frozen=True)
class QueryRecall:
    """One query's recall@k: right hits of the slots to fill (min(k, live records))."""

    right: int
    slots: int

    @property
    def value(self) -> float:
        return 1.0 if self.slots == 0 else self.right / self.slots


def query_recall(found_ids: Sequence[str], found_distances: Sequence[float], exact_ids: Sequence[str],
                 exact_distances: Sequence[float], k: int) -> QueryRecall:
    """How many of the first ``k`` approximate hits are right: among the exact top-k, or
    at most as far as the k-th exact hit (a tie)."""
    slots = min(k, len(exact_ids))
    if slots == 0:
        return QueryRecall(0, 0)
    exact = set(exact_ids[:slots])
    kth = float(exact_distances[slots - 1])
    right = sum(1 for record_id, distance in zip(found_ids[:slots], found_distances[:slots])
                if record_id in exact or float(distance) <= kth + TIE_TOLERANCE)
    return QueryRecall(right, slots)


def recall_at_k(found_ids: Sequence[Sequence[str]], found_distances: Sequence[Sequence[float]],
                exact_ids: Sequence[Sequence[str]], exact_distances: Sequence[Sequence[float]], k: int) -> float:
    """Mean recall@k over queries (1.0 for no query: nothing was missed)."""
    recalls = [query_recall(f, fd, e, ed, k) for f, fd, e, ed in zip(found_ids, found_distances, exact_ids,
                                                                     exact_distances)]
    return float(np.mean([r.value for r in recalls])) if recalls else 1.0
