"""Crash matrix: a real compactor subprocess is SIGKILLed at every step of a compaction,
then compaction runs again. Whatever the step, the pointer always names a complete version,
the final content is the last-writer-wins state, no delta is lost or applied twice, the merge
state replayed from the version's parts locates exactly its live ids, and the dead holder's
lock is taken over after its TTL. The killed run appends a segment and a state part; at the
steps that write files it also folds the recent tier (consolidating the state parts). A base
fold is killed at each of its steps too (``FOLD_STEPS``), with appends (and a tier merge)
published while it was stopped after writing its base, so the rebase steps run for real."""

import os
import signal

import time

import numpy as np
import pytest

from vector_pipeline import ChromaCompactor, open_snapshot, produce_embedding_delta
from vector_pipeline.config import Settings
from vector_pipeline.compaction.maintenance import fold_segments, merge_tiers
from vector_pipeline.faults import FOLD_STEPS, STEPS
from vector_pipeline.io.lock import CompactionLock, lock_id_for
from vector_pipeline.delta.queue import DeltaQueue
from vector_pipeline.read.reader import close_readers

from vector_pipeline_tests.helpers import vectors
from vector_pipeline_tests.test_reliability.helpers import (assert_each_delta_applied_once, assert_pointer_names_a_complete_version,
                      assert_state_parts_locate_the_live_ids, folds_along_pointer_chain, start_compactor,
                      start_fold, wait_until_stopped)

LOCK_TTL = 3


def _produce(settings: Settings, rng: np.random.Generator, ids: list[str], tag: str, deletes: list[str] | None = None) -> str:
    return produce_embedding_delta(ids, vectors(rng, len(ids)), documents=[f"{i}:{tag}" for i in ids],
                                   delete_ids=deletes, settings=settings)["delta_id"]


FILE_WRITING_STEPS = ("mid_merge", "mid_upload", "after_upload")


@pytest.mark.parametrize("step,fold", [*((step, "append") for step in STEPS),
                                       *((step, "fold_recent") for step in FILE_WRITING_STEPS)])
def test_compactor_killed_at_any_step_converges(settings: Settings, rng: np.random.Generator, step: str,
                                                fold: str) -> None:
    # The collection's segment policy is recorded when its first compaction creates it.
    policy = {"segment_max_count": 2, "segment_fold_ratio": 5.0} if fold == "fold_recent" else {}
    settings = settings.with_overrides(lock_ttl_seconds=LOCK_TTL, **policy)
    delta_ids = {_produce(settings, rng, ["x", "y", "c"], "base")}
    assert ChromaCompactor(settings=settings).compact_pending("words")[0].status == "ok"
    if fold == "fold_recent":  # a recent segment (and state part) for the killed run to fold
        delta_ids.add(_produce(settings, rng, ["y"], "base"))
        assert ChromaCompactor(settings=settings).compact_pending("words")[0].status == "ok"
    delta_ids |= {_produce(settings, rng, ["a", "b"], "d1"),
                  _produce(settings, rng, ["b"], "d2", deletes=["c"]),
                  _produce(settings, rng, ["d", "a"], "d3")}
    victim = start_compactor(settings, "--collection", "words", VECTOR_PIPELINE_FAULT=f"crash:{step}")
    _, stderr = victim.communicate(timeout=120)
    assert victim.returncode == -9, f"the compactor was not killed at {step}: {stderr[-2000:]}"
    assert_pointer_names_a_complete_version(settings)
    time.sleep(LOCK_TTL + 0.5)  # the dead holder's lock expires; its messages become visible again
    taker = CompactionLock(lock_id_for("words"), settings=settings)
    assert taker.acquire(), "the lock of a killed compactor was not taken over after its TTL"
    taker.release()
    for _ in range(2):  # the second pass acks messages that were still in flight during the first
        results = ChromaCompactor(settings=settings).compact_pending("words")
        assert all(r.status in ("ok", "noop") for r in results), results
        assert_pointer_names_a_complete_version(settings)
        time.sleep(LOCK_TTL + 0.5)
    close_readers()
    got = open_snapshot(settings=settings).get_vectors("words", include=["documents"])
    assert dict(zip(got["ids"], got["documents"])) == {"x": "x:base", "y": "y:base", "a": "a:d3", "b": "b:d2",
                                                       "d": "d:d3"}
    assert_each_delta_applied_once(settings, delta_ids)
    assert_state_parts_locate_the_live_ids(settings, set(got["ids"]), delta_ids)
    if fold == "fold_recent":
        assert any(v == "fold_recent" for v in folds_along_pointer_chain(settings))
    assert DeltaQueue(settings).approximate_depth() == {"visible": 0, "in_flight": 0}
    print(f"FIGURE crash injected: SIGKILL at {step} ({fold}); converged, {len(delta_ids)} deltas applied once each")


@pytest.mark.parametrize("step", FOLD_STEPS)
def test_base_fold_killed_at_any_step_loses_no_append(settings: Settings, rng: np.random.Generator, step: str) -> None:
    settings = settings.with_overrides(lock_ttl_seconds=LOCK_TTL, segment_max_count=5, segment_fan_in=2)
    compactor = ChromaCompactor(settings=settings)
    delta_ids = {_produce(settings, rng, ["x", "y", "c"], "base")}
    assert compactor.compact_pending("words")[0].status == "ok"
    delta_ids.add(_produce(settings, rng, ["y", "e"], "r"))
    assert compactor.compact_pending("words")[0].status == "ok"
    fault = f"crash:{step}" if step == "fold_written" else f"pause:fold_written,crash:{step}"
    victim = start_fold(settings, VECTOR_PIPELINE_FAULT=fault)
    if step != "fold_written":
        wait_until_stopped(victim)  # its base is written: appends publish meanwhile
        for tag, ids, deletes in (("d1", ["a", "b"], None), ("d2", ["b"], ["c"]), ("d3", ["d", "a"], ["e"])):
            delta_ids.add(_produce(settings, rng, ids, tag, deletes))
            assert compactor.compact_pending("words")[0].status == "ok"
        os.kill(victim.pid, signal.SIGCONT)
    _, stderr = victim.communicate(timeout=120)
    assert victim.returncode == -9, f"the fold was not killed at {step}: {stderr[-2000:]}"
    assert_pointer_names_a_complete_version(settings)
    time.sleep(LOCK_TTL + 0.5)  # a lock the victim held expires
    assert fold_segments(settings, "words").status in ("ok", "noop")
    delta_ids.add(_produce(settings, rng, ["f"], "after"))
    assert compactor.compact_pending("words")[0].status == "ok"
    close_readers()
    got = open_snapshot(settings=settings).get_vectors("words", include=["documents"])
    expected = {"x": "x:base", "y": "y:r", "f": "f:after"} if step == "fold_written" else \
        {"x": "x:base", "y": "y:r", "a": "a:d3", "b": "b:d2", "d": "d:d3", "f": "f:after"}
    if step == "fold_written":
        expected.update({"c": "c:base", "e": "e:r"})
    assert dict(zip(got["ids"], got["documents"])) == expected
    assert_each_delta_applied_once(settings, delta_ids)
    assert_state_parts_locate_the_live_ids(settings, set(got["ids"]), delta_ids)
    print(f"FIGURE crash injected: SIGKILL at {step} (base fold); converged, every append kept")


@pytest.mark.parametrize("step", FOLD_STEPS)
def test_tier_merge_killed_at_any_step_loses_no_append(settings: Settings, rng: np.random.Generator, step: str) -> None:
    """``fold --tiers`` (what ``compact --watch`` runs in the background) killed at each step,
    with appends that merge no tier published while it was stopped after writing its segment."""
    settings = settings.with_overrides(lock_ttl_seconds=LOCK_TTL, segment_max_count=10, segment_fan_in=2)
    appender = ChromaCompactor(settings=settings, background_tiers=True)
    delta_ids = set()
    for tag, ids in (("base", ["x", "y", "c"]), ("r", ["y", "e"]), ("r2", ["g"])):  # base + a full tier 0
        delta_ids.add(_produce(settings, rng, ids, tag))
        assert appender.compact_pending("words")[0].status == "ok"
    fault = f"crash:{step}" if step == "fold_written" else f"pause:fold_written,crash:{step}"
    victim = start_fold(settings, tiers=True, VECTOR_PIPELINE_FAULT=fault)
    expected = {"x": "x:base", "y": "y:r", "c": "c:base", "e": "e:r", "g": "g:r2"}
    if step != "fold_written":
        wait_until_stopped(victim)  # its segment is written: appends publish meanwhile
        for tag, ids, deletes in (("d1", ["a", "b"], None), ("d2", ["b"], ["c"]), ("d3", ["d", "a"], ["e"])):
            delta_ids.add(_produce(settings, rng, ids, tag, deletes))
            assert appender.compact_pending("words")[0].fold == "append"
        expected = {"x": "x:base", "y": "y:r", "g": "g:r2", "a": "a:d3", "b": "b:d2", "d": "d:d3"}
        os.kill(victim.pid, signal.SIGCONT)
    _, stderr = victim.communicate(timeout=120)
    assert victim.returncode == -9, f"the tier merge was not killed at {step}: {stderr[-2000:]}"
    assert_pointer_names_a_complete_version(settings)
    time.sleep(LOCK_TTL + 0.5)  # a lock the victim held expires
    assert merge_tiers(settings, "words").status == "ok"  # the tiers are still full: merged now
    delta_ids.add(_produce(settings, rng, ["f"], "after"))
    assert appender.compact_pending("words")[0].status == "ok"
    close_readers()
    got = open_snapshot(settings=settings).get_vectors("words", include=["documents"])
    assert dict(zip(got["ids"], got["documents"])) == {**expected, "f": "f:after"}
    assert_each_delta_applied_once(settings, delta_ids)
    assert_state_parts_locate_the_live_ids(settings, set(got["ids"]), delta_ids)
    print(f"FIGURE crash injected: SIGKILL at {step} (tier merge); converged, every append kept")
