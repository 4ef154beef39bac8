"""Local copies of a version (``format/local_copy.py``): a copy is recognised only for its
own files, ``staged_local_copy`` gives a whole copy or none (a failure leaves nothing;
another process's copy is kept)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from vector_pipeline.format import local_copy
from vector_pipeline.format.local_copy import staged_local_copy
from vector_pipeline.format.manifest import FileEntry
from vector_pipeline.format.version_manifest import SNAPSHOT_FORMAT, VersionManifest

VERSION = VersionManifest(SNAPSHOT_FORMAT, "words", "00000003-20260101T000000000Z",
                          files=(FileEntry("a", 1, "0" * 64),))


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(body)
    return root


def test_a_marked_local_copy_is_recognised_only_for_its_own_files(tmp_path):
    assert not local_copy.is_local_copy_of(tmp_path, VERSION)
    local_copy.mark_local_copy(tmp_path, VERSION)
    assert local_copy.is_local_copy_of(tmp_path, VERSION)
    assert not local_copy.is_local_copy_of(tmp_path, replace(VERSION, files=()))
    (tmp_path / local_copy.LOCAL_MANIFEST).write_bytes(b"{torn")
    assert not local_copy.is_local_copy_of(tmp_path, VERSION)


def test_a_staged_copy_appears_whole_at_the_target_and_the_staging_is_gone(tmp_path):
    staging, target = tmp_path / ".incoming-3", tmp_path / "3"
    with staged_local_copy(staging, target, VERSION) as directory:
        (directory / "a").write_bytes(b"x")
        assert not target.exists()  # nothing visible until the whole copy is in place
    assert (target / "a").read_bytes() == b"x"
    assert local_copy.is_local_copy_of(target, VERSION)
    assert not staging.exists()


def test_a_failed_copy_leaves_nothing_behind(tmp_path):
    staging, target = tmp_path / ".incoming-3", tmp_path / "3"
    with pytest.raises(ConnectionError):
        with staged_local_copy(staging, target, VERSION) as directory:
            (directory / "half").write_bytes(b"x")
            raise ConnectionError("download cut")
    assert os.listdir(tmp_path) == []


def test_another_process_copy_placed_first_is_kept(tmp_path):
    staging, target = tmp_path / ".incoming-3-mine", tmp_path / "3"
    tree(target, {"a": b"theirs"})
    local_copy.mark_local_copy(target, VERSION)
    with staged_local_copy(staging, target, VERSION) as directory:
        (directory / "a").write_bytes(b"mine")
    assert (target / "a").read_bytes() == b"theirs"
    assert sorted(os.listdir(tmp_path)) == ["3"]


def test_a_rename_that_fails_for_another_reason_raises_and_leaves_nothing(tmp_path):
    staging, target = tmp_path / ".incoming-3", tmp_path / "no-such-parent" / "3"
    with pytest.raises(OSError):
        with staged_local_copy(staging, target, VERSION) as directory:
            (directory / "a").write_bytes(b"x")
    assert os.listdir(tmp_path) == []
