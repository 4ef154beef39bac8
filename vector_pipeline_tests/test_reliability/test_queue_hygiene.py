"""Queue hygiene with many collections: several `vector-pipeline compact` processes at once,
producers adding a delta per collection per round, and malformed messages planted. Every
collection ends equal to its model, the dead-letter queue holds exactly the malformed
messages (no valid message is ever dead-lettered), and the queue is empty after a quiet
round. CI runs it small; `./dev reliability` runs the issue's counts (40 collections, 7
rounds, 3 processes). Not covered: the Dagster sensor path (test_defs/test_sensors.py)."""

import os

import numpy as np

from vector_pipeline import open_snapshot, produce_embedding_delta
from vector_pipeline.io.aws import client
from vector_pipeline.config import Settings
from vector_pipeline.delta.queue import DeltaQueue
from vector_pipeline.read.reader import close_readers

from ..conftest import all_keys, vectors
from .crafting import dead_letter_reasons
from .helpers import start_compactor

COLLECTIONS = int(os.environ.get("VP_HYGIENE_COLLECTIONS", "8"))
ROUNDS = int(os.environ.get("VP_HYGIENE_ROUNDS", "4"))  # deltas in every round but the last
PROCESSES = int(os.environ.get("VP_HYGIENE_PROCESSES", "3"))
MALFORMED = ['{"delta_key": "delta/c00/../../etc/"}', "not json at all"]


def _round_of_compactors(settings: Settings) -> list[str]:
    workers = [start_compactor(settings) for _ in range(PROCESSES)]
    outputs = []
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode in (0, 75), err[-2000:]  # 75: a collection was busy (another process had it)
        outputs.append(out)
    return outputs


def test_many_collections_and_concurrent_compactors_dead_letter_only_malformed_messages(
        settings: Settings, rng: np.random.Generator) -> None:
    names = [f"c{n:02d}" for n in range(COLLECTIONS)]
    settings = settings.with_overrides(collections=tuple(names), lock_ttl_seconds=30)
    model: dict[str, dict[str, str]] = {name: {} for name in names}
    sqs, queue = client("sqs", settings), DeltaQueue(settings)
    for round_number in range(ROUNDS):
        if round_number < ROUNDS - 1:
            for name in names:
                ids = [f"{name}-{(round_number + k) % 4}" for k in range(2)]
                doomed = [f"{name}-{(round_number + 2) % 4}"] if round_number % 2 else None
                produce_embedding_delta(ids, vectors(rng, 2), documents=[f"r{round_number}"] * 2,
                                        delete_ids=doomed, collection_name=name, settings=settings)
                model[name].update({i: f"r{round_number}" for i in ids})
                for gone in doomed or []:
                    model[name].pop(gone, None)
        if round_number == 0:
            for body in MALFORMED:
                sqs.send_message(QueueUrl=queue.url, MessageBody=body)
        _round_of_compactors(settings)

    close_readers()
    for name in names:
        got = open_snapshot(name, settings=settings).get_vectors(name, include=["documents"])
        assert dict(zip(got["ids"], got["documents"])) == model[name], name
    assert all_keys(settings, "delta/") == []
    assert sorted(dead_letter_reasons(settings)) == sorted(["delta/c00/../../etc/", "not json at all"])
    assert queue.approximate_depth() == {"visible": 0, "in_flight": 0}
    print(f"FIGURE queue hygiene: {COLLECTIONS} collections, {ROUNDS} rounds, {PROCESSES} processes; "
          f"dead-lettered {len(MALFORMED)} (the malformed ones), queue empty")

