"""Local copies of a version: a directory that holds all of a version's files, or is absent.

Invariant: a local copy is built in a private staging directory and renamed into place
whole, with its own record of the manifest it copies (``.manifest.json``); a directory is
taken as a copy of a version only when that record lists the version's files exactly, so a
half-written directory, or one left by another bucket under the same name, is never used.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .version_manifest import VersionManifest

LOCAL_MANIFEST = ".manifest.json"  # a local copy's own record of what it holds


def is_local_copy_of(local_dir: Path, manifest: VersionManifest) -> bool:
    """Whether ``local_dir`` was written as a whole copy of ``manifest``'s version."""
    try:
        held = json.loads((local_dir / LOCAL_MANIFEST).read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(held, dict) and held.get("files") == [e.as_dict() for e in manifest.files]


def mark_local_copy(local_dir: Path, manifest: VersionManifest) -> None:
    (local_dir / LOCAL_MANIFEST).write_bytes(manifest.to_json())


@contextmanager
def staged_local_copy(staging: Path, target: Path, manifest: VersionManifest) -> Iterator[Path]:
    """Build a whole local copy of a version in ``staging`` (the caller fills it), then mark it
    and rename it to ``target`` in one step: a reader sees the whole copy or none. If another
    process placed the same copy first, theirs is kept; a failure leaves nothing behind."""
    try:
        staging.mkdir(parents=True)
        yield staging
        mark_local_copy(staging, manifest)
        try:
            os.rename(staging, target)
        except OSError:
            if not target.is_dir():  # another process won the same rename: use theirs
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
