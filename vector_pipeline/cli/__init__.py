"""Operator and developer tooling: the ``vector-pipeline`` command, the terminal, child
processes, the embedded AWS and the demo.

``main`` imports the command line only when called, so ``import vector_pipeline.cli`` stays
cheap."""

from __future__ import annotations

from typing import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from .app import main as run

    return run(argv)
