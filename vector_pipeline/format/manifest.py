"""Manifests: the list of files (with sha256 and size) that makes a directory complete.

A version exists only once its ``manifest.json`` exists, and it is written last; a delta
(format 2) is one packed object that carries its manifest inside, so it exists whole or not
at all (format 1, still read: a ``manifest.json`` uploaded last). Anything downloaded is
checked against the manifest before use. Paths in a manifest are
relative and are joined to a local root only through ``safe_join``, so a hostile manifest
cannot write outside the directory it is unpacked into.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

MANIFEST_NAME = "manifest.json"
# A manifest is a few KB; anything past this is refused before it is parsed.
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_HASH_CHUNK = 4 * 1024 * 1024


class IntegrityError(RuntimeError):
    """A file does not match its manifest (missing, wrong size or wrong sha256)."""


class UnsafePathError(ValueError):
    """A path or key would escape the directory or prefix it belongs to."""


@dataclass(frozen=True)
class FileEntry:
    path: str  # relative, POSIX separators
    size: int
    sha256: str
    key: str = ""  # the S3 key holding the bytes (may belong to an older version)

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": self.path, "size": self.size, "sha256": self.sha256}
        if self.key:
            entry["key"] = self.key
        return entry

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "FileEntry":
        return cls(
            path=str(values["path"]),
            size=int(values["size"]),
            sha256=str(values["sha256"]),
            key=str(values.get("key", "")),
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_relative_path(relative: str) -> str:
    """Refuse absolute paths, ``..``, backslashes and control characters."""
    if not relative or relative.startswith("/") or "\\" in relative or "\x00" in relative:
        raise UnsafePathError(f"unsafe path in manifest: {relative!r}")
    if any(ord(ch) < 32 for ch in relative):
        raise UnsafePathError(f"control character in path: {relative!r}")
    parts = relative.split("/")
    if any(part in ("..", ".", "") for part in parts) or ":" in parts[0]:
        raise UnsafePathError(f"unsafe path in manifest: {relative!r}")
    return relative


def safe_join(root: Path, relative: str) -> Path:
    """``root / relative``, guaranteed to stay below ``root``."""
    check_relative_path(relative)
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()):
        raise UnsafePathError(f"path {relative!r} escapes {root}")
    return target


def describe_files(directory: Path, skip: Iterable[str] = (MANIFEST_NAME,),
                   skip_dirs: tuple[str, ...] = ()) -> list[FileEntry]:
    """Every regular file below ``directory`` (but not below ``skip_dirs``, each ending
    in "/"), sorted, with size and sha256."""
    skipped = set(skip)
    entries = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        if relative in skipped or relative.startswith(skip_dirs) or relative.endswith(("-wal", "-shm", "-journal")):
            continue
        entries.append(FileEntry(relative, path.stat().st_size, sha256_of(path)))
    return entries


def verify_files(directory: Path, entries: Iterable[FileEntry]) -> None:
    for entry in entries:
        path = safe_join(directory, entry.path)
        if not path.is_file():
            raise IntegrityError(f"{entry.path}: missing")
        size = path.stat().st_size
        if size != entry.size:
            raise IntegrityError(f"{entry.path}: {size} bytes, manifest says {entry.size}")
        digest = sha256_of(path)
        if digest != entry.sha256:
            raise IntegrityError(f"{entry.path}: sha256 {digest[:12]}…, manifest says {entry.sha256[:12]}…")


def dumps(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=1, sort_keys=True).encode()


def loads(body: bytes, what: str) -> dict[str, Any]:
    if len(body) > MAX_MANIFEST_BYTES:
        raise IntegrityError(f"{what}: {len(body)} bytes, over the {MAX_MANIFEST_BYTES} byte limit")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{what}: not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise IntegrityError(f"{what}: not a JSON object")
    return document


def write_json_atomically(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(dumps(document))
    os.replace(tmp, path)
