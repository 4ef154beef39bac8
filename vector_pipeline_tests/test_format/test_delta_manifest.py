"""A delta's own manifest as a typed document (``format/delta_manifest.py``): a stored one
reads into its fields and writes back the same bytes (fields this build does not know kept),
an older producer's missing fields take their defaults, a format-1 manifest reads in its own
layout, and a malformed one is refused with ``InvalidDeltaError`` naming the delta and the
problem, checked in the order the quarantine reasons have always been given.

Not covered here: reading a delta from a bucket (``test_delta/``, ``test_reliability/``)."""

from __future__ import annotations

import json

import pytest

from vector_pipeline.format.delta_manifest import DELTA_FORMAT, DELTA_FORMAT_FILES, DeltaManifest
from vector_pipeline.format.keys import DeltaRef, InvalidDeltaError
from vector_pipeline.format.manifest import dumps

REF = DeltaRef("docs", "01HZZZZZZZZZZZZZZZZZZZZZZZ")
FILE = {"path": "chroma.sqlite3", "size": 3, "sha256": "a" * 64}
STORED = {  # every field a producer writes, as it stores them
    "format": DELTA_FORMAT, "delta_id": REF.delta_id, "collection": REF.collection,
    "created_at": "2026-01-02T00:00:00+00:00", "upsert_count": 2, "delete_ids": ["old"], "delete_count": 1,
    "dimension": 8, "embedding_provider": "hash-8", "chromadb_version": "1.0.0",
    "hnsw": {"space": "cosine", "M": 16}, "files": [FILE], "total_bytes": 3}


def test_a_stored_manifest_reads_into_fields_and_writes_back_the_same_bytes():
    manifest = DeltaManifest.from_json(dumps(STORED), REF, DELTA_FORMAT, REF.key + "manifest.json")
    assert (manifest.upsert_count, manifest.delete_ids, manifest.dimension) == (2, ("old",), 8)
    assert manifest.files[0].path == "chroma.sqlite3" and manifest.file_bytes == 3 and manifest.ref == REF
    assert manifest.to_json() == dumps(STORED)


def test_fields_this_build_does_not_know_are_kept_and_an_older_producer_takes_defaults():
    older = {"format": DELTA_FORMAT_FILES, "delta_id": REF.delta_id, "collection": REF.collection,
             "files": [FILE], "upsert_count": 1, "written_by": "another tool"}
    manifest = DeltaManifest.from_dict(older, REF, DELTA_FORMAT_FILES)
    assert (manifest.delete_ids, manifest.embedding_provider, manifest.hnsw) == ((), "", {})
    assert manifest.extra == {"written_by": "another tool"}
    assert manifest.to_dict()["written_by"] == "another tool"


@pytest.mark.parametrize(("change", "problem"), [
    ({"format": DELTA_FORMAT_FILES}, "unknown manifest format 'vector_pipeline.delta/1' "
                                     "(expected 'vector_pipeline.delta/2' in this layout)"),
    ({"format": None}, "unknown manifest format None"),
    ({"delta_id": "01HAAAAAAAAAAAAAAAAAAAAAAA"}, "manifest names another delta or collection"),
    ({"collection": "other"}, "manifest names another delta or collection"),
    ({"files": "a"}, "manifest lists no files"),
    ({"files": None}, "manifest lists no files"),
    ({"files": []}, "manifest lists no files"),  # with upserts, a delta has files
    ({"files": [{**FILE, "path": "../x"}]}, "unsafe path in manifest: '../x'"),
    ({"files": [{"path": "a", "size": "big", "sha256": "x"}]}, "malformed file entry in manifest"),
    ({"files": [{"path": "a"}]}, "malformed file entry in manifest"),
    ({"files": ["a"]}, "malformed file entry in manifest: 'a'"),
    ({"delete_ids": ["ok", 5]}, "delete_ids is not a list of non-empty strings"),
    ({"delete_ids": "old"}, "delete_ids is not a list of non-empty strings"),
    ({"upsert_count": "2"}, "manifest: field 'upsert_count' is not a whole number: '2'"),
    ({"dimension": True}, "manifest: field 'dimension' is not a whole number: True"),
    ({"embedding_provider": 8}, "manifest: field 'embedding_provider' is not a string: 8"),
    ({"hnsw": []}, "manifest: field 'hnsw' is not an object: []"),
])
def test_a_malformed_manifest_is_refused_naming_the_delta_and_the_problem(change, problem):
    with pytest.raises(InvalidDeltaError) as refused:
        DeltaManifest.from_dict({**STORED, **change}, REF)
    assert refused.value.delta_key == REF.key
    assert refused.value.reason.startswith(problem)


def test_a_manifest_that_is_no_json_object_is_refused_naming_the_object_read():
    with pytest.raises(InvalidDeltaError, match="manifest.json: not a JSON object") as refused:
        DeltaManifest.from_json(json.dumps([1]).encode(), REF, DELTA_FORMAT_FILES, REF.key + "manifest.json")
    assert refused.value.delta_key == REF.key


def test_the_format_is_checked_before_anything_else():
    with pytest.raises(InvalidDeltaError, match="unknown manifest format"):
        DeltaManifest.from_dict({"format": 2, "files": None, "delete_ids": 5}, REF)
