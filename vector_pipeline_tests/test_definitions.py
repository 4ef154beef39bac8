"""The Dagster code location loads and every job resolves."""

from __future__ import annotations

import dagster as dg


def test_definitions_load() -> None:
    from vector_pipeline.definitions import defs

    assert isinstance(defs, dg.Definitions)
    for job in defs.resolve_all_job_defs():
        assert job.name
