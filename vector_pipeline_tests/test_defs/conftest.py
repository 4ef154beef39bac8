"""Dagster fixtures: definitions built for the test's moto endpoint, an ephemeral instance."""

from pathlib import Path
from typing import Iterator

import dagster as dg
import pytest

from vector_pipeline.config import Settings
from vector_pipeline.defs import build_definitions


@pytest.fixture
def defs(settings: Settings) -> dg.Definitions:
    return build_definitions(settings)


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """A sqlite-backed instance (sensors resolve dynamic partitions through its ref)."""
    (tmp_path / "dagster_home").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "dagster_home")) as local:
        yield local
