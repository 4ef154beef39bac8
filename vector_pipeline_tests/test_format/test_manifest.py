"""Manifests (``format/manifest.py``): file entries, describing and verifying a directory
(a tampered, truncated or missing file is caught), path checks and ``safe_join`` refusing
escapes (also through a symlink), JSON limits and atomic writes.

Not covered here: downloading a version's files (``table/snapshot_store.py``)."""

from __future__ import annotations

import hashlib
import json
import os
import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vector_pipeline.format import manifest as mf
from vector_pipeline.format.manifest import (FileEntry, IntegrityError, UnsafePathError, describe_files, safe_join, verify_files)


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(body)
    return root


def test_a_file_entry_round_trips_through_its_dict_and_omits_an_empty_key():
    plain = FileEntry("seg/a.bin", 3, "ab" * 32)
    keyed = FileEntry("seg/a.bin", 3, "ab" * 32, key="versions/docs/000001/seg/a.bin")
    assert "key" not in plain.as_dict()
    assert FileEntry.from_dict(plain.as_dict()) == plain
    assert FileEntry.from_dict(keyed.as_dict()) == keyed


def test_describe_files_lists_every_file_sorted_with_size_and_sha256(tmp_path):
    tree(tmp_path, {"b.bin": b"bb", "a/c.bin": b"c", mf.MANIFEST_NAME: b"{}", "chroma.sqlite3-wal": b"w",
                    "x-shm": b"s", "y-journal": b"j", "skip/me": b"no"})
    entries = describe_files(tmp_path, skip_dirs=("skip/",))
    assert entries == [FileEntry("a/c.bin", 1, hashlib.sha256(b"c").hexdigest()),
                       FileEntry("b.bin", 2, hashlib.sha256(b"bb").hexdigest())]


def test_verify_files_accepts_the_directory_it_described(tmp_path):
    tree(tmp_path, {"a": b"one", "d/b": b"two"})
    verify_files(tmp_path, describe_files(tmp_path))


@pytest.mark.parametrize(("tamper", "problem"), [
    (lambda p: p.write_bytes(b"onf"), "a: sha256 .*, manifest says"),  # same size, other bytes
    (lambda p: p.write_bytes(b"on"), "a: 2 bytes, manifest says 3"),
    (lambda p: p.unlink(), "a: missing"),
    (lambda p: (p.unlink(), p.mkdir()), "a: missing"),
])
def test_verify_files_names_a_tampered_file(tmp_path, tamper, problem):
    tree(tmp_path, {"a": b"one", "d/b": b"two"})
    entries = describe_files(tmp_path)
    tamper(tmp_path / "a")
    with pytest.raises(IntegrityError, match=problem):
        verify_files(tmp_path, entries)


def test_verify_files_refuses_an_entry_outside_the_directory(tmp_path):
    with pytest.raises(UnsafePathError):
        verify_files(tmp_path / "root", [FileEntry("../a", 1, "0" * 64)])


@pytest.mark.parametrize("path", ["a", "a/b.bin", "segments/000001/data_level0.bin", "x/c:d", ".hidden"])
def test_safe_relative_paths_are_accepted(path):
    assert mf.check_relative_path(path) == path


@pytest.mark.parametrize("path", ["", "/etc/passwd", "..", "../a", "a/../../b", "a/..", "./a", "a/./b",
                                  "a//b", "a/", "a\\b", "a\x00b", "a\nb", "C:/x", "c:x"])
def test_unsafe_relative_paths_are_refused(path):
    with pytest.raises(UnsafePathError):
        mf.check_relative_path(path)


def test_safe_join_stays_below_the_root(tmp_path):
    assert safe_join(tmp_path, "a/b") == (tmp_path / "a" / "b").resolve()


def test_safe_join_refuses_an_escape_through_a_symlink(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="escapes"):
        safe_join(root, "link/file")


@settings(max_examples=150, deadline=None)
@given(st.text(string.printable + "é/.", max_size=20))
def test_safe_join_either_refuses_or_stays_below_the_root(relative):
    root = Path("/srv/vp-root")
    try:
        target = safe_join(root, relative)
    except UnsafePathError:
        return
    assert target.is_relative_to(root) and target != root


def test_loads_returns_what_dumps_wrote():
    document = {"b": [1, 2], "a": {"x": "é"}}
    assert mf.loads(mf.dumps(document), "m") == document


@pytest.mark.parametrize(("body", "problem"), [
    (b"{", "m: not valid JSON"), (b"\xff\xfe", "m: not valid JSON"), (b"[]", "m: not a JSON object"),
    (b"null", "m: not a JSON object"),
])
def test_loads_refuses_what_is_not_a_json_object(body, problem):
    with pytest.raises(IntegrityError, match=problem):
        mf.loads(body, "m")


def test_loads_refuses_a_manifest_over_the_limit_before_parsing_it():
    with pytest.raises(IntegrityError, match="over the 16777216 byte limit"):
        mf.loads(b" " * (mf.MAX_MANIFEST_BYTES + 1), "m")  # blank: parsed, it would be invalid JSON


def test_write_json_atomically_leaves_the_document_and_no_temporary(tmp_path):
    target = tmp_path / "pointer.json"
    target.write_text("old")
    mf.write_json_atomically(target, {"v": 2})
    assert json.loads(target.read_bytes()) == {"v": 2}
    assert os.listdir(tmp_path) == ["pointer.json"]
