"""Hostile keys and paths never touch the local filesystem outside the working directory:
a delta manifest, a version manifest or a message that tries to escape is refused before
anything is written, and downloads land only below their own temporary directory."""

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from vector_pipeline import ChromaCompactor, open_snapshot, produce_embedding_delta
from vector_pipeline.io.aws import client
from vector_pipeline.config import Settings
from vector_pipeline.format.keys import InvalidDeltaError, parse_delta_key
from vector_pipeline.format.manifest import UnsafePathError, safe_join
from vector_pipeline.delta.queue import parse_message
from vector_pipeline.table.snapshot_store import SnapshotStore

from vector_pipeline_tests.helpers import vectors
from vector_pipeline_tests.test_reliability.crafting import craft_delta

ESCAPES = ["../escape-marker", "../../escape-marker", "a/../../escape-marker", "/tmp/escape-marker",
           "..\\..\\escape-marker", "a/\x00/escape-marker", "C:/escape-marker", "./../escape-marker", "a//b"]


def _no_marker_anywhere(*roots: Path) -> None:
    for root in roots:
        assert not list(root.rglob("escape-marker")), f"something escaped into {root}"
    assert not Path("/tmp/escape-marker").exists()


@pytest.mark.parametrize("path", ESCAPES)
def test_safe_join_refuses_every_escape(tmp_path: Path, path: str) -> None:
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path / "root", path)


@pytest.mark.parametrize("path", ESCAPES)
def test_delta_manifest_escape_is_quarantined_without_writing(settings: Settings, tmp_path: Path, path: str) -> None:
    key = craft_delta(settings, manifest=lambda m: m["files"].append({"path": path, "size": 1, "sha256": "0" * 64}))
    [result] = ChromaCompactor(settings=settings).compact_pending("words")
    assert key in result.quarantined
    _no_marker_anywhere(tmp_path.parent, Path(settings.cache_dir).parent)


@pytest.mark.parametrize("path", ESCAPES)
def test_packed_delta_member_escape_is_quarantined_without_writing(settings: Settings, tmp_path: Path,
                                                                   path: str) -> None:
    def escaping_member(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(path)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))

    key = craft_delta(settings, members=escaping_member)
    [result] = ChromaCompactor(settings=settings).compact_pending("words")
    assert key in result.quarantined
    _no_marker_anywhere(tmp_path.parent, Path(settings.cache_dir).parent)


@pytest.mark.parametrize("path", ESCAPES)
def test_version_manifest_escape_is_refused_by_readers(settings: Settings, rng: np.random.Generator,
                                                       tmp_path: Path, path: str) -> None:
    produce_embedding_delta(["a"], vectors(rng, 1), settings=settings)
    [result] = ChromaCompactor(settings=settings).compact_pending("words")
    store = SnapshotStore(settings)
    manifest = store.read_manifest("words", result.version).to_dict()  # the stored JSON, to tamper with
    manifest["files"].append({"path": path, "size": 1, "sha256": "0" * 64, "key": manifest["files"][0]["key"]})
    client("s3", settings).put_object(Bucket=settings.vectors_bucket, Key=f"snapshot/words/{result.version}/manifest.json",
                                      Body=json.dumps(manifest).encode())
    with pytest.raises(UnsafePathError):
        open_snapshot(snapshot_path=tmp_path / "reader", settings=settings)
    _no_marker_anywhere(tmp_path)
    local = tmp_path / "reader" / "words"
    assert not local.exists() or list(local.iterdir()) == []  # refused before any download


def test_version_manifest_key_outside_its_prefix_is_refused(settings: Settings, rng: np.random.Generator,
                                                            tmp_path: Path) -> None:
    key = produce_embedding_delta(["a"], vectors(rng, 1), settings=settings)["delta_key"]
    [result] = ChromaCompactor(settings=settings).compact_pending("words")
    store = SnapshotStore(settings)
    manifest = store.read_manifest("words", result.version).to_dict()  # the stored JSON, to tamper with
    manifest["files"][0]["key"] = key.replace("delta/", "archive/") + "chroma.sqlite3"
    client("s3", settings).put_object(Bucket=settings.vectors_bucket, Key=f"snapshot/words/{result.version}/manifest.json",
                                      Body=json.dumps(manifest).encode())
    with pytest.raises(UnsafePathError, match="outside snapshot/words/"):
        open_snapshot(snapshot_path=tmp_path / "reader", settings=settings)


@pytest.mark.parametrize("key", ["delta/words/../../../etc/", "/etc/passwd", "delta/../words/01ARZ3NDEKTSV4RRFFQ69G5FAV/",
                                 "delta/words/01ARZ3NDEKTSV4RRFFQ69G5FAV/../../x", "archive/words/01ARZ3NDEKTSV4RRFFQ69G5FAV/",
                                 "delta/wo\\rds/01ARZ3NDEKTSV4RRFFQ69G5FAV/", "delta/words/01ARZ3NDEKTSV4RRFFQ69G5FAV\x00/"])
def test_message_keys_outside_delta_layout_are_malformed(key: str) -> None:
    with pytest.raises(InvalidDeltaError):
        parse_message(json.dumps({"delta_key": key}))
    with pytest.raises(InvalidDeltaError):
        parse_delta_key(key)
