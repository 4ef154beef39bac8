"""Concurrent compactors and a paused lock holder, as real processes.

Four compactor processes loop over the same collection while the test keeps producing:
every delta lands exactly once, the pointer chain has one version per number (no lost
update). A compactor stopped with SIGSTOP (pause:after_upload) past its lock's TTL, while
another takes the lock and publishes, fails to publish when resumed and changes nothing
visible."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from vector_pipeline import ChromaCompactor, open_snapshot, produce_embedding_delta
from vector_pipeline.config import Settings
from vector_pipeline.cli.local_aws import stop_process_group
from vector_pipeline.read.reader import close_readers
from vector_pipeline.table.snapshot_store import SnapshotStore
from vector_pipeline.format.version_manifest import version_number

from vector_pipeline_tests.helpers import vectors
from vector_pipeline_tests.test_reliability.helpers import (applied_along_pointer_chain, assert_each_delta_applied_once, compactor_env,
                      start_compactor)

COMPACTORS = int(os.environ.get("VP_RELIABILITY_COMPACTORS", "4"))
ROUNDS = int(os.environ.get("VP_RELIABILITY_ROUNDS", "12"))

LOOP = """
import sys, time
from vector_pipeline.compaction.compactor import ChromaCompactor
compactor = ChromaCompactor()
deadline = time.monotonic() + float(sys.argv[1])
published = 0
while time.monotonic() < deadline:
    for result in compactor.compact_pending("words"):
        published += result.status == "ok"
    time.sleep(0.05)
print(published)
"""


def test_four_compactors_in_a_loop_lose_no_update(settings: Settings, rng: np.random.Generator, tmp_path: Path) -> None:
    settings = settings.with_overrides(lock_ttl_seconds=30)
    workers = []
    for n in range(COMPACTORS):  # every process its own cache, as on separate machines
        env = compactor_env(settings, VECTOR_PIPELINE_CACHE_DIR=str(tmp_path / f"cache{n}"))
        workers.append(subprocess.Popen([sys.executable, "-c", LOOP, str(ROUNDS * 1.5 + 10)], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        start_new_session=True))
    expected: dict[str, str] = {}
    delta_ids = set()
    try:
        for round_number in range(ROUNDS):
            ids = [f"id{(round_number * 3 + i) % 20}" for i in range(5)]
            result = produce_embedding_delta(ids, vectors(rng, 5), documents=[f"r{round_number}"] * 5,
                                             settings=settings)
            expected.update({i: f"r{round_number}" for i in ids})
            delta_ids.add(result["delta_id"])
            time.sleep(1.0)
        published = []
        for worker in workers:
            out, err = worker.communicate(timeout=ROUNDS * 3 + 120)
            assert worker.returncode == 0, err[-2000:]
            published.append(int(out.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            stop_process_group(worker, grace_seconds=5)
    ChromaCompactor(settings=settings).compact_pending("words")  # whatever the loops left
    chain = applied_along_pointer_chain(settings)
    pointer = SnapshotStore(settings).read_pointer("words")
    assert version_number(pointer.version) == len(chain), "one published version per pointer number"
    assert_each_delta_applied_once(settings, delta_ids)
    close_readers()
    got = open_snapshot(settings=settings).get_vectors("words", include=["documents"])
    assert dict(zip(got["ids"], got["documents"])) == expected
    assert sum(published) >= 2, f"the loops published {published}: no concurrency was exercised"
    print(f"FIGURE concurrent compactors: {COMPACTORS} processes, {ROUNDS} deltas, publishes {published}, "
          f"pointer versions {len(chain)}")


def _stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "T"


def test_paused_holder_resumed_after_takeover_cannot_publish(settings: Settings, rng: np.random.Generator,
                                                            tmp_path: Path) -> None:
    settings = settings.with_overrides(lock_ttl_seconds=3)
    produce_embedding_delta(["a"], vectors(rng, 1), documents=["paused"], settings=settings)
    paused = start_compactor(settings, "--collection", "words", VECTOR_PIPELINE_FAULT="pause:after_upload",
                             VECTOR_PIPELINE_CACHE_DIR=str(tmp_path / "paused-cache"))
    try:
        deadline = time.monotonic() + 120
        while not _stopped(paused.pid):
            assert paused.poll() is None and time.monotonic() < deadline, "compactor never reached the pause"
            time.sleep(0.2)
        time.sleep(3.5)  # past the TTL: its heartbeat thread is stopped too
        produce_embedding_delta(["a"], vectors(rng, 1), documents=["live"], settings=settings)
        [live] = ChromaCompactor(settings=settings).compact_pending("words")
        assert live.status == "ok"
        before = SnapshotStore(settings).read_pointer("words")
        os.kill(paused.pid, signal.SIGCONT)
        out, err = paused.communicate(timeout=120)
    finally:
        stop_process_group(paused, grace_seconds=5)
    assert paused.returncode == 1, err[-2000:]
    assert '"status": "failed"' in out and ("conflict" in out or "lock lost" in out)
    after = SnapshotStore(settings).read_pointer("words")
    assert (after.version, after.etag) == (before.version, before.etag)
    close_readers()
    assert open_snapshot(settings=settings).get_vectors("words", include=["documents"])["documents"] == ["live"]
