"""Recall of a version (recall.py) and the collection's HNSW settings reaching the versions
it publishes (version_writer.py), against the moto server. Covers: recall through every
segment with masks applied, the CLI's JSON, recall falling when search_ef is set very low;
not covered here: the Dagster check (test_defs/test_recall_check.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vector_pipeline import ChromaCompactor, produce_embedding_delta
from vector_pipeline.table.catalog import CollectionCatalog, CollectionConfig
from vector_pipeline.compaction.maintenance import rebuild_from_archive
from vector_pipeline.config import Settings
from vector_pipeline.read.recall import RecallVerdict, judge, measure_recall
from vector_pipeline.chroma.segments import open_version
from vector_pipeline.table.snapshot_store import SnapshotStore

from vector_pipeline_tests.helpers import hard_collection
from vector_pipeline_tests.test_cli.test_commands import run
from vector_pipeline_tests.test_compaction.test_compactor import produce


def _compact(settings: Settings, collection: str = "words") -> str:
    [result] = ChromaCompactor(settings=settings).compact_pending(collection)
    assert result.status == "ok", result.error
    return str(result.version)


def test_recall_of_a_segmented_version_searches_every_segment_with_masks(settings: Settings,
                                                                          rng: np.random.Generator) -> None:
    produce(settings, [f"a{i}" for i in range(40)], rng)
    _compact(settings)
    produce(settings, [f"a{i}" for i in range(10)] + [f"b{i}" for i in range(20)], rng, deletes=["a39"])
    version = _compact(settings)
    manifest = SnapshotStore(settings).read_manifest("words", version)
    assert len(manifest.segments) == 2 and manifest.segments[0].masked == 11
    report = measure_recall(settings, "words", k=5, queries=25)
    assert report.version == version and report.records == 59 == manifest.vector_count
    assert report.queries == 25 and report.recall_at_k == 1.0
    assert report.exact_bytes_scanned == 59 * 8 * 4
    assert measure_recall(settings, "words", k=5, queries=25).as_dict() | {"exact_seconds": 0, "approximate_seconds": 0} \
        == report.as_dict() | {"exact_seconds": 0, "approximate_seconds": 0}  # a fixed seed: the same queries


def test_recall_command_prints_json_with_the_contract_keys(settings: Settings, rng: np.random.Generator) -> None:
    produce(settings, [f"a{i}" for i in range(30)], rng)
    version = _compact(settings)
    result = run(settings, "recall", "words", "--k", "3", "--queries", "7", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert {"collection": "words", "version": version, "k": 3, "queries": 7, "recall_at_k": 1.0}.items() \
        <= answer.items()
    assert answer["exact_seconds"] >= 0 and answer["records"] == 30
    assert run(settings, "recall", "words", "--version", "7").returncode == 2  # no such version: a clear error


def test_a_stored_query_sample_is_what_recall_answers(settings: Settings, rng: np.random.Generator,
                                                      tmp_path: Path) -> None:
    produce(settings, [f"a{i}" for i in range(30)], rng)
    _compact(settings)
    np.save(tmp_path / "queries.npy", rng.random((12, 8), dtype=np.float32))
    result = run(settings, "recall", "words", "--store-queries", str(tmp_path / "queries.npy"), "--k", "5", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["queries"] == 12 and "stored" in answer["queries_source"] and answer["recall_at_k"] == 1.0
    again = measure_recall(settings, "words", k=5, queries=4)  # later measures answer the stored queries
    assert again.queries == 4 and "4 of the 12 queries stored" in again.queries_source
    np.save(tmp_path / "wrong.npy", np.ones((3, 5), dtype=np.float32))
    refused = run(settings, "recall", "words", "--store-queries", str(tmp_path / "wrong.npy"))
    assert refused.returncode == 2 and "dimension 5" in refused.stderr
    assert measure_recall(settings, "words", k=5).queries == 12  # the stored sample is untouched


def test_recall_falls_when_the_collections_search_ef_is_set_very_low(settings: Settings) -> None:
    hard_collection(settings, "hard")
    _compact(settings, "hard")
    config = CollectionCatalog(settings).get("hard")
    before = measure_recall(settings, "hard", queries=200)
    assert judge(before.recall_at_k, config) is RecallVerdict.MEETS_TARGET
    config = CollectionCatalog(settings).update("hard", hnsw_search_ef=1, recall_floor=0.95)
    produce_embedding_delta(["late"], [[0.5] * 32], collection_name="hard", settings=settings)
    version = _compact(settings, "hard")
    after = measure_recall(settings, "hard", queries=200)
    assert after.version == version and after.search_ef == 1
    assert after.recall_at_k < config.recall_target <= before.recall_at_k
    assert judge(after.recall_at_k, config) is RecallVerdict.BELOW_FLOOR


def test_collection_hnsw_settings_reach_the_next_version(settings: Settings, rng: np.random.Generator) -> None:
    """A compaction after `collections set` builds with the collection's settings, not the
    parent version's: search_ef changed in place on the copied base, a new index otherwise."""
    catalog = CollectionCatalog(settings)
    catalog.create(CollectionConfig.defaults_for("words", settings))
    produce(settings, [f"a{i}" for i in range(20)], rng)
    _compact(settings)
    catalog.update("words", hnsw_search_ef=33)
    produce(settings, ["b1"], rng)
    first = _configurations(settings, _compact(settings))
    assert first == [{"ef_search": 33, "max_neighbors": 16}]  # one segment: the base folded with the new breadth
    catalog.update("words", hnsw_max_neighbors=12)
    produce(settings, ["b2"], rng)
    second = _configurations(settings, _compact(settings))
    assert second == [{"ef_search": 33, "max_neighbors": 12}]
    assert measure_recall(settings, "words", k=5, queries=10).records == 22
    # A rebuild with another breadth makes it the collection's: the next compaction keeps it.
    rebuild_from_archive(settings, "words", hnsw=catalog.hnsw_with_search_ef("words", 77))
    assert catalog.get("words").hnsw.search_ef == 77 and catalog.get("words").hnsw.max_neighbors == 12
    produce(settings, ["b3"], rng)
    assert _configurations(settings, _compact(settings)) == [{"ef_search": 77, "max_neighbors": 12}] * 2  # appended


def _configurations(settings: Settings, version: str) -> list[dict]:
    store = SnapshotStore(settings)
    manifest = store.read_manifest("words", version)
    assert manifest.hnsw["search_ef"] == CollectionCatalog(settings).get("words").hnsw.search_ef
    local = store.download_version(manifest, Path(settings.cache_dir) / "check")
    found = []
    with open_version(local, manifest, settings) as client:
        for part in getattr(client, "parts", [client]):
            hnsw = part.collection_configuration("words")["hnsw"]
            found.append({"ef_search": hnsw["ef_search"], "max_neighbors": hnsw["max_neighbors"]})
    return found
