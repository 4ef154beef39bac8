"""Sensors evaluated with ``build_sensor_context`` against the moto server's SQS and S3:
the partition adds and run requests they return, and that they delete nothing."""

from typing import Any

import dagster as dg
import numpy as np

from vector_pipeline import produce_embedding_delta
from vector_pipeline.config import Settings
from vector_pipeline.queue import DeltaQueue

from ..conftest import all_keys, vectors


def _evaluate(defs: dg.Definitions, instance: dg.DagsterInstance, name: str) -> Any:
    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(instance=instance, instance_ref=instance.get_ref(), definitions=defs, sensor_name=name,
                                 resources={"vector_pipeline": defs.resources["vector_pipeline"]}) as context:
        return sensor.evaluate_tick(context)


def test_queue_sensor_adds_partitions_and_requests_validation_and_compaction(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    produced = [produce_embedding_delta([f"w{i}"], vectors(rng, 1), settings=settings) for i in range(3)]
    produced.append(produce_embedding_delta(["l0"], vectors(rng, 1), collection_name="lines", settings=settings))
    objects_before = all_keys(settings)
    result = _evaluate(defs, instance, "delta_queue_sensor")
    [add] = result.dynamic_partitions_requests
    expected_keys = {f"{p['collection']}.{p['delta_id']}" for p in produced}
    assert set(add.partition_keys) == expected_keys
    validations = [r for r in result.run_requests if r.job_name == "validate_delta"]
    assert {r.partition_key for r in validations} == expected_keys
    compactions = {r.job_name: r for r in result.run_requests if r.job_name.startswith("compact_")}
    assert set(compactions) == {"compact_words", "compact_lines"}
    words_config = compactions["compact_words"].run_config["ops"]["words__snapshot_candidate"]["config"]
    assert sorted(words_config["delta_keys"]) == sorted(p["delta_key"] for p in produced[:3])
    assert set(words_config["receipt_handles"]) == set(words_config["delta_keys"])
    assert compactions["compact_words"].tags["vector_pipeline/compaction"] == "words"
    # nothing deleted: every message is still in the queue (hidden for the run), every object still there
    assert sum(DeltaQueue(settings).approximate_depth().values()) == 4
    assert all_keys(settings) == objects_before


def test_reconciliation_sensor_finds_deltas_without_messages(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    lost = produce_embedding_delta(["w"], vectors(rng, 1), settings=settings, notify=False)
    result = _evaluate(defs, instance, "delta_reconciliation_sensor")
    [add] = result.dynamic_partitions_requests
    assert add.partition_keys == [f"words.{lost['delta_id']}"]
    [compaction] = [r for r in result.run_requests if r.job_name == "compact_words"]
    assert compaction.run_config["ops"]["words__snapshot_candidate"]["config"]["delta_keys"] == [lost["delta_key"]]


def test_no_compaction_requested_while_one_is_running(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    produce_embedding_delta(["w"], vectors(rng, 1), settings=settings, notify=False)
    job = defs.resolve_job_def("compact_words")
    instance.create_run_for_job(job, status=dg.DagsterRunStatus.STARTED, run_config={})
    result = _evaluate(defs, instance, "delta_reconciliation_sensor")
    assert [r.job_name for r in result.run_requests] == ["validate_delta"]


def test_known_partitions_are_not_added_again(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    produced = produce_embedding_delta(["w"], vectors(rng, 1), settings=settings, notify=False)
    instance.add_dynamic_partitions("delta", [f"words.{produced['delta_id']}"])
    result = _evaluate(defs, instance, "delta_reconciliation_sensor")
    assert result.dynamic_partitions_requests == [] or not result.dynamic_partitions_requests[0].partition_keys
    assert [r.job_name for r in result.run_requests] == ["compact_words"]


def test_empty_queue_skips(defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings) -> None:
    result = _evaluate(defs, instance, "delta_queue_sensor")
    assert not result.run_requests and "no new deltas" in str(result.skip_message)


def test_compaction_is_requested_again_after_a_failed_run(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    produce_embedding_delta(["w"], vectors(rng, 1), settings=settings, notify=False)
    first = _evaluate(defs, instance, "delta_reconciliation_sensor")
    assert "compact_words" in [r.job_name for r in first.run_requests]
    instance.create_run_for_job(defs.resolve_job_def("compact_words"), status=dg.DagsterRunStatus.FAILURE,
                                run_config={})
    again = _evaluate(defs, instance, "delta_reconciliation_sensor")
    assert "compact_words" in [r.job_name for r in again.run_requests]
