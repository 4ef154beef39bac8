"""Backfill from Pinecone: a crash in the middle (SIGKILL of a real ``vector-pipeline
pinecone backfill`` process right after a page's delta was written, before the checkpoint
moved) and the resumed run that follows; a finished backfill is not repeated; a dimension
that differs from the published snapshot's is refused before anything is written.

Not covered here: the comparison after a backfill (test_end_to_end.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from vector_pipeline import ChromaCompactor, open_snapshot, produce_embedding_delta
from vector_pipeline.io.aws import client
from vector_pipeline.config import Settings
from vector_pipeline.format.keys import DeltaRef
from vector_pipeline.delta.reader import fetch_delta, list_deltas, read_delta_manifest
from vector_pipeline.migration.backfill import BackfillOutcome, backfill, checkpoint_key
from vector_pipeline.migration.state import MigrationState
from vector_pipeline.migration.pinecone_client import PineconeIndex, PineconeIndexError, PineconeProblem, PineconeRecord

from ..conftest import all_keys

COUNT, BATCH = 45, 10  # five pages


def _seed(settings: Settings, count: int = COUNT, dimension: int = 8) -> None:
    rng = np.random.default_rng(3)
    PineconeIndex(settings).upsert("words", [
        PineconeRecord(f"v{n:03d}", rng.random(dimension).tolist(), {"text": f"word {n}", "n": n}) for n in range(count)])


def _delta_ids_by_record(settings: Settings) -> Counter:
    """How many complete deltas hold each id (read from the deltas themselves)."""
    s3 = client("s3", settings)
    held: Counter = Counter()
    for ref in list_deltas(s3, settings.vectors_bucket, "delta/words/"):
        loaded = fetch_delta(s3, settings.vectors_bucket, ref, Path(settings.cache_dir) / ref.delta_id)
        held.update(loaded.ids)
    return held


def test_backfill_killed_after_a_page_resumes_without_duplicates(pinecone_settings: Settings) -> None:
    settings = pinecone_settings
    _seed(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VECTORS_", "DELTA_", "PINECONE_"))}
    env.update(settings.local_aws_environment(), VECTOR_PIPELINE_FAULT="crash:backfill_page_3")
    crashed = subprocess.run([sys.executable, "-m", "vector_pipeline.cli", "pinecone", "backfill",
                              "--collection", "words", "--batch", str(BATCH)],
                             env=env, capture_output=True, text=True, timeout=120)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    checkpoint = MigrationState(settings).read(checkpoint_key("words"))
    assert checkpoint["pages"] == 2 and not checkpoint["complete"]
    half_done = checkpoint["writing"]["delta_id"]  # page 3: its delta written, the checkpoint not moved
    read_delta_manifest(client("s3", settings), settings.vectors_bucket, DeltaRef("words", half_done))

    lines: list[str] = []
    result = backfill(settings, "words", BATCH, say=lines.append)
    assert result.outcome is BackfillOutcome.COMPLETE and result.resumed
    assert result.pages == 5 and result.vectors == COUNT and half_done in result.delta_ids
    assert any("resuming after page 2" in line for line in lines)
    held = _delta_ids_by_record(settings)
    assert len(held) == COUNT and set(held.values()) == {1}  # every id in exactly one delta
    assert len(list_deltas(client("s3", settings), settings.vectors_bucket, "delta/words/")) == 5

    [compacted] = ChromaCompactor(settings=settings).compact_pending()
    assert compacted.vector_count == COUNT
    got = open_snapshot("words", settings=settings).get_vectors("words", ids=["v007"], include=["documents", "metadatas"])
    assert got["documents"] == ["word 7"] and got["metadatas"] == [{"n": 7}]

    again = backfill(settings, "words", BATCH, say=lines.append)
    assert again.outcome is BackfillOutcome.ALREADY_COMPLETE
    assert all_keys(settings, "delta/") == []  # all archived, none new


def test_backfill_refuses_a_dimension_other_than_the_snapshots(pinecone_settings: Settings) -> None:
    settings = pinecone_settings
    produce_embedding_delta(["a"], [[0.1] * 4], collection_name="words", settings=settings)
    ChromaCompactor(settings=settings).compact_pending()
    _seed(settings, count=3, dimension=8)
    with pytest.raises(PineconeIndexError) as raised:
        backfill(settings, "words", BATCH, say=lambda _: None)
    assert raised.value.problem is PineconeProblem.DIMENSION_MISMATCH
    assert settings.pinecone_index_host in str(raised.value) and "8" in str(raised.value)
    assert MigrationState(settings).read(checkpoint_key("words")) is None
    assert all_keys(settings, "delta/") == []
