"""The thin Dagster layer over the library: assets, checks, sensors, jobs, resources."""

from __future__ import annotations

import dagster as dg


def build_definitions() -> dg.Definitions:
    return dg.Definitions()
