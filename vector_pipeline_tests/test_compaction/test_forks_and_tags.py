"""Forks (forks.py) and tags (tags.py), and GC across collections (retention.py), against
the moto server: a fork shares its source's objects and stays independent of it; GC of
either never deletes an object a stored version of the other refers to; a tagged version
survives GC until untagged. Not covered: concurrent tag writers on a store that serialises
conditional writes (the tags use the pointer's conditional-write discipline)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from vector_pipeline import ChromaCompactor
from vector_pipeline.table.catalog import CollectionCatalog, CollectionConfig
from vector_pipeline.config import Settings
from vector_pipeline.compaction.forks import ForkError, fork_collection
from vector_pipeline.compaction.maintenance import rebuild_from_archive, rollback
from vector_pipeline.read.reader import close_readers
from vector_pipeline.compaction.retention import collect_garbage
from vector_pipeline.table.snapshot_store import PublishOutcome, SnapshotStore
from vector_pipeline.table.tags import TagStore, list_versions

from vector_pipeline_tests.helpers import all_keys
from vector_pipeline_tests.test_cli.test_commands import run
from vector_pipeline_tests.test_compaction.test_compactor import produce, published


def _compact(settings: Settings, collection: str = "words") -> str:
    [result] = ChromaCompactor(settings=settings).compact_pending(collection)
    assert result.status == "ok", result.error
    return str(result.version)


def _three_versions(settings: Settings, rng: np.random.Generator) -> list[str]:
    versions = []
    for n in range(3):
        produce(settings, [f"r{n}-{i}" for i in range(5)], rng, tag=f"-{n}")
        versions.append(_compact(settings))
    return versions


LATER = datetime.now(timezone.utc) + timedelta(days=2)


def test_a_fork_shares_every_object_and_then_goes_its_own_way(settings: Settings, rng: np.random.Generator) -> None:
    CollectionCatalog(settings).create(CollectionConfig.defaults_for("words", settings).changed(hnsw_search_ef=42))
    versions = _three_versions(settings, rng)
    before = set(all_keys(settings, "snapshot/"))
    result = fork_collection(settings, "words", "words-copy")
    store = SnapshotStore(settings)
    fork = store.read_manifest("words-copy", result.version)
    assert result.source_version == versions[-1] and result.vector_count == 15
    assert {e.key for e in fork.files} <= before  # nothing copied: the source's objects
    assert set(all_keys(settings, "snapshot/")) - before == {
        f"snapshot/words-copy/{result.version}/manifest.json", "snapshot/words-copy/latest.json"}
    assert CollectionCatalog(settings).get("words-copy").hnsw.search_ef == 42  # settings start as the source's
    assert published(settings, "words-copy") == published(settings, "words")
    produce(settings, ["only-fork"], rng, collection="words-copy")
    produce(settings, ["only-source"], rng)
    _compact(settings, "words-copy")
    _compact(settings, "words")
    close_readers()
    assert "only-fork" in published(settings, "words-copy") and "only-source" not in published(settings, "words-copy")
    assert "only-source" in published(settings, "words") and "only-fork" not in published(settings, "words")
    with pytest.raises(ForkError, match="exists already"):
        fork_collection(settings, "words", "words-copy")


def test_fork_is_read_exactly_after_the_source_is_collected_down_to_one_version(
        settings: Settings, rng: np.random.Generator) -> None:
    versions = _three_versions(settings, rng)
    fork_collection(settings, "words", "fork", versions[1])
    expected = {f"r{n}-{i}": f"r{n}-{i}-{n}" for n in range(2) for i in range(5)}
    produce(settings, [f"new{i}" for i in range(5)], rng)
    _compact(settings)  # the source moves on: versions[1] is no longer current
    report = collect_garbage(settings, "words", retain_versions=1, grace=timedelta(0), now=LATER)
    assert versions[1] in report.deleted_versions
    assert [row.version for row in list_versions(settings, "words")] == report.kept_versions  # one manifest left
    assert len(report.kept_versions) == 1
    close_readers()
    assert published(settings, "fork") == expected  # every object of the fork's version is still there
    collect_garbage(settings, "fork", retain_versions=1, grace=timedelta(0), now=LATER)
    close_readers()
    assert published(settings, "fork") == expected


def test_a_fork_is_rebuilt_from_its_first_version_plus_its_own_deltas(settings: Settings,
                                                                       rng: np.random.Generator) -> None:
    _three_versions(settings, rng)
    fork_collection(settings, "words", "fork")
    produce(settings, ["f1"], rng, collection="fork")
    _compact(settings, "fork")
    expected = published(settings, "fork")
    rebuilt = rebuild_from_archive(settings, "fork")
    assert rebuilt.status == "ok" and rebuilt.deltas_processed == 1
    close_readers()
    assert published(settings, "fork") == expected


def test_a_tagged_version_survives_gc_until_untagged(settings: Settings, rng: np.random.Generator) -> None:
    versions = _three_versions(settings, rng)
    tags = TagStore(settings)
    tags.tag("words", versions[0], "first-load")
    report = collect_garbage(settings, "words", retain_versions=1, grace=timedelta(0), now=LATER)
    assert report.deleted_versions == [versions[1]]
    assert rollback(settings, "words", tags.version_of("words", "first-load")) is PublishOutcome.PUBLISHED
    close_readers()
    assert sorted(published(settings)) == sorted(f"r0-{i}" for i in range(5))  # read exactly after the GC
    rollback(settings, "words", versions[2])
    assert tags.untag("words", "first-load") == versions[0]
    report = collect_garbage(settings, "words", retain_versions=1, grace=timedelta(0), now=LATER)
    assert report.deleted_versions == [versions[0]]


def test_a_tag_names_one_version_and_bad_names_are_refused(settings: Settings, rng: np.random.Generator) -> None:
    versions = _three_versions(settings, rng)
    tags = TagStore(settings)
    tags.tag("words", versions[0], "v1")
    tags.tag("words", versions[0], "v1")  # again: nothing changes
    with pytest.raises(ValueError, match="untag it first"):
        tags.tag("words", versions[1], "v1")
    with pytest.raises(ValueError, match="letters, digits"):
        tags.tag("words", versions[1], "../x")
    with pytest.raises(ValueError, match="no tag"):
        tags.untag("words", "v2")
    assert tags.tags("words") == {"v1": versions[0]}
    assert CollectionCatalog(settings).names() == ["words"]  # tags.json is not a collection record


def test_versions_commands_list_tag_untag_and_fork_by_tag(settings: Settings, rng: np.random.Generator) -> None:
    versions = _three_versions(settings, rng)
    assert run(settings, "versions", "tag", "words", "1", "golden").returncode == 0
    listed = json.loads(run(settings, "versions", "list", "words", "--json").stdout)
    assert [row["version"] for row in listed] == versions
    assert listed[0]["tags"] == ["golden"] and listed[-1]["current"] and not listed[0]["current"]
    assert [row["vector_count"] for row in listed] == [5, 10, 15]
    forked = run(settings, "collections", "fork", "words", "gold", "--tag", "golden", "--json")
    assert forked.returncode == 0, forked.stderr
    assert json.loads(forked.stdout)["source_version"] == versions[0]
    assert run(settings, "rollback", "words", "--tag", "golden").returncode == 0
    assert SnapshotStore(settings).read_pointer("words").version == versions[0]
    assert run(settings, "versions", "untag", "words", "golden").returncode == 0
    assert run(settings, "rollback", "words", "--tag", "golden").returncode == 2
