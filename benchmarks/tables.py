"""Markdown tables for the reports: a header row, its rule, and one row per list of cells
(floats to three significant digits); request counts as text."""

from __future__ import annotations

from typing import Any


def row(cells: list[Any]) -> str:
    return "| " + " | ".join(f"{c:.3g}" if isinstance(c, float) else str(c) for c in cells) + " |"


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return [row(header), row(["---"] * len(header)), *[row(r) for r in rows]]


def operations(requests: dict[str, int]) -> str:
    """``{"GetObject": 3}`` → ``"3 GetObject"`` (``"none"`` when empty)."""
    return ", ".join(f"{n} {op}" for op, n in requests.items()) or "none"
