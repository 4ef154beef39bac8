"""Sensors evaluated with ``build_sensor_context`` against the moto server's SQS and S3:
one runless ``delta[c]`` event and at most one compaction request per collection per tick,
no partition per delta, every message deleted in the tick that read it, malformed ones
dead-lettered; the reconciliation sensor finds deltas whose messages were lost.

Not covered here: the daemon applying a tick's result (test_ui.py runs `dagster dev`)."""

import json
import time
from typing import Any

import dagster as dg
import numpy as np

from vector_pipeline import produce_embedding_delta
from vector_pipeline.config import Settings
from vector_pipeline.delta.queue import DeltaQueue
from vector_pipeline.format.keys import new_delta_id
from vector_pipeline.io.aws import client
from vector_pipeline.table.catalog import CollectionCatalog

from vector_pipeline_tests.helpers import all_keys, vectors
from vector_pipeline_tests.test_reliability.crafting import dead_letter_reasons


def _evaluate(defs: dg.Definitions, instance: dg.DagsterInstance, name: str, cursor: str | None = None) -> Any:
    sensor = defs.resolve_sensor_def(name)
    with dg.build_sensor_context(instance=instance, instance_ref=instance.get_ref(), definitions=defs, sensor_name=name,
                                 cursor=cursor, resources={"vector_pipeline": defs.resources["vector_pipeline"]}) as context:
        return sensor.evaluate_tick(context)


def _compactions(result: Any) -> dict[str, dg.RunRequest]:
    return {r.partition_key: r for r in result.run_requests if r.job_name == "compaction"}


def _events(result: Any) -> dict[str, dict[str, Any]]:
    return {e.partition: {k: v.value for k, v in e.metadata.items()} for e in result.asset_events}


def test_a_tick_of_hundreds_of_messages_requests_one_compaction_per_collection_and_empties_the_queue(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator,
        monkeypatch: Any) -> None:
    from vector_pipeline.defs import sensors

    # moto's ReceiveMessage takes ~1 s a call on a busy CI machine (real SQS: ~20 ms): give this
    # one tick the time to read all 303 messages (what a tick does with them is under test).
    monkeypatch.setattr(sensors, "RECEIVE_DEADLINE_SECONDS", 600)
    collections = ["words", "lines", "receipts"]
    queue = DeltaQueue(settings)
    produced = [produce_embedding_delta([f"{c}0"], vectors(rng, 1), collection_name=c, settings=settings)
                for c in collections]
    # Hundreds of announcements (a few real deltas, the rest notifications naming deltas
    # S3 does not hold: the tick must not care which), spread over the collections.
    for start in range(0, 300, 10):
        client("sqs", settings).send_message_batch(QueueUrl=queue.url, Entries=[
            {"Id": str(i), "MessageBody": json.dumps({"delta_key": f"delta/{collections[(start + i) % 3]}/"
                                                                   f"01K{start + i:023d}/", "upsert_count": 10})}
            for i in range(10)])
    objects_before = all_keys(settings)
    result = _evaluate(defs, instance, "delta_queue_sensor")
    assert set(_compactions(result)) == set(collections) and len(result.run_requests) <= len(collections)
    events = _events(result)
    assert set(events) == set(collections)
    assert sum(e["deltas_in_batch"] for e in events.values()) == 303
    assert all(e["backlog"] == 1 and e["source"] == "queue" for e in events.values())  # S3 is the truth
    words = events["words"]
    assert words["vectors"] == 1 + 100 * 10 and words["bytes"] > 0 and words["oldest_pending_age_s"] >= 0
    assert words["first_delta_id"] <= words["last_delta_id"]
    adds = {a.partitions_def_name: sorted(a.partition_keys) for a in result.dynamic_partitions_requests}
    assert adds == {"collection": sorted(collections)}  # no partition per delta
    assert queue.approximate_depth() == {"visible": 0, "in_flight": 0}
    cursor = json.loads(result.cursor)
    assert (cursor["messages_seen"], cursor["messages_deleted"]) == (303, 303)
    assert all_keys(settings) == objects_before  # the sensor changes nothing in the bucket
    assert {p["delta_key"] for p in produced} <= {k.rsplit("delta.tar", 1)[0] for k in all_keys(settings, "delta/")}


def test_known_collections_get_events_but_no_partition_adds(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    instance.add_dynamic_partitions("collection", ["words"])
    produce_embedding_delta(["w"], vectors(rng, 1), settings=settings)
    result = _evaluate(defs, instance, "delta_queue_sensor")
    assert not result.dynamic_partitions_requests
    assert set(_events(result)) == {"words"} and set(_compactions(result)) == {"words"}


def test_no_compaction_is_requested_for_deltas_already_applied(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    from vector_pipeline import ChromaCompactor

    produced = produce_embedding_delta(["w"], vectors(rng, 1), settings=settings)
    ChromaCompactor(settings=settings).compact_deltas([produced["delta_key"]], "words")  # applied, archived
    result = _evaluate(defs, instance, "delta_queue_sensor")
    assert _compactions(result) == {} and DeltaQueue(settings).approximate_depth() == {"visible": 0, "in_flight": 0}
    assert _events(result)["words"]["backlog"] == 0


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
    event = _events(result)["words"]
    assert event["source"] == "reconciliation" and event["first_delta_id"] == lost["delta_id"]
    assert set(_compactions(result)) == {"words"}


def test_no_compaction_requested_while_one_is_running_for_that_collection(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    produce_embedding_delta(["w"], vectors(rng, 1), settings=settings, notify=False)
    produce_embedding_delta(["l"], vectors(rng, 1), collection_name="lines", settings=settings, notify=False)
    instance.add_dynamic_partitions("collection", ["words"])
    instance.create_run_for_job(defs.resolve_job_def("compaction"), status=dg.DagsterRunStatus.STARTED, run_config={},
                                tags={"dagster/partition": "words"})
    result = _evaluate(defs, instance, "delta_reconciliation_sensor")
    assert set(_compactions(result)) == {"lines"}
    assert set(_events(result)) == {"words", "lines"}  # the backlog is reported all the same


def test_collections_outside_the_allow_list_are_quarantined_not_compacted(
        instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    from vector_pipeline.defs import build_definitions

    allow = settings.with_overrides(collections=("words",))
    produced = produce_embedding_delta(["x"], vectors(rng, 1), collection_name="receipts", settings=allow, notify=False)
    result = _evaluate(build_definitions(allow), instance, "delta_reconciliation_sensor")
    assert _compactions(result) == {} and _events(result) == {}
    assert all_keys(settings, produced["delta_key"]) == []
    assert any(k.endswith("reason.json") for k in all_keys(settings, f"quarantine/receipts/{produced['delta_id']}/"))


def test_empty_queue_skips(defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings) -> None:
    result = _evaluate(defs, instance, "delta_queue_sensor")
    assert not result.run_requests and "no new deltas" in str(result.skip_message)


def test_compaction_is_requested_again_after_a_failed_run(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    produce_embedding_delta(["w"], vectors(rng, 1), settings=settings, notify=False)
    instance.add_dynamic_partitions("collection", ["words"])
    instance.create_run_for_job(defs.resolve_job_def("compaction"), status=dg.DagsterRunStatus.FAILURE,
                                run_config={}, tags={"dagster/partition": "words"})
    assert "words" in _compactions(_evaluate(defs, instance, "delta_reconciliation_sensor"))


def _published(settings: Settings, rng: np.random.Generator, collection: str, **cadence: Any) -> None:
    """``collection`` with a published version and these cadence settings in its catalog record."""
    from vector_pipeline import ChromaCompactor

    first = produce_embedding_delta([f"{collection}-0"], vectors(rng, 1), collection_name=collection,
                                    settings=settings, notify=False)
    ChromaCompactor(settings=settings).compact_deltas([first["delta_key"]], collection)
    CollectionCatalog(settings).update(collection, **cadence)


def _old_delta(settings: Settings, rng: np.random.Generator, collection: str, seconds_ago: float,
               notify: bool = True) -> dict[str, Any]:
    """A delta whose id says it was produced ``seconds_ago`` (the age the cadence reads from ids)."""
    minted = new_delta_id(int((time.time() - seconds_ago) * 1000))
    return produce_embedding_delta([f"{collection}-{minted}"], vectors(rng, 1), collection_name=collection,
                                   settings=settings, delta_id=minted, notify=notify)


def test_the_queue_sensor_follows_each_collections_cadence(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    """One tick, three published collections: within target and bound → no run (the event is
    reported, with the reason); past its freshness target → a compaction; past backlog_max_deltas
    → a compaction. The reason is on the runs' tags, the events, the skip reason and the cursor."""
    _published(settings, rng, "words", freshness_target_seconds=3600, backlog_max_deltas=500)
    _published(settings, rng, "lines", freshness_target_seconds=60, backlog_max_deltas=500)
    _published(settings, rng, "receipts", freshness_target_seconds=3600, backlog_max_deltas=2)
    _old_delta(settings, rng, "words", seconds_ago=60)  # a minute old of an hour's target
    _old_delta(settings, rng, "lines", seconds_ago=120)  # past its minute
    for _ in range(3):
        produce_embedding_delta(["r"], vectors(rng, 1), collection_name="receipts", settings=settings)
    result = _evaluate(defs, instance, "delta_queue_sensor")
    compactions = _compactions(result)
    assert set(compactions) == {"lines", "receipts"}
    assert compactions["lines"].tags["vector_pipeline/cadence"] == "freshness"
    assert compactions["receipts"].tags["vector_pipeline/cadence"] == "backlog"
    assert compactions["receipts"].tags["vector_pipeline/pending_deltas"] == "3"
    events = _events(result)
    assert events["words"]["backlog"] == 1 and events["words"]["cadence"].startswith("accumulate")
    assert events["lines"]["cadence"].startswith("freshness")
    cursor = json.loads(result.cursor)
    assert cursor["cadence"]["words"].startswith("accumulate") and set(cursor["deferred"]) == {"words"}
    # Listed again when the target less the lead (half the target before any run) is near, not before.
    assert cursor["deferred"]["words"] > time.time() + 1000
    assert DeltaQueue(settings).approximate_depth() == {"visible": 0, "in_flight": 0}


def test_a_collection_left_to_accumulate_reports_its_delta_and_says_why_it_waits(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    _published(settings, rng, "words", freshness_target_seconds=3600)
    produce_embedding_delta(["w"], vectors(rng, 1), settings=settings)
    result = _evaluate(defs, instance, "delta_queue_sensor")
    assert not result.run_requests and _events(result)["words"]["backlog"] == 1
    assert str(result.skip_message).startswith("words: accumulate (oldest 0s of 3600s, due in ")


def test_a_deferred_collection_is_listed_again_once_due_without_a_new_message(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    """The queue sensor's cursor carries the collections left to accumulate; once one's time
    comes, a tick with an empty queue lists it and requests its compaction."""
    _published(settings, rng, "words", freshness_target_seconds=60)
    _old_delta(settings, rng, "words", seconds_ago=120, notify=False)
    result = _evaluate(defs, instance, "delta_queue_sensor", cursor=json.dumps({"deferred": {"words": time.time() - 1}}))
    assert _compactions(result)["words"].tags["vector_pipeline/cadence"] == "freshness"
    assert json.loads(result.cursor)["deferred"] == {}


def test_a_base_fold_due_in_the_quiet_window_is_requested_as_a_base_fold_run(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    """A window open around the clock (every minute, for a minute) and recent segments on the
    base: the reconciliation sensor requests one ``base_fold`` run, tagged with the reason,
    and none while it is queued."""
    from vector_pipeline import ChromaCompactor

    _published(settings, rng, "words", fold_window="* * * * *", fold_window_minutes=1)
    appended = produce_embedding_delta(["w1"], vectors(rng, 1), settings=settings, notify=False)
    ChromaCompactor(settings=settings).compact_deltas([appended["delta_key"]], "words")  # a recent segment
    instance.add_dynamic_partitions("collection", ["words"])
    result = _evaluate(defs, instance, "delta_reconciliation_sensor")
    folds = [r for r in result.run_requests if r.job_name == "base_fold"]
    assert [(r.partition_key, r.tags["vector_pipeline/fold_reason"]) for r in folds] == [("words", "quiet_window")]
    assert _compactions(result) == {} and _events(result) == {}  # nothing pending: no event, no compaction
    instance.create_run_for_job(defs.resolve_job_def("base_fold"), status=dg.DagsterRunStatus.STARTED,
                                run_config={}, tags={"dagster/partition": "words"})
    assert not _evaluate(defs, instance, "delta_reconciliation_sensor").run_requests


def test_deltas_behind_a_running_compaction_are_taken_up_once_it_ends_without_a_new_message(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    """A delta announced while its collection's compaction runs gets no request; the cursor
    carries the collection, unlisted while the run lasts, and the first tick after the run
    ended requests its compaction from an empty queue."""
    _published(settings, rng, "words", freshness_target_seconds=60)
    _old_delta(settings, rng, "words", seconds_ago=120)  # announced, and past its target
    instance.add_dynamic_partitions("collection", ["words"])
    running = instance.create_run_for_job(defs.resolve_job_def("compaction"), status=dg.DagsterRunStatus.STARTED,
                                          run_config={}, tags={"dagster/partition": "words"})
    cursor = None
    for _ in range(2):  # the tick that read the message, then one with an empty queue: the run still going
        result = _evaluate(defs, instance, "delta_queue_sensor", cursor)
        assert not result.run_requests and "words" in json.loads(result.cursor)["deferred"]
        cursor = result.cursor
    instance.report_run_failed(running)  # the run has ended (here: failed; the delta is still pending)
    result = _evaluate(defs, instance, "delta_queue_sensor", cursor)
    assert _compactions(result)["words"].tags["vector_pipeline/cadence"] == "freshness"
    assert json.loads(result.cursor)["deferred"] == {}


def test_a_tier_at_the_fan_in_is_merged_by_a_base_fold_run_with_tiers(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings, rng: np.random.Generator) -> None:
    """The compaction job's appends leave tier merges to a ``base_fold`` run with ``tiers: true``:
    the tick that decides a collection whose published version has a full tier requests one."""
    from vector_pipeline import ChromaCompactor

    _published(settings, rng, "words", segment_fan_in=2, freshness_target_seconds=3600)
    appender = ChromaCompactor(settings=settings, background_tiers=True)
    for number in range(2):  # two tier-0 segments: the fan-in
        appender.compact_deltas([_old_delta(settings, rng, "words", 0, notify=False)["delta_key"]], "words")
    produce_embedding_delta(["w"], vectors(rng, 1), settings=settings)  # announced: the tick decides words
    folds = [r for r in _evaluate(defs, instance, "delta_queue_sensor").run_requests if r.job_name == "base_fold"]
    assert [(r.partition_key, r.tags["vector_pipeline/fold_reason"], r.run_config) for r in folds] == [
        ("words", "tiers", {"ops": {"fold_base_off_the_lock": {"config": {"tiers": True}}}})]
