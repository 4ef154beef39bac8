"""The Dagster code location loads, every job resolves, and `dagster definitions validate`
accepts the workspace as a user would run it."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[2]


def test_definitions_load() -> None:
    from vector_pipeline.definitions import defs

    assert isinstance(defs, dg.Definitions)
    names = {job.name for job in defs.resolve_all_job_defs()}
    assert {"validate_delta", "compaction", "rollback_job", "gc_job"} <= names
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == {"delta", "snapshot_candidate", "snapshot"}  # collections are partitions, not assets
    assert defs.resolve_job_def("compaction").partitions_def.name == "collection"
    assert defs.resolve_sensor_def("delta_queue_sensor") and defs.resolve_sensor_def("delta_reconciliation_sensor")


def test_lineage_runs_delta_to_candidate_to_snapshot() -> None:
    from vector_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    candidate = dg.AssetKey("snapshot_candidate")
    assert dg.AssetKey("delta") in graph.get(candidate).parent_keys
    assert candidate in graph.get(dg.AssetKey("snapshot")).parent_keys


def test_dagster_definitions_validate_accepts_the_workspace(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
