"""The record rules (``delta/records.py``): ``validate_delta_input`` refusing each broken rule
with a ``ValueError`` naming the record (its position) and the rule, and returning the
dimension of good input; ``check_ids`` and ``check_metadata`` as the reader uses them.

Not covered here: writing or reading a delta (chroma and S3 are not used); chroma's own
metadata rules beyond one refusal passed through."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vector_pipeline.delta.records import MAX_ID_LENGTH, check_ids, check_metadata, validate_delta_input


def validate(ids=("a", "b"), embeddings=((1.0, 2.0), (3.0, 4.0)), documents=None, metadatas=None,
             collection="docs", deletes=None):
    return validate_delta_input(list(ids), [list(e) if isinstance(e, tuple) else e for e in embeddings],
                                documents, metadatas, collection, deletes)


def test_good_input_returns_its_dimension():
    assert validate(documents=["x", None], metadatas=[{"k": 1, "f": 0.5, "b": True}, None]) == 2
    assert validate(ids=[], embeddings=[], deletes=["gone"]) == 0  # deletes only
    assert validate_delta_input(["a"], np.zeros((1, 5), dtype=np.float32), None, None, "docs", None) == 5


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"collection": "a/b"}, "invalid collection name 'a/b'"),
    ({"ids": [], "embeddings": []}, "a delta needs at least one upsert or delete"),
    ({"embeddings": [(1.0, 2.0)]}, "2 ids but 1 embeddings"),
    ({"documents": ["x"]}, "2 ids but 1 documents"),
    ({"metadatas": [None, None, None]}, "2 ids but 3 metadatas"),
    ({"ids": ["a", ""]}, "row 2: id is empty or not a string: ''"),
    ({"ids": ["a", 7]}, "row 2: id is empty or not a string: 7"),
    ({"ids": ["a", "x" * (MAX_ID_LENGTH + 1)]}, f"row 2: id is {MAX_ID_LENGTH + 1} characters"),
    ({"ids": ["a", "a"]}, "row 2: id 'a' repeats row 1"),
    ({"deletes": ["x", None]}, "row 4: delete id is empty or not a string: None"),  # deletes follow the 2 upsert rows
    ({"deletes": ["x", "x"]}, "row 4: delete id 'x' repeats row 3"),
    ({"embeddings": [(1.0, 2.0), "12"]}, "row 2: embedding is not a sequence of numbers"),
    ({"embeddings": [(1.0, 2.0), ("x", 2.0)]}, "row 2: embedding is not a sequence of numbers"),
    ({"embeddings": [(1.0, 2.0), 3.0]}, "row 2: embedding is not a sequence of numbers"),
    ({"embeddings": [(1.0, 2.0), ()]}, "row 2: embedding is empty"),
    ({"embeddings": [(1.0, 2.0), (1.0, 2.0, 3.0)]}, "row 2: embedding has dimension 3, expected 2"),
    ({"embeddings": [(1.0, 2.0), (float("nan"), 2.0)]}, "row 2: embedding contains NaN or infinity"),
    ({"embeddings": [(1.0, 2.0), (float("inf"), 2.0)]}, "row 2: embedding contains NaN or infinity"),
    ({"documents": ["x", 5]}, "row 2: document is a int, not a str"),
    ({"metadatas": [None, ["k"]]}, "row 2: metadata is a list, not an object"),
    ({"metadatas": [None, {"k": None}]}, "row 2: metadata 'k' is None"),
    ({"metadatas": [None, {"k": float("nan")}]}, "row 2: metadata 'k' is NaN or infinity"),
    ({"metadatas": [None, {"k": {"nested": 1}}]}, "row 2: metadata: Expected metadata value"),  # chroma's rule
])
def test_each_broken_rule_is_refused_naming_the_record_and_the_rule(kwargs, problem):
    with pytest.raises(ValueError) as refused:
        validate(**kwargs)
    assert problem in str(refused.value)


def test_check_ids_names_what_kind_of_id_broke_the_rule():
    with pytest.raises(ValueError, match="row 1: delete id is empty"):
        check_ids("delete id", [""])
    check_ids("id", ["a", "b"])


def test_check_metadata_accepts_none_and_empty():
    check_metadata(0, None)
    check_metadata(0, {})


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 8), st.data())
def test_any_finite_matrix_with_unique_ids_is_accepted_with_its_dimension(count, dimension, data):
    values = data.draw(st.lists(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32),
                                         min_size=dimension, max_size=dimension), min_size=count, max_size=count))
    ids = [f"id-{n}" for n in range(count)]
    assert validate_delta_input(ids, values, None, None, "docs", None) == dimension
