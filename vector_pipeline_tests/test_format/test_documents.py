"""The typed documents (``format/version_manifest.py``, ``format/pointer.py``): a stored
manifest or pointer reads into its type and writes back the same JSON (fields this build
does not know kept), an older format's missing fields take their defaults, and a malformed
document is refused with an ``IntegrityError`` naming the document and the field.

Not covered here: reading them from a bucket (``table/snapshot_store.py``)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from vector_pipeline.format.manifest import IntegrityError
from vector_pipeline.format.pointer import HISTORY_LENGTH, PointerDocument, PublishSpan
from vector_pipeline.format.segments import Segment
from vector_pipeline.format.version_manifest import (SNAPSHOT_FORMAT, UnsupportedFormatError, VersionManifest,
                                                     next_version, version_number)

V1, V2 = "00000001-20260101T000000000Z", "00000002-20260102T000000000Z"
FILE = {"path": "segments/00000002/data_level0.bin", "size": 3, "sha256": "a" * 64,
        "key": f"snapshot/words/{V2}/segments/00000002/data_level0.bin"}
STORED = {  # every field a format-3 manifest carries, as the writer stores it
    "format": SNAPSHOT_FORMAT, "collection": "words", "version": V2, "parent_version": V1,
    "created_at": "2026-01-02T00:00:00+00:00", "vector_count": 7, "parent_vector_count": 5,
    "applied_delta_ids": ["01J0000000000000000000000A"], "delta_upserts": 2, "delta_deletes": 0,
    "chromadb_version": "1.0.0", "hnsw": {"space": "l2", "search_ef": 100}, "embedding_provider": "hash-8",
    "dimension": 8, "fence": 3, "lock_owner": "me", "segments": [Segment("00000002", 7).as_dict()],
    "chroma_collection": "words", "fold": "append", "masks_file": "masks.json.gz", "rebuilt_from_scratch": False,
    "rebuilt_over": None, "state_parts": ["state/00000002.json.gz"], "files": [FILE], "total_bytes": 3,
    "uploaded_bytes": 3, "reused_files": 0}


def test_a_stored_manifest_reads_into_fields_and_writes_back_the_same_json():
    manifest = VersionManifest.from_json(json.dumps(STORED).encode(), "m.json")
    assert (manifest.version, manifest.vector_count, manifest.space) == (V2, 7, "l2")
    assert manifest.segments == (Segment("00000002", 7),) and manifest.files[0].key == FILE["key"]
    assert manifest.to_dict() == STORED
    assert json.loads(manifest.to_json()) == STORED


def test_fields_this_build_does_not_know_are_kept_and_an_older_format_takes_defaults():
    older = {"format": "vector_pipeline.snapshot/2", "collection": "words", "version": V1, "files": [],
             "state_file": "state.json.gz"}
    manifest = VersionManifest.from_dict(older)
    assert manifest.state_parts is None and manifest.inner_collection == "words" and manifest.space == "cosine"
    written = manifest.to_dict()
    assert written["state_file"] == "state.json.gz" and "state_parts" not in written
    assert {k: written[k] for k in older} == older


@pytest.mark.parametrize("field, value, problem", [
    ("version", None, "field 'version' is missing"),
    ("files", None, "field 'files' is missing"),
    ("files", {"a": 1}, "field 'files' is not a list"),
    ("files", [{"path": "a", "size": 1}], "field 'files' holds a malformed entry"),
    ("vector_count", "7", "field 'vector_count' is not a whole number"),
    ("segments", [{"stored": 1}], "field 'segments' holds a malformed entry"),
    ("hnsw", [], "field 'hnsw' is not an object"),
])
def test_a_malformed_manifest_is_refused_naming_the_field(field, value, problem):
    document = {**STORED, field: value} if value is not None else {k: v for k, v in STORED.items() if k != field}
    with pytest.raises(IntegrityError, match=f"m.json: {problem}"):
        VersionManifest.from_dict(document, "m.json")


def test_a_manifest_of_another_version_or_format_is_refused_unless_any_format_is_asked():
    manifest = VersionManifest.from_dict(STORED)
    assert manifest.check_readable("k", V2) is manifest
    with pytest.raises(IntegrityError, match="k: not the manifest of version"):
        manifest.check_readable("k", V1)
    old = replace(manifest, format="vector_pipeline.snapshot/1")
    with pytest.raises(UnsupportedFormatError, match="written in vector_pipeline.snapshot/1"):
        old.check_readable("k", V2)
    assert old.check_readable("k", V2, any_format=True) is old


def test_versions_are_numbered_in_order():
    assert version_number(next_version(V2)) == 3 and version_number(next_version(None)) == 1
    with pytest.raises(ValueError, match="not a snapshot version"):
        version_number("latest")


def test_a_publish_names_the_version_and_remembers_the_one_it_replaced():
    now = datetime(2026, 1, 2, tzinfo=timezone.utc)
    first = PointerDocument.publishing(replace(VersionManifest.from_dict(STORED), version=V1), now, None)
    assert first.history == () and first.to_dict()["history"] == []
    second = PointerDocument.publishing(VersionManifest.from_dict(STORED), now + timedelta(hours=1), first)
    assert second.manifest_key == f"snapshot/words/{V2}/manifest.json" and second.fence == 3
    assert second.history == (PublishSpan(V1, now.isoformat(), (now + timedelta(hours=1)).isoformat()),)


def test_the_pointer_history_keeps_the_last_publishes_only():
    now = datetime(2026, 1, 2, tzinfo=timezone.utc)
    full = PointerDocument("words", V2, "k", history=tuple(PublishSpan(V1, None, "t") for _ in range(HISTORY_LENGTH)))
    after = PointerDocument.publishing(VersionManifest.from_dict(STORED), now, full)
    assert len(after.history or ()) == HISTORY_LENGTH and (after.history or ())[-1].version == V2


def test_a_stored_pointer_round_trips_with_its_write_id_and_without_history_when_it_had_none():
    stored = {"collection": "words", "version": V2, "manifest_key": "k", "vector_count": 7, "parent_version": V1,
              "fence": 3, "published_at": "2026-01-02T00:00:00+00:00", "write_id": "abc"}
    pointer = PointerDocument.from_json(json.dumps(stored).encode(), "latest.json")
    assert pointer.history is None and pointer.extra == {"write_id": "abc"}
    assert pointer.to_dict() == stored


def test_a_pointer_naming_no_version_is_refused_naming_the_field():
    with pytest.raises(IntegrityError, match="latest.json: field 'version' not a snapshot version"):
        PointerDocument.from_dict({"collection": "words", "version": "x", "manifest_key": "k"}, "latest.json")
    with pytest.raises(IntegrityError, match="latest.json: field 'manifest_key' is missing"):
        PointerDocument.from_dict({"collection": "words", "version": V2}, "latest.json")
