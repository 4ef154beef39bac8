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
    assert {"compaction", "rebuild", "rollback_job", "gc_job", "prune_runs_job",
            "upgrade_from_per_delta_layout"} <= names and "validate_delta" not in names  # no run per delta
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == {"delta", "snapshot_candidate", "snapshot"}  # collections are partitions, not assets
    for key in keys:  # partitions = collections, for deltas too
        assert graph.get(dg.AssetKey(key)).partitions_def.name == "collection"
    for job in ("compaction", "rebuild", "rollback_job", "gc_job"):  # the writers, one key per collection
        definition = defs.resolve_job_def(job)
        assert definition.partitions_def.name == "collection"
        assert definition.partitioned_config.get_tags_for_partition_key("words")["vector_pipeline/writer"] == "words"
    assert defs.resolve_sensor_def("delta_queue_sensor") and defs.resolve_sensor_def("delta_reconciliation_sensor")


def test_lineage_runs_delta_to_candidate_to_snapshot() -> None:
    from vector_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    candidate = dg.AssetKey("snapshot_candidate")
    assert dg.AssetKey("delta") in graph.get(candidate).parent_keys
    assert candidate in graph.get(dg.AssetKey("snapshot")).parent_keys


def test_every_check_is_partitioned_by_collection() -> None:
    from vector_pipeline.definitions import defs

    graph = defs.resolve_asset_graph()
    checks = {key.name: graph.get_check_spec(key) for key in graph.asset_check_keys}
    assert {"vector_count_matches_prior_plus_deltas", "deltas_valid"} <= set(checks)
    assert all(spec.partitions_def is not None and spec.partitions_def.name == "collection" for spec in checks.values())
    assert checks["vector_count_matches_prior_plus_deltas"].blocking


def test_dagster_definitions_validate_accepts_the_workspace(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
