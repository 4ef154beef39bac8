"""``CadenceReader``: what ``cadence.due`` reads of a collection, as ``compact --watch`` and the
Dagster sensors read it, against the moto server: the catalog record kept for its TTL (a
``collections set`` reaches the decisions once it passes), the pointer followed at every
decision, the deployment's defaults before a record exists."""

from __future__ import annotations

import numpy as np

from vector_pipeline import ChromaCompactor, produce_embedding_delta
from vector_pipeline.compaction.cadence import CompactDecision
from vector_pipeline.compaction.cadence_reader import CadenceReader
from vector_pipeline.config import Settings
from vector_pipeline.table.catalog import CollectionCatalog

from vector_pipeline_tests.helpers import vectors


def test_the_catalog_is_read_once_per_ttl_and_the_pointer_at_every_decision(
        settings: Settings, rng: np.random.Generator) -> None:
    clock = [0.0]
    reader = CadenceReader(settings, ttl_seconds=60, clock=lambda: clock[0])
    first = produce_embedding_delta(["a"], vectors(rng, 1), settings=settings, notify=False)
    assert reader.decide("words", [first["delta_key"]]).compact is CompactDecision.FIRST_VERSION
    assert reader.config("words").freshness_target_seconds == 30  # no record yet: the defaults
    ChromaCompactor(settings=settings).compact_deltas([first["delta_key"]], "words")
    CollectionCatalog(settings).update("words", backlog_max_deltas=1)
    pending = [produce_embedding_delta([k], vectors(rng, 1), settings=settings, notify=False)["delta_key"]
               for k in ("b", "c")]
    held = reader.decide("words", pending)  # the new pointer is seen; the old record is kept
    assert held.compact is CompactDecision.ACCUMULATE
    clock[0] = 61.0
    assert reader.decide("words", pending).compact is CompactDecision.BACKLOG  # 2 > 1, once the TTL passed
