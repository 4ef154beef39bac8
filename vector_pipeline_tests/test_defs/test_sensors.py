"""Sensors evaluated with ``build_sensor_context`` against the moto server's SQS and S3:
the partition adds and run requests they return, which messages they delete (only those
already acted on, and malformed ones), and that they never change the bucket."""

import json
from typing import Any

import dagster as dg
import numpy as np

from vector_pipeline import ChromaCompactor, produce_embedding_delta
from vector_pipeline.io.aws import client
from vector_pipeline.config import Settings
from vector_pipeline.delta.queue import DeltaQueue

from ..conftest import all_keys, vectors
from ..test_reliability.crafting import dead_letter_reasons


def _evaluate(defs: dg.Definitions, instance: dg.DagsterInstance, name: str) -> Any:
    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(instance=instance, instance_ref=instance.get_ref(), definitions=defs, sensor_name=name,
                                 resources={"vector_pipeline": defs.resources["vector_pipeline"]}) as context:
        return sensor.evaluate_tick(context)


def _compactions(result: Any) -> dict[str, dg.RunRequest]:
    return {r.partition_key: r for r in result.run_requests if r.job_name == "compaction"}


def test_queue_sensor_adds_partitions_and_requests_validation_and_one_compaction_per_collection(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    produced = [produce_embedding_delta([f"w{i}"], vectors(rng, 1), settings=settings) for i in range(3)]
    produced.append(produce_embedding_delta(["l0"], vectors(rng, 1), collection_name="lines", settings=settings))
    objects_before = all_keys(settings)
    result = _evaluate(defs, instance, "delta_queue_sensor")
    adds = {a.partitions_def_name: a.partition_keys for a in result.dynamic_partitions_requests}
    expected_keys = {f"{p['collection']}.{p['delta_id']}" for p in produced}
    assert set(adds["delta"]) == expected_keys
    assert set(adds["collection"]) == {"words", "lines"}
    validations = [r for r in result.run_requests if r.job_name == "validate_delta"]
    assert {r.partition_key for r in validations} == expected_keys
    assert set(_compactions(result)) == {"words", "lines"}
    # nothing deleted yet: the partitions do not exist until the tick is applied
    assert sum(DeltaQueue(settings).approximate_depth().values()) == 4
    assert all_keys(settings) == objects_before


def test_queue_sensor_deletes_a_message_once_its_partition_exists(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    produced = produce_embedding_delta(["w"], vectors(rng, 1), settings=settings)
    instance.add_dynamic_partitions("delta", [f"words.{produced['delta_id']}"])  # a tick that ran before
    result = _evaluate(defs, instance, "delta_queue_sensor")
    assert DeltaQueue(settings).approximate_depth() == {"visible": 0, "in_flight": 0}
    assert set(_compactions(result)) == {"words"}  # still pending: the run that saw its partition may have missed it
    assert json.loads(result.cursor)["messages_deleted"] == 1
    assert all_keys(settings, produced["delta_key"]) != []  # the delta itself waits under delta/ for its run


def test_no_compaction_is_requested_for_deltas_already_applied(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    produced = produce_embedding_delta(["w"], vectors(rng, 1), settings=settings)
    instance.add_dynamic_partitions("delta", [f"words.{produced['delta_id']}"])
    ChromaCompactor(settings=settings).compact_deltas([produced["delta_key"]], "words")  # applied, archived
    result = _evaluate(defs, instance, "delta_queue_sensor")
    assert _compactions(result) == {} and DeltaQueue(settings).approximate_depth() == {"visible": 0, "in_flight": 0}


def test_queue_sensor_dead_letters_a_malformed_message(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings) -> None:
    queue = DeltaQueue(settings)
    client("sqs", settings).send_message(QueueUrl=queue.url, MessageBody="not json")
    _evaluate(defs, instance, "delta_queue_sensor")
    assert queue.approximate_depth() == {"visible": 0, "in_flight": 0}
    assert list(dead_letter_reasons(settings)) == ["not json"]


def test_reconciliation_sensor_finds_deltas_without_messages(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    lost = produce_embedding_delta(["w"], vectors(rng, 1), settings=settings, notify=False)
    result = _evaluate(defs, instance, "delta_reconciliation_sensor")
    adds = {a.partitions_def_name: a.partition_keys for a in result.dynamic_partitions_requests}
    assert adds["delta"] == [f"words.{lost['delta_id']}"]
    assert set(_compactions(result)) == {"words"}


def test_no_compaction_requested_while_one_is_running_for_that_collection(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    produce_embedding_delta(["w"], vectors(rng, 1), settings=settings, notify=False)
    produce_embedding_delta(["l"], vectors(rng, 1), collection_name="lines", settings=settings, notify=False)
    instance.add_dynamic_partitions("collection", ["words"])
    job = defs.resolve_job_def("compaction")
    instance.create_run_for_job(job, status=dg.DagsterRunStatus.STARTED, run_config={},
                                tags={"dagster/partition": "words"})
    result = _evaluate(defs, instance, "delta_reconciliation_sensor")
    assert set(_compactions(result)) == {"lines"}


def test_known_partitions_are_not_added_again(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    produced = produce_embedding_delta(["w"], vectors(rng, 1), settings=settings, notify=False)
    instance.add_dynamic_partitions("delta", [f"words.{produced['delta_id']}"])
    instance.add_dynamic_partitions("collection", ["words"])
    result = _evaluate(defs, instance, "delta_reconciliation_sensor")
    assert not result.dynamic_partitions_requests
    assert [r.job_name for r in result.run_requests] == ["compaction"]


def test_collections_outside_the_allow_list_are_not_compacted(
        instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    from vector_pipeline.defs import build_definitions

    allow = settings.with_overrides(collections=("words",))
    produce_embedding_delta(["x"], vectors(rng, 1), collection_name="receipts", settings=allow, notify=False)
    result = _evaluate(build_definitions(allow), instance, "delta_reconciliation_sensor")
    assert _compactions(result) == {}
    assert [r.job_name for r in result.run_requests] == ["validate_delta"]  # which quarantines it, with the reason


def test_empty_queue_skips(defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings) -> None:
    result = _evaluate(defs, instance, "delta_queue_sensor")
    assert not result.run_requests and "no new deltas" in str(result.skip_message)


def test_compaction_is_requested_again_after_a_failed_run(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    produce_embedding_delta(["w"], vectors(rng, 1), settings=settings, notify=False)
    first = _evaluate(defs, instance, "delta_reconciliation_sensor")
    assert "words" in _compactions(first)
    instance.add_dynamic_partitions("collection", ["words"])
    instance.create_run_for_job(defs.resolve_job_def("compaction"), status=dg.DagsterRunStatus.FAILURE,
                                run_config={}, tags={"dagster/partition": "words"})
    again = _evaluate(defs, instance, "delta_reconciliation_sensor")
    assert "words" in _compactions(again)


def test_queue_sensor_lists_no_delta_prefix_of_a_collection_already_compacting(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    """Deleting an acted-on message lists ``delta/<c>/`` only where a compaction could be
    requested: with one queued or running for c, the tick requests none, so it lists nothing."""
    produced = produce_embedding_delta(["w"], vectors(rng, 1), settings=settings)
    instance.add_dynamic_partitions("delta", [f"words.{produced['delta_id']}"])
    instance.add_dynamic_partitions("collection", ["words"])
    instance.create_run_for_job(defs.resolve_job_def("compaction"), status=dg.DagsterRunStatus.STARTED,
                                run_config={}, tags={"dagster/partition": "words"})
    listed: list[str] = []

    def record(event_name: str = "", **_: Any) -> None:
        listed.append(event_name)

    s3 = client("s3", settings)
    s3.meta.events.register("before-send.s3.ListObjectsV2", record)
    try:
        result = _evaluate(defs, instance, "delta_queue_sensor")
    finally:
        s3.meta.events.unregister("before-send.s3.ListObjectsV2", record)
    assert listed == [] and _compactions(result) == {}
    assert json.loads(result.cursor)["messages_deleted"] == 1
