"""Queue faults: duplicate messages, out-of-order delivery, a delta older than one already
applied arriving late, a message for a delta that does not exist (yet, or ever), lost
messages and redelivery after the visibility timeout. Every path converges to the same
final state as a clean run; afterwards every object in the bucket is encrypted."""

import time
from datetime import datetime, timedelta, timezone

import numpy as np

from vector_pipeline import ChromaCompactor, open_snapshot, produce_embedding_delta
from vector_pipeline.io.aws import client
from vector_pipeline.config import Settings
from vector_pipeline.format.keys import delta_key_for, new_delta_id
from vector_pipeline.delta.queue import DeltaQueue
from vector_pipeline.read.reader import close_readers

from ..conftest import all_keys, vectors
from .helpers import assert_each_delta_applied_once

EXPECTED = {"a": "a3", "b": "b2", "d": "d4"}  # c deleted by delta 3 after delta 1 wrote it


def _history(settings: Settings, rng: np.random.Generator) -> list[dict]:
    """Four deltas, produced in this order (delta ids grow with it); messages not sent yet."""
    steps = [(["a", "b", "c"], None, "1"), (["b"], None, "2"), (["a"], ["c", "d"], "3"), (["d"], None, "4")]
    return [produce_embedding_delta(ids, vectors(rng, len(ids)), documents=[f"{i}{tag}" for i in ids],
                                    delete_ids=deletes, settings=settings, notify=False) for ids, deletes, tag in steps]


def _send(settings: Settings, produced: dict) -> None:
    DeltaQueue(settings).send({k: produced[k] for k in ("delta_key", "collection", "delta_id")})


def _final(settings: Settings) -> dict[str, str]:
    close_readers()
    got = open_snapshot(settings=settings).get_vectors("words", include=["documents"])
    return dict(zip(got["ids"], got["documents"]))


def _drain(settings: Settings, rounds: int = 3) -> None:
    for _ in range(rounds):
        for result in ChromaCompactor(settings=settings).compact_pending("words", reconcile=False):
            assert result.status in ("ok", "noop"), result
        time.sleep(1.2)


def test_duplicates_and_out_of_order_delivery_converge(settings: Settings, rng: np.random.Generator) -> None:
    settings = settings.with_overrides(lock_ttl_seconds=1)
    produced = _history(settings, rng)
    for index in (3, 1, 1, 0, 2, 3, 0):  # reversed-ish, with duplicates
        _send(settings, produced[index])
    _drain(settings)
    assert _final(settings) == EXPECTED
    assert_each_delta_applied_once(settings, {p["delta_id"] for p in produced})
    assert DeltaQueue(settings).approximate_depth() == {"visible": 0, "in_flight": 0}


def test_late_older_delta_keeps_last_writer_wins_including_deletes(settings: Settings, rng: np.random.Generator) -> None:
    settings = settings.with_overrides(lock_ttl_seconds=1)
    produced = _history(settings, rng)
    for index in (1, 2, 3):
        _send(settings, produced[index])
    _drain(settings, rounds=1)
    _send(settings, produced[0])  # lost for hours, then delivered
    _drain(settings, rounds=1)
    assert _final(settings) == EXPECTED  # delta 1 must not revive c nor overwrite a and b


def test_lost_messages_are_found_by_reconciliation(settings: Settings, rng: np.random.Generator) -> None:
    produced = _history(settings, rng)
    _send(settings, produced[2])  # the other three messages were lost
    [result] = ChromaCompactor(settings=settings).compact_pending("words")  # reconcile=True lists delta/
    assert result.status == "ok" and result.deltas_processed == 4
    assert _final(settings) == EXPECTED


def test_redelivery_after_visibility_timeout_is_a_noop(settings: Settings, rng: np.random.Generator) -> None:
    settings = settings.with_overrides(lock_ttl_seconds=1)
    produced = _history(settings, rng)
    for p in produced:
        _send(settings, p)
    queue = DeltaQueue(settings)
    stale, _ = queue.receive(max_messages=10, visibility_timeout=1)  # a consumer that died holding them
    assert len(stale) == 4
    time.sleep(1.2)
    _drain(settings, rounds=1)
    for p in produced:  # the producer retried its sends, too
        _send(settings, p)
    _drain(settings, rounds=2)
    assert _final(settings) == EXPECTED
    assert_each_delta_applied_once(settings, {p["delta_id"] for p in produced})


def test_message_for_a_delta_that_does_not_exist_yet_or_ever(settings: Settings, rng: np.random.Generator) -> None:
    settings = settings.with_overrides(lock_ttl_seconds=1)
    produced = _history(settings, rng)
    not_yet = new_delta_id()
    never = new_delta_id(int((datetime.now(timezone.utc) - timedelta(hours=1)).timestamp() * 1000))
    queue = DeltaQueue(settings)
    for delta_id in (not_yet, never):
        queue.send({"delta_key": delta_key_for("words", delta_id), "collection": "words", "delta_id": delta_id})
    for p in produced:
        _send(settings, p)
    [result] = ChromaCompactor(settings=settings).compact_pending("words", reconcile=False)
    assert result.status == "ok" and result.deltas_processed == 4
    assert result.missing == [delta_key_for("words", not_yet)]  # may still be uploading: left for later
    assert "no manifest" in result.quarantined[delta_key_for("words", never)]
    assert _final(settings) == EXPECTED
    assert queue.approximate_depth()["visible"] + queue.approximate_depth()["in_flight"] == 1


def test_every_object_written_by_a_whole_run_is_encrypted(settings: Settings, rng: np.random.Generator) -> None:
    produced = _history(settings, rng)
    for p in produced:
        _send(settings, p)
    ChromaCompactor(settings=settings).compact_pending("words")
    produce_embedding_delta(["x"], vectors(rng, 1, dimension=3), settings=settings)  # poison: quarantined
    ChromaCompactor(settings=settings).compact_pending("words")
    s3 = client("s3", settings)
    keys = all_keys(settings)
    assert any(k.startswith("archive/") for k in keys) and any(k.startswith("quarantine/") for k in keys)
    assert any(k.startswith("snapshot/") for k in keys)
    unencrypted = [k for k in keys if s3.head_object(Bucket=settings.vectors_bucket, Key=k).get(
        "ServerSideEncryption") != "AES256"]
    assert unencrypted == []
    print(f"FIGURE objects checked for encryption: {len(keys)}")
