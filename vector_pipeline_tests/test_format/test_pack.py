"""Packed deltas (``format/pack.py``): the round trip directory -> tar -> checked members ->
directory, and every refusal: links, directories, unsafe paths, duplicates, members the
manifest does not list, missing or altered members, a missing or unreadable manifest, a body
that is not a tar or is over the size limit.

Not covered here: uploading or fetching a pack (``delta/upload.py``, ``delta/reader.py``)."""

from __future__ import annotations

import hashlib
import io
import string
import tarfile
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vector_pipeline.format import manifest as mf
from vector_pipeline.format import pack
from vector_pipeline.format.delta_manifest import DELTA_FORMAT, DeltaManifest
from vector_pipeline.format.keys import DeltaRef, InvalidDeltaError
from vector_pipeline.format.pack import check_members, extract_members, pack_delta, read_pack

REF = DeltaRef("docs", "01HZZZZZZZZZZZZZZZZZZZZZZZ")
WHAT = REF.key
FILES = {"chroma.sqlite3": b"sqlite bytes", "seg/data_level0.bin": b"\x00\x01" * 100, "seg/header.bin": b""}


def write_tree(root: Path, files: dict[str, bytes]) -> DeltaManifest:
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(body)
    return DeltaManifest(DELTA_FORMAT, REF.delta_id, REF.collection, files=tuple(mf.describe_files(root)))


def entry(name: str, body: bytes) -> dict:
    return {"path": name, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def tar_of(*members: tarfile.TarInfo | tuple[str, bytes]) -> bytes:
    """A tar built member by member: (name, body) for a regular file, or a ready TarInfo."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
    return buffer.getvalue()


def manifest_member(*entries: dict) -> tuple[str, bytes]:
    return (mf.MANIFEST_NAME, mf.dumps({"format": DELTA_FORMAT, "files": list(entries)}))


def special(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_a_packed_directory_reads_back_checks_and_extracts_to_the_same_files(tmp_path):
    source, target = tmp_path / "source", tmp_path / "target"
    source.mkdir()
    manifest = write_tree(source, FILES)
    body = pack_delta(source, manifest)

    document, members = read_pack(body, WHAT)
    read_manifest = DeltaManifest.from_dict(document, REF)
    check_members(read_manifest.files, members, WHAT)
    extract_members(members, target)

    assert read_manifest == manifest
    assert members == FILES
    mf.verify_files(target, manifest.files)
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == sorted(FILES)


def test_the_manifest_is_the_first_member_so_a_stream_reader_meets_it_first(tmp_path):
    manifest = write_tree(tmp_path, FILES)
    with tarfile.open(fileobj=io.BytesIO(pack_delta(tmp_path, manifest))) as tar:
        names = tar.getnames()
    assert names[0] == mf.MANIFEST_NAME
    assert sorted(names[1:]) == sorted(FILES)


names = st.lists(st.text(string.ascii_lowercase + string.digits + "._-", min_size=1, max_size=8)
                 .filter(lambda part: part not in (".", "..")), min_size=1, max_size=3).map("/".join)


@settings(max_examples=25, deadline=None)
@given(st.dictionaries(names, st.binary(max_size=64), min_size=1, max_size=5))
def test_any_set_of_files_round_trips_through_a_pack(files):
    # A name may not also be a directory of another (a/b and a/b/c): the file system forbids it.
    if any(other.startswith(name + "/") for name in files for other in files):
        return
    with tempfile.TemporaryDirectory() as scratch:
        source, target = Path(scratch, "source"), Path(scratch, "target")
        source.mkdir()
        manifest = write_tree(source, files)
        document, members = read_pack(pack_delta(source, manifest), WHAT)
        check_members(DeltaManifest.from_dict(document, REF).files, members, WHAT)
        extract_members(members, target)
        assert {name: (target / name).read_bytes() for name in files} == files


@pytest.mark.parametrize(("member", "problem"), [
    (special("link", tarfile.SYMTYPE, "/etc/passwd"), "'link' is not a regular file"),
    (special("hard", tarfile.LNKTYPE, mf.MANIFEST_NAME), "'hard' is not a regular file"),
    (special("dir", tarfile.DIRTYPE), "'dir' is not a regular file"),
    (special("fifo", tarfile.FIFOTYPE), "'fifo' is not a regular file"),
    (("/etc/cron.d/x", b"x"), "unsafe path"),
    (("../outside", b"x"), "unsafe path"),
    (("seg/../../outside", b"x"), "unsafe path"),
    (("./seg/x", b"x"), "unsafe path"),
    (("seg\\x", b"x"), "unsafe path"),
    (("seg/x\x01", b"x"), "control character"),
])
def test_a_member_that_is_not_a_regular_file_at_a_safe_path_is_refused(member, problem):
    with pytest.raises(InvalidDeltaError, match=problem) as refused:
        read_pack(tar_of(manifest_member(), member), WHAT)
    assert refused.value.delta_key == WHAT


def test_a_member_held_twice_is_refused():
    body = tar_of(manifest_member(entry("a", b"1")), ("a", b"1"), ("a", b"2"))
    with pytest.raises(InvalidDeltaError, match="holds 'a' twice"):
        read_pack(body, WHAT)


def test_a_pack_without_a_manifest_is_refused():
    with pytest.raises(InvalidDeltaError, match="no manifest.json"):
        read_pack(tar_of(("a", b"1")), WHAT)


@pytest.mark.parametrize(("manifest", "problem"), [(b"{not json", "not valid JSON"), (b"[1, 2]", "not a JSON object")])
def test_an_unreadable_manifest_is_refused(manifest, problem):
    with pytest.raises(InvalidDeltaError, match=problem):
        read_pack(tar_of((mf.MANIFEST_NAME, manifest)), WHAT)


@pytest.mark.parametrize("body", [b"", b"not a tar at all" * 64, tar_of(manifest_member(), ("a", b"1" * 600))[:700]])
def test_a_body_that_is_not_a_whole_tar_is_refused(body):
    with pytest.raises(InvalidDeltaError, match="packed delta|no manifest"):
        read_pack(body, WHAT)


def test_a_body_over_the_size_limit_is_refused_before_it_is_read(monkeypatch):
    monkeypatch.setattr(pack, "MAX_PACK_BYTES", 100)
    with pytest.raises(InvalidDeltaError, match="101 bytes, over the 100 byte limit"):
        read_pack(b"x" * 101, WHAT)  # not a tar: had it been read, the error would say so


@pytest.mark.parametrize(("entries", "members", "problem"), [
    ([entry("a", b"1")], {"a": b"1", "b": b"2"}, r"files its manifest does not list: \['b'\]"),
    ([entry("a", b"1"), entry("b", b"2")], {"a": b"1"}, "checksum: b: missing from the packed delta"),
    ([entry("a", b"1")], {"a": b"12"}, "checksum: a: 2 bytes, manifest says 1"),
    ([entry("a", b"1")], {"a": b"2"}, "checksum: a: sha256 differs from the manifest"),
    ([entry("a", b"1"), entry("a", b"1")], {"a": b"1"}, "manifest lists 'a' twice"),
])
def test_members_that_do_not_match_the_manifest_are_refused(entries, members, problem):
    with pytest.raises(InvalidDeltaError, match=problem):
        check_members([mf.FileEntry.from_dict(e) for e in entries], members, WHAT)


def test_extracting_an_unsafe_name_writes_nothing_outside_the_workdir(tmp_path):
    workdir = tmp_path / "work"
    with pytest.raises(mf.UnsafePathError):
        extract_members({"../escaped": b"x"}, workdir)
    assert not (tmp_path / "escaped").exists()
