"""The dual-write mirror: deltas the published snapshot applied reach Pinecone (upserts,
updates, deletes; the winning write of each id only, so a late delta cannot overwrite a
newer value); a Pinecone outage leaves the S3 path untouched and the watermark behind, and
the next run catches up with nothing lost; the lag shows in ``status``.

Not covered here: the Dagster asset around it (test_defs/test_pinecone_assets.py).
"""

from __future__ import annotations

import numpy as np

from vector_pipeline import ChromaCompactor, open_snapshot, produce_embedding_delta
from vector_pipeline.config import Settings
from vector_pipeline.format.keys import new_delta_id
from vector_pipeline.migration.mirror import MirrorOutcome, mirror
from vector_pipeline.migration.pinecone_client import PineconeIndex
from vector_pipeline.cli.status import collection_status

from ..conftest import vectors
from ..pinecone_server import PineconeServer


def _quiet(_: str) -> None:
    pass


def _snapshot_content(settings: Settings) -> dict[str, tuple]:
    got = open_snapshot("words", settings=settings).get_vectors("words", include=["embeddings", "documents"])
    return {i: (tuple(np.round(e, 5)), d) for i, e, d in zip(got["ids"], got["embeddings"], got["documents"])}


def _pinecone_content(settings: Settings) -> dict[str, tuple]:
    index = PineconeIndex(settings)
    records = [r for page in index.list_ids("words") for r in index.fetch("words", page)]
    return {r.id: (tuple(np.round(r.values, 5)), r.metadata.get("text")) for r in records}


def _produce(settings: Settings, rng: np.random.Generator, ids: list[str], **extra: object) -> None:
    produce_embedding_delta(ids, vectors(rng, len(ids)), documents=[f"doc {i} {rng.random():.3f}" for i in ids],
                            collection_name="words", settings=settings, **extra)


def test_mirror_sends_upserts_updates_and_deletes(pinecone_settings: Settings, rng: np.random.Generator) -> None:
    settings = pinecone_settings
    compactor = ChromaCompactor(settings=settings)
    _produce(settings, rng, [f"a{n}" for n in range(6)])
    _produce(settings, rng, [f"b{n}" for n in range(4)])
    compactor.compact_pending()
    first = mirror(settings, "words", say=_quiet)
    assert first.outcome is MirrorOutcome.CAUGHT_UP and first.deltas_mirrored == 2 and first.lag_deltas == 0
    assert _pinecone_content(settings) == _snapshot_content(settings)

    _produce(settings, rng, ["a0", "a1"], delete_ids=["b0", "a5"])  # updates and deletes
    compactor.compact_pending()
    second = mirror(settings, "words", say=_quiet)
    assert (second.deltas_mirrored, second.upserts, second.deletes) == (1, 2, 2)
    assert _pinecone_content(settings) == _snapshot_content(settings)
    assert mirror(settings, "words", say=_quiet).outcome is MirrorOutcome.UP_TO_DATE


def test_a_late_delta_does_not_overwrite_a_newer_value(pinecone_settings: Settings, rng: np.random.Generator) -> None:
    settings = pinecone_settings
    compactor = ChromaCompactor(settings=settings)
    early_id = new_delta_id()  # the producer that started first ...
    _produce(settings, rng, ["x", "y"])  # ... loses the race: a later delta lands and is mirrored first
    compactor.compact_pending()
    mirror(settings, "words", say=_quiet)
    produce_embedding_delta(["x", "z"], vectors(rng, 2), documents=["stale x", "z"], collection_name="words",
                            settings=settings, delta_id=early_id)
    compactor.compact_pending()
    late = mirror(settings, "words", say=_quiet)
    assert late.deltas_mirrored == 1 and late.upserts == 1  # only z: x's newer value stays
    assert _pinecone_content(settings) == _snapshot_content(settings)
    assert _pinecone_content(settings)["x"][1] != "stale x"


def test_outage_delays_the_mirror_and_it_catches_up(pinecone_settings: Settings, pinecone_server: PineconeServer,
                                                    rng: np.random.Generator) -> None:
    settings = pinecone_settings
    compactor = ChromaCompactor(settings=settings)
    _produce(settings, rng, [f"a{n}" for n in range(5)])
    compactor.compact_pending()
    mirror(settings, "words", say=_quiet)
    watermark_before = mirror(settings, "words", say=_quiet).watermark

    pinecone_server.state.refuse(10_000)  # Pinecone down: the S3 path carries on regardless
    for batch in range(3):
        _produce(settings, rng, [f"o{batch}{n}" for n in range(3)], delete_ids=[f"a{batch}"])
    [compacted] = compactor.compact_pending()
    assert compacted.status.value == "ok" and compacted.vector_count == 5 + 9 - 3
    behind = mirror(settings, "words", say=_quiet)
    assert behind.outcome is MirrorOutcome.BEHIND and behind.lag_deltas == 3 and behind.lag_seconds >= 0
    assert behind.watermark == watermark_before and settings.pinecone_index_host in (behind.error or "")
    status = collection_status(settings)["collections"]["words"]["pinecone_mirror"]
    assert status["lag_deltas"] == 3 and status["last_error"]

    pinecone_server.state.refuse(0)  # back
    caught_up = mirror(settings, "words", say=_quiet)
    assert caught_up.outcome is MirrorOutcome.CAUGHT_UP and caught_up.deltas_mirrored == 3
    assert caught_up.lag_deltas == 0 and caught_up.watermark > watermark_before
    assert _pinecone_content(settings) == _snapshot_content(settings)
    assert collection_status(settings)["collections"]["words"]["pinecone_mirror"]["lag_deltas"] == 0


def test_outage_in_the_middle_keeps_what_was_sent(pinecone_settings: Settings, pinecone_server: PineconeServer,
                                                  rng: np.random.Generator) -> None:
    settings = pinecone_settings.with_overrides(pinecone_max_attempts=1)
    for batch in range(3):
        _produce(settings, rng, [f"m{batch}{n}" for n in range(3)])
    ChromaCompactor(settings=settings).compact_pending()
    # describe_index_stats and the first delta's upsert are served; then the endpoint goes down
    pinecone_server.state.refuse(10_000, after=2)
    behind = mirror(settings, "words", say=_quiet)
    assert behind.outcome is MirrorOutcome.BEHIND and behind.deltas_mirrored == 1 and behind.lag_deltas == 2
    pinecone_server.state.refuse(0)
    assert mirror(settings, "words", say=_quiet).deltas_mirrored == 2
    assert _pinecone_content(settings) == _snapshot_content(settings)


def test_a_second_mirror_of_the_collection_waits_its_turn(pinecone_settings: Settings, rng: np.random.Generator) -> None:
    from vector_pipeline.io.lock import CompactionLock

    _produce(pinecone_settings, rng, ["a", "b"])
    ChromaCompactor(settings=pinecone_settings).compact_pending()
    with CompactionLock("pinecone-mirror-words", settings=pinecone_settings):
        assert mirror(pinecone_settings, "words", say=_quiet).outcome is MirrorOutcome.BUSY
    assert mirror(pinecone_settings, "words", say=_quiet).outcome is MirrorOutcome.CAUGHT_UP
