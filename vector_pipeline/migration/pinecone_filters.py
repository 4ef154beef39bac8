"""Chroma ``where`` filters → Pinecone metadata filters, or a refusal.

Invariant: a filter is translated whole or refused with ``UntranslatableFilterError`` naming
the clause; no clause is ever dropped, so a routed or compared query never matches more
than the caller asked for. Supported: ``$eq $ne $gt $gte $lt $lte $in $nin $and $or`` and
the implicit equality ``{"field": value}``; refused: ``where_document`` clauses,
``$contains``/``$not_contains`` and other operators Pinecone lacks, range operators on
non-numbers (Pinecone compares numbers only), values of types Pinecone cannot store.
"""

from __future__ import annotations

from typing import Any, Mapping

COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin")
RANGES = ("$gt", "$gte", "$lt", "$lte")
LOGICAL = ("$and", "$or")


class UntranslatableFilterError(ValueError):
    """A filter (or one clause of it) with no Pinecone equivalent."""


def to_pinecone_filter(where: Mapping[str, Any] | None,
                       where_document: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The Pinecone filter equivalent to chroma's ``where`` (None: no filter)."""
    if where_document:
        raise UntranslatableFilterError(
            f"where_document {dict(where_document)!r}: Pinecone has no full-text filter on documents; "
            "query Chroma for this, or filter on metadata")
    if not where:
        return None
    return _clause(where, "where")


def _clause(clause: Any, path: str) -> dict[str, Any]:
    if not isinstance(clause, Mapping) or not clause:
        raise UntranslatableFilterError(f"{path}: expected a non-empty object, got {clause!r}")
    translated = [_one(key, value, f"{path}.{key}") for key, value in clause.items()]
    return translated[0] if len(translated) == 1 else {"$and": translated}


def _one(key: str, value: Any, path: str) -> dict[str, Any]:
    if key in LOGICAL:
        if not isinstance(value, list) or not value:
            raise UntranslatableFilterError(f"{path}: expected a non-empty list of filters")
        return {key: [_clause(item, f"{path}[{n}]") for n, item in enumerate(value)]}
    if key.startswith("$"):
        raise UntranslatableFilterError(f"{path}: operator {key} has no Pinecone equivalent "
                                        f"(supported: {', '.join(COMPARISONS + LOGICAL)})")
    if not isinstance(value, Mapping):
        return {key: {"$eq": _scalar(value, path)}}
    if len(value) != 1:
        raise UntranslatableFilterError(f"{path}: expected one operator, got {sorted(value)}")
    [(op, operand)] = value.items()
    if op not in COMPARISONS:
        raise UntranslatableFilterError(f"{path}: operator {op} has no Pinecone equivalent "
                                        f"(supported: {', '.join(COMPARISONS + LOGICAL)})")
    if op in ("$in", "$nin"):
        if not isinstance(operand, list) or not operand:
            raise UntranslatableFilterError(f"{path}.{op}: expected a non-empty list")
        return {key: {op: [_scalar(v, f"{path}.{op}") for v in operand]}}
    operand = _scalar(operand, f"{path}.{op}")
    if op in RANGES and (isinstance(operand, bool) or not isinstance(operand, (int, float))):
        raise UntranslatableFilterError(f"{path}.{op}: Pinecone compares numbers only, got {operand!r}")
    return {key: {op: operand}}


def _scalar(value: Any, path: str) -> Any:
    if isinstance(value, (str, bool, int, float)):
        return value
    raise UntranslatableFilterError(f"{path}: value {value!r} is not a string, number or boolean")
