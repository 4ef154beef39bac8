"""A delta as one object: its chroma directory and manifest packed in one tar (format 2).

Invariant: a packed delta is written by one PUT, so it is complete or absent, with nothing
to order; its ``manifest.json`` (written first, so a stream reader meets it first) lists
every other member with size and sha256. Unpacking refuses anything but regular files at safe relative paths, members
the manifest does not list (or lists twice), a missing member and a checksum that does not
match; it raises ``InvalidDeltaError`` naming the problem before anything is extracted, so
nothing half-checked reaches the disk.

Why: format 1 (a file per chroma file, manifest last) cost six PUTs to write, seven
requests to read and seven to archive per delta; on S3 those requests, not the bytes,
were the price of a small delta.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import Any, Sequence

from . import manifest as mf
from .delta_manifest import DeltaManifest
from .keys import PACK_NAME, InvalidDeltaError

__all__ = ["MAX_PACK_BYTES", "PACK_NAME", "check_members", "extract_members", "pack_delta", "read_pack"]
# A delta of 10,000 vectors of 1,536 floats packs to ~0.1 GB; past this it is refused unread.
MAX_PACK_BYTES = 2 * 1024 * 1024 * 1024


def pack_delta(directory: Path, manifest: DeltaManifest) -> bytes:
    """The tar of ``manifest`` (first) and the files it lists, read from ``directory``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, mf.MANIFEST_NAME, manifest.to_json())
        for entry in manifest.files:
            _add(tar, entry.path, (directory / entry.path).read_bytes())
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, body: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(body)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(body))


def read_pack(body: bytes, what: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest's JSON object and every other member's bytes; raises ``InvalidDeltaError``
    for anything but a tar of regular files at safe paths. The caller reads the manifest
    (``DeltaManifest.from_dict``), then checks the members against it (``check_members``),
    before extracting them."""
    if len(body) > MAX_PACK_BYTES:
        raise InvalidDeltaError(f"packed delta is {len(body)} bytes, over the {MAX_PACK_BYTES} byte limit", what)
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:") as tar:
            for info in tar:
                if not info.isreg():
                    raise InvalidDeltaError(f"packed delta member {info.name!r} is not a regular file", what)
                try:
                    mf.check_relative_path(info.name)
                except mf.UnsafePathError as exc:
                    raise InvalidDeltaError(str(exc), what) from None
                if info.name in members:
                    raise InvalidDeltaError(f"packed delta holds {info.name!r} twice", what)
                handle = tar.extractfile(info)
                members[info.name] = handle.read() if handle is not None else b""
    except (tarfile.TarError, EOFError) as exc:
        raise InvalidDeltaError(f"packed delta is not a readable tar ({exc})", what) from None
    if mf.MANIFEST_NAME not in members:
        raise InvalidDeltaError("packed delta has no manifest.json", what)
    try:
        manifest = mf.loads(members.pop(mf.MANIFEST_NAME), what + mf.MANIFEST_NAME)
    except mf.IntegrityError as exc:
        raise InvalidDeltaError(str(exc), what) from None
    return manifest, members


def check_members(entries: Sequence[mf.FileEntry], members: dict[str, bytes], what: str) -> None:
    """Every member is listed once, with its size and sha256, and nothing listed is missing."""
    listed: set[str] = set()
    for checked in entries:
        body = members.get(checked.path)
        if checked.path in listed:
            raise InvalidDeltaError(f"manifest lists {checked.path!r} twice", what)
        if body is None:
            raise InvalidDeltaError(f"checksum: {checked.path}: missing from the packed delta", what)
        if len(body) != checked.size:
            raise InvalidDeltaError(f"checksum: {checked.path}: {len(body)} bytes, manifest says {checked.size}", what)
        if hashlib.sha256(body).hexdigest() != checked.sha256:
            raise InvalidDeltaError(f"checksum: {checked.path}: sha256 differs from the manifest", what)
        listed.add(checked.path)
    unlisted = sorted(set(members) - listed)
    if unlisted:
        raise InvalidDeltaError(f"packed delta holds files its manifest does not list: {unlisted[:3]}", what)


def extract_members(members: dict[str, bytes], workdir: Path) -> None:
    """Write checked members below ``workdir`` (paths joined only through ``safe_join``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name, body in members.items():
        target = mf.safe_join(workdir, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
