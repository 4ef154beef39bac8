"""ChromaDBClient on real persist directories: modes, exact reads, duplicate ids in a
merge, batching past chroma's limit, and the HNSW settings a collection is created with."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vector_pipeline import ChromaDBClient, HnswSettings
from vector_pipeline.config import Settings

from vector_pipeline_tests.helpers import vectors


def test_read_mode_refuses_every_write(tmp_path: Path, rng: np.random.Generator) -> None:
    with ChromaDBClient(tmp_path, mode="snapshot", settings=Settings()) as db:
        db.upsert_vectors("words", ["a"], vectors(rng, 1))
    reader = ChromaDBClient(tmp_path, mode="read", settings=Settings())
    for write in (lambda: reader.upsert_vectors("words", ["b"], vectors(rng, 1)),
                  lambda: reader.delete_vectors("words", ["a"])):
        with pytest.raises(RuntimeError, match="mode 'read'"):
            write()
    assert reader.count("words") == 1
    reader.close()


def test_duplicate_ids_in_one_merge_keep_the_last(tmp_path: Path, rng: np.random.Generator) -> None:
    with ChromaDBClient(tmp_path, mode="snapshot", settings=Settings()) as db:
        db.upsert_vectors("words", ["a", "b", "a"], vectors(rng, 3), documents=["first", "b", "last"])
        got = db.get_vectors("words", ids=["a", "b"], include=["documents"])
        assert dict(zip(got["ids"], got["documents"])) == {"a": "last", "b": "b"}
        assert db.count("words") == 2


def test_get_vectors_is_exact_across_batches(tmp_path: Path, rng: np.random.Generator) -> None:
    ids = [f"id{i}" for i in range(6000)]
    with ChromaDBClient(tmp_path, mode="snapshot", settings=Settings()) as db:
        db.upsert_vectors("words", ids, vectors(rng, len(ids), dimension=4))
        assert db.count("words") == 6000
        assert sorted(db.get_vectors("words", ids=ids, include=[])["ids"]) == sorted(ids)
        db.delete_vectors("words", ids[:5500])
        assert db.count("words") == 500


def test_collections_are_created_with_the_configured_hnsw_settings(tmp_path: Path, rng: np.random.Generator) -> None:
    hnsw = HnswSettings(space="cosine", search_ef=128, construction_ef=150, max_neighbors=24)
    with ChromaDBClient(tmp_path, mode="snapshot", settings=Settings(), hnsw=hnsw) as db:
        db.upsert_vectors("words", ["a"], vectors(rng, 1))
        config = db.collection_configuration("words")["hnsw"]
    assert (config["space"], config["ef_search"], config["ef_construction"], config["max_neighbors"]) == \
        ("cosine", 128, 150, 24)


def test_unknown_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        ChromaDBClient(tmp_path, mode="write")


def test_delta_mode_records_tombstones(tmp_path: Path, rng: np.random.Generator) -> None:
    delta = ChromaDBClient(tmp_path, mode="delta", settings=Settings())
    delta.upsert_vectors("words", ["a", "b"], vectors(rng, 2))
    delta.delete_vectors("words", ["b", "zz"])
    assert delta.delete_ids == ["b", "zz"] and delta.count("words") == 1
    with pytest.raises(ValueError, match="one collection"):
        delta.upsert_vectors("lines", ["c"], vectors(rng, 1))
    delta.close()
