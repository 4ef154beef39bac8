"""Exact top-k and recall@k (exact_search.py): pure, no server."""

from __future__ import annotations

import numpy as np
import pytest

from vector_pipeline.format.exact_search import ExactTopK, distances, exact_top_k, query_recall, recall_at_k


@pytest.mark.parametrize("space", ["cosine", "l2", "ip"])
def test_chunked_exact_top_k_equals_one_full_sort(space: str) -> None:
    rng = np.random.default_rng(3)
    rows = rng.standard_normal((1000, 16)).astype(np.float32)
    queries = rows[:20]
    ids = [f"r{i}" for i in range(len(rows))]
    found_ids, found_distances = exact_top_k(queries, ids, rows, 10, space, chunk_rows=77)
    full = distances(space, queries.astype(np.float64), rows.astype(np.float64))
    for row, (got, got_d) in enumerate(zip(found_ids, found_distances)):
        order = np.argsort(full[row], kind="stable")[:10]
        assert np.allclose(got_d, full[row][order])
        assert set(got) == {ids[n] for n in order}


def test_fewer_records_than_k_fill_fewer_slots() -> None:
    top = ExactTopK(np.ones((1, 3)), k=10)
    top.feed(["a", "b"], np.array([[1.0, 1, 1], [1.0, 0, 0]]))
    ids, dist = top.result()
    assert ids == [["a", "b"]] and dist.shape == (1, 2)
    assert query_recall(["a", "b"], [0.0, 0.4], ids[0], dist[0], k=10).value == 1.0


def test_recall_counts_a_tie_at_the_kth_distance_as_right() -> None:
    # exact top-2: a (0.1), b (0.2); the search returned c, equally near as b
    assert query_recall(["a", "c"], [0.1, 0.2], ["a", "b"], [0.1, 0.2], k=2).value == 1.0
    assert query_recall(["a", "d"], [0.1, 0.3], ["a", "b"], [0.1, 0.2], k=2).value == 0.5
    assert recall_at_k([["a", "d"], ["x", "y"]], [[0.1, 0.3], [0.0, 0.0]], [["a", "b"], ["x", "y"]],
                       [[0.1, 0.2], [0.0, 0.0]], k=2) == 0.75


def test_mismatched_dimension_is_refused() -> None:
    with pytest.raises(ValueError, match="dimension"):
        ExactTopK(np.ones((1, 3)), k=1).feed(["a"], np.ones((1, 4)))
