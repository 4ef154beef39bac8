"""The Pinecone assets in Dagster, executed in process against moto and the loopback
endpoint: job ``pinecone`` on a collection partition mirrors the published snapshot into
Pinecone, then compares the two, recording recall/overlap as float metadata and the
``recall_at_least_bar`` check; a bar above reach fails the check. The assets and jobs exist
only when PINECONE_INDEX_HOST is set; the mirror follows publishes (declarative automation).

Not covered here: the comparison's figures themselves (test_pinecone/test_end_to_end.py).
"""

from __future__ import annotations

import dagster as dg
import numpy as np
import pytest

from vector_pipeline import ChromaCompactor, produce_embedding_delta
from vector_pipeline.config import Settings
from vector_pipeline.defs import build_definitions

from vector_pipeline_tests.helpers import all_keys, vectors
from devtools.pinecone_server import DEFAULT_API_KEY, PineconeServer, pinecone_server  # noqa: F401 (fixture)

RUN_CONFIG = {"ops": {"pinecone_comparison": {"config": {"sample": 10, "k": 5}}}}


@pytest.fixture(autouse=True)
def _api_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dagster takes secrets only as EnvVar: the code location's environment holds the key."""
    monkeypatch.setenv("PINECONE_API_KEY", DEFAULT_API_KEY)


def _settings(settings: Settings, server: PineconeServer, **extra: object) -> Settings:
    return settings.with_overrides(pinecone_index_host=server.host, pinecone_api_key=DEFAULT_API_KEY,
                                   pinecone_retry_base_seconds=0.05, **extra)


def test_pinecone_assets_appear_only_when_a_host_is_set_and_the_mirror_follows_publishes(
        settings: Settings, pinecone_server: PineconeServer, instance: dg.DagsterInstance,  # noqa: F811
        rng: np.random.Generator) -> None:
    without = build_definitions(settings)
    assert dg.AssetKey("pinecone_comparison") not in without.resolve_asset_graph().get_all_asset_keys()
    with_host = build_definitions(_settings(settings, pinecone_server))
    assert {dg.AssetKey("pinecone_mirror"), dg.AssetKey("pinecone_comparison")} <= \
        with_host.resolve_asset_graph().get_all_asset_keys()
    dg.Definitions.validate_loadable(with_host)  # job and op names do not collide
    assert {"pinecone", "mirror_to_pinecone"} <= {job.name for job in with_host.resolve_all_job_defs()}
    assert not with_host.resolve_job_def("pinecone").partitioned_config.get_tags_for_partition_key("words").get(
        "vector_pipeline/writer")  # the Pinecone jobs take no writer key
    assert with_host.resolve_sensor_def("pinecone_mirror_follows_publishes").default_status == \
        dg.DefaultSensorStatus.RUNNING
    instance.add_dynamic_partitions("collection", ["words", "lines"])
    produce_embedding_delta(["w"], vectors(rng, 1), settings=settings)
    selection = dg.AssetSelection.assets("pinecone_mirror")
    first = dg.evaluate_automation_conditions(defs=with_host, instance=instance, asset_selection=selection)
    assert first.total_requested == 0  # nothing published yet
    compaction = with_host.resolve_job_def("compaction").execute_in_process(instance=instance, partition_key="words")
    assert compaction.success
    after = dg.evaluate_automation_conditions(defs=with_host, instance=instance, asset_selection=selection,
                                              cursor=first.cursor)
    assert after.get_requested_partitions(dg.AssetKey("pinecone_mirror")) == {"words"}  # the published one only


def test_mirror_then_comparison_records_figures_and_check(settings: Settings, pinecone_server: PineconeServer,  # noqa: F811
                                                          instance: dg.DagsterInstance, rng: np.random.Generator) -> None:
    configured = _settings(settings, pinecone_server)
    ids = [f"id{n}" for n in range(30)]
    produce_embedding_delta(ids, vectors(rng, 30), collection_name="words", settings=configured)
    ChromaCompactor(settings=configured).compact_pending()
    instance.add_dynamic_partitions("collection", ["words"])
    job = build_definitions(configured).resolve_job_def("pinecone")
    result = job.execute_in_process(instance=instance, run_config=RUN_CONFIG, partition_key="words", raise_on_error=False)
    assert result.success
    [mirrored] = result.asset_materializations_for_node("pinecone_mirror")
    assert mirrored.metadata["deltas_mirrored"].value == 1 and mirrored.metadata["lag_deltas"].value == 0
    assert pinecone_server.ids("words") == set(ids)
    [compared] = result.asset_materializations_for_node("pinecone_comparison")
    figures = {k: v.value for k, v in compared.metadata.items()}
    assert isinstance(compared.metadata["recall_at_k_chroma"], dg.FloatMetadataValue)
    assert figures["recall_at_k_chroma"] == figures["recall_at_k_pinecone"] == figures["overlap_at_k"] == 1.0
    assert figures["queries"] == 10 and figures["ids_only_in_chroma"] == 0 and "recall@5" in figures["summary"]
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["recall_at_least_bar"].passed and checks["mirror_caught_up"].passed
    assert any(k.endswith("/report.json") for k in all_keys(configured, "migration/words/comparisons/"))

    strict = build_definitions(_settings(settings, pinecone_server, pinecone_min_recall=1.01))
    failed = strict.resolve_job_def("pinecone").execute_in_process(instance=instance, run_config=RUN_CONFIG,
                                                                    partition_key="words", raise_on_error=False)
    [check] = [c for c in failed.get_asset_check_evaluations() if c.check_name == "recall_at_least_bar"]
    assert not check.passed and check.metadata["min_recall"].value == 1.01
