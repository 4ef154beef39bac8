"""Collections as data: created, listed, shown and changed at run time in
collections/<name>.json (through the real CLI), names checked before anything is written,
the allow-list and auto-creation, and a collection's own settings reaching the versions
compacted for it. Not covered: retention (test_maintenance.py)."""

import json

import numpy as np
import pytest

from vector_pipeline import ChromaCompactor, produce_embedding_delta
from vector_pipeline.table.catalog import CatalogConflictError, CollectionCatalog, CollectionConfig, UnknownCollectionError
from vector_pipeline.config import Settings
from vector_pipeline.table.snapshot_store import SnapshotStore

from vector_pipeline_tests.helpers import all_keys, vectors
from vector_pipeline_tests.test_cli.test_commands import run


def test_collections_are_created_listed_shown_and_set_from_the_command_line(settings: Settings) -> None:
    created = run(settings, "collections", "create", "merchant-0042", "--hnsw-search-ef", "42",
                  "--segment-max-count", "3", "--keep-versions", "9", "--json")
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["hnsw"]["search_ef"] == 42
    again = run(settings, "collections", "create", "merchant-0042")
    assert again.returncode == 2 and "exists already" in again.stderr
    changed = run(settings, "collections", "set", "merchant-0042", "--grace-hours", "6", "--json")
    assert json.loads(changed.stdout)["retention"]["grace_hours"] == 6.0
    shown = json.loads(run(settings, "collections", "show", "merchant-0042", "--json").stdout)
    assert (shown["segment_max_count"], shown["retention"]["versions_kept"], shown["retention"]["grace_hours"]) == (3, 9, 6.0)
    assert json.loads(run(settings, "collections", "list", "--json").stdout) == ["merchant-0042"]
    assert all_keys(settings, "collections/") == ["collections/merchant-0042.json"]


@pytest.mark.parametrize("name", ["../etc", "a", "has/slash", "x" * 64, "_leading", "dots..inside", "spa ce"])
def test_a_bad_name_is_refused_before_anything_is_written(settings: Settings, name: str) -> None:
    result = run(settings, "collections", "create", name)
    assert result.returncode == 2 and "invalid collection name" in result.stderr
    assert all_keys(settings) == []


def test_a_collection_created_at_run_time_is_compacted_with_its_own_settings(
        settings: Settings, rng: np.random.Generator) -> None:
    catalog = CollectionCatalog(settings)
    catalog.create(CollectionConfig.defaults_for("merchant-7", settings).changed(hnsw_search_ef=33, dimension=8,
                                                                                 embedding_provider="minilm"))
    produce_embedding_delta(["a"], vectors(rng, 1), collection_name="merchant-7", settings=settings)
    wrong = produce_embedding_delta(["b"], vectors(rng, 1, dimension=4), collection_name="merchant-7", settings=settings)
    [result] = ChromaCompactor(settings=settings).compact_pending()  # no collection named: every one pending
    assert result.collection == "merchant-7" and result.status == "ok" and result.deltas_processed == 1
    assert "4-d" in result.quarantined[wrong["delta_key"]]  # the catalog fixed the dimension before any vector
    store = SnapshotStore(settings)
    manifest = store.read_manifest("merchant-7", store.read_pointer("merchant-7").version)
    assert manifest.hnsw["search_ef"] == 33


def test_first_delta_creates_the_collection_with_the_defaults(settings: Settings, rng: np.random.Generator) -> None:
    produce_embedding_delta(["a"], vectors(rng, 1), collection_name="fresh", settings=settings)
    [result] = ChromaCompactor(settings=settings).compact_pending()
    assert result.status == "ok"
    config = CollectionCatalog(settings).get("fresh")
    assert config is not None and config.hnsw == settings.hnsw and config.created_at


def test_without_auto_creation_an_unknown_collection_is_refused_by_name(
        settings: Settings, rng: np.random.Generator) -> None:
    strict = settings.with_overrides(auto_create_collections=False)
    produced = produce_embedding_delta(["a"], vectors(rng, 1), collection_name="nobody", settings=strict)
    with pytest.raises(UnknownCollectionError, match="nobody"):
        ChromaCompactor(settings=strict).compact_deltas([produced["delta_key"]], "nobody")
    [result] = ChromaCompactor(settings=strict).compact_pending()
    assert "does not exist" in result.quarantined[produced["delta_key"]]


def test_concurrent_changes_never_overwrite_each_other(settings: Settings) -> None:
    catalog = CollectionCatalog(settings)
    catalog.create(CollectionConfig.defaults_for("shared", settings))
    with pytest.raises(CatalogConflictError):
        catalog.create(CollectionConfig.defaults_for("shared", settings))
    with pytest.raises(ValueError, match="unknown collection setting"):
        catalog.update("shared", hnsw_colour=3)
