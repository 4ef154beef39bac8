"""Recall of live queries (read/live_recall.py): a reader re-answers a sampled share of its
queries exactly in a background thread, reports ReaderRecallAtK to CloudWatch (the test
session's moto server), and `status` shows the running figure. Not covered: the EMF path on
Lambda (the same ``metrics.publish`` as the handlers' other metrics, test_deploy)."""

from __future__ import annotations

import threading

import numpy as np

from vector_pipeline import ChromaCompactor
from vector_pipeline.cli.status import collection_status
from vector_pipeline.config import Settings
from vector_pipeline.read.live_recall import MAX_PENDING, LiveRecall
from vector_pipeline.read.reader import query_snapshot, snapshot_reader

from vector_pipeline_tests.helpers import vectors
from vector_pipeline_tests.test_compaction.test_compactor import produce


def _two_segments(settings: Settings, rng: np.random.Generator) -> None:
    compactor = ChromaCompactor(settings=settings)
    produce(settings, [f"a{i}" for i in range(30)], rng)
    compactor.compact_pending("words")
    produce(settings, [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(10)], rng)
    compactor.compact_pending("words")


def test_sampled_live_queries_are_re_answered_exactly_and_reported(settings: Settings,
                                                                    rng: np.random.Generator) -> None:
    settings = settings.replace(reader_recall_sample_rate=1.0, metrics_sink="cloudwatch")
    _two_segments(settings, rng)
    queries = vectors(rng, 3)
    query_snapshot(query_embeddings=queries, n_results=4, settings=settings, include=["documents"])
    query_snapshot(query_embeddings=queries[:1], n_results=4, settings=settings, where={"tag": "none"})  # not sampled
    live = snapshot_reader("words", settings=settings).live_recall
    assert live.wait(60)
    assert (live.sampled, live.measured, live.failed) == (3, 3, 0)
    assert live.running_recall() == 1.0
    shown = collection_status(settings)["reader_recall"]
    assert shown == {"average": 1.0, "samples": 3, "seconds": 3600}


def test_no_query_is_sampled_at_rate_zero(settings: Settings, rng: np.random.Generator) -> None:
    settings = settings.replace(reader_recall_sample_rate=0.0)
    _two_segments(settings, rng)
    query_snapshot(query_embeddings=vectors(rng, 5), n_results=3, settings=settings)
    live = snapshot_reader("words", settings=settings).live_recall
    assert live.sampled == 0 and live.running_recall() is None
    assert collection_status(settings)["reader_recall"] is None


class _SlowVersion:
    """An answering version whose exact scan waits until released (the worker is busy)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def embedding_pages(self, collection: str, page_size: int):  # type: ignore[no-untyped-def]
        self.release.wait(30)
        yield ["x"], np.ones((1, 2), dtype=np.float32)


def test_a_busy_worker_drops_samples_instead_of_holding_queries(settings: Settings) -> None:
    live = LiveRecall(settings.replace(reader_recall_sample_rate=1.0), "words")
    version = _SlowVersion()
    manifest = {"hnsw": {"space": "cosine"}}
    offered = [live.offer(version, manifest, [[1.0, 1.0]], [["x"]], 1) for _ in range(MAX_PENDING + 3)]
    assert offered.count(False) >= 2 and live.dropped == offered.count(False)  # returned at once, dropped
    version.release.set()
    assert live.wait(30) and live.running_recall() == 1.0
