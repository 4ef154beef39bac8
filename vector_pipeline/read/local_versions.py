"""Readers' local copies of versions, built from what they already hold.

Invariant: every file a reader downloads is checked against the manifest's sha256 and then
kept pristine, once, in a content-addressed store (``.blobs/<sha256>``, read-only); a
version directory appears by one rename once every file and segment it names is in
place, so a reader sees a whole version or none. When the pointer moves, only files whose
sha256 the store lacks are downloaded: a version that appends a segment costs that segment
and its masks, not the base again. The merge state's parts are fetched only when fresh
reads need them (``blob``); being immutable, each part is fetched once, whatever versions
reuse it.

Chroma writes into a directory it opens, even to read: ``chroma.sqlite3`` always, and
the HNSW files too when its index lags its log (a segment of a few records). So each
segment is opened from a working directory of its own, ``.segments/<name>-<digest>``,
copied once from the pristine blobs; a version's ``segments/<name>`` is a symlink to it,
so every version holding a segment shares one working directory and a reader keeps that
segment open across versions. Files chroma does not open (masks) are hard links to their
blobs. The blobs stay byte-identical to the manifests; the price is a second local copy of
each segment.

Layout under ``<root>/<collection>/``::

    .blobs/<sha256>                 pristine files, one per content
    .segments/<name>-<digest>/      a segment as chroma opens it
    <version>/                      .manifest.json, masks, segments/<name> -> ../../.segments/…
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..format import local_copy
from ..format import manifest as mf
from ..format.segments import Segment
from ..format.version_manifest import VersionManifest, segments_of
from ..format.merge_state import state_part_paths
from ..table.snapshot_store import SnapshotStore
from ..io.transfer import TransferItem, download_files

log = logging.getLogger(__name__)

BLOBS_DIR = ".blobs"
SEGMENT_DIRS = ".segments"
INCOMING = ".incoming-"
# Unreferenced blobs and dirs are pruned only past this age: another process sharing the
# cache root may be building a version from them right now.
PRUNE_GRACE_SECONDS = 300.0
_SMALL_FILE_BYTES = 8 * 1024 * 1024  # below this, one plain GET per file
_GET_WORKERS = 8


@dataclass
class FetchStats:
    """What this cache downloaded: requests (one GET per file) and bytes."""

    files: int = 0
    bytes: int = 0


def segment_key(manifest: VersionManifest, segment: Segment) -> str:
    """Names a segment's content: equal keys, byte-identical files."""
    prefix = segment.path + "/"
    digest = hashlib.sha256()
    for entry in sorted(manifest.files, key=lambda e: e.path):
        if entry.path.startswith(prefix):
            digest.update(f"{entry.path[len(prefix):]}\0{entry.sha256}\n".encode())
    return f"{segment.name}-{digest.hexdigest()[:16]}"


def segment_keys(manifest: VersionManifest) -> list[str]:
    """The content keys of the version's segments, base first."""
    return [segment_key(manifest, s) for s in segments_of(manifest)]


class LocalVersions:
    """The local copies of one collection's versions under ``root/<collection>``."""

    def __init__(self, store: SnapshotStore, root: Path, collection: str) -> None:
        self.store = store
        self.collection = collection
        self.home = root / collection
        self.blobs = self.home / BLOBS_DIR
        self.segment_dirs = self.home / SEGMENT_DIRS
        self.fetched = FetchStats()

    # -- building a version ----------------------------------------------------------------

    def materialize(self, manifest: VersionManifest) -> Path:
        """``<root>/<collection>/<version>``, downloading only the files not held yet."""
        version = manifest.version
        target = self.home / version
        if target.is_dir():
            if local_copy.is_local_copy_of(target, manifest) and self._segments_present(target, manifest):
                return target
            # Same name, other bytes (another bucket or endpoint used this cache): set aside.
            shutil.rmtree(target.rename(target.with_name(f".stale-{uuid.uuid4().hex[:8]}")), ignore_errors=True)
        entries = manifest.files
        for entry in entries:  # a hostile manifest is refused before anything is downloaded
            mf.check_relative_path(entry.path)
            self.store.checked_key(entry, self.collection)
        on_demand = set(state_part_paths(manifest))  # only fresh reads need the merge state
        self._fetch([e for e in entries if e.path not in on_demand])
        segments = segments_of(manifest)
        working = {s.name: self._segment_dir(manifest, s, entries) for s in segments}
        in_segment = tuple(s.path + "/" for s in segments)
        with local_copy.staged_local_copy(self.home / f"{INCOMING}{version}-{uuid.uuid4().hex[:8]}", target,
                                          manifest) as staging:
            for entry in entries:
                if entry.path not in on_demand and not entry.path.startswith(in_segment):
                    _place(self.blob_path(entry.sha256), mf.safe_join(staging, entry.path), link=True)
            for segment in segments:
                link = mf.safe_join(staging, segment.path)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(os.path.relpath(working[segment.name], link.parent))
        return target

    def segment_path(self, manifest: VersionManifest, segment: Segment) -> Path:
        """The working directory a segment is opened from (shared by every version holding it)."""
        return self.segment_dirs / segment_key(manifest, segment)

    def blob(self, manifest: VersionManifest, path: str) -> Path | None:
        """The pristine copy of one file of the version (fetched now if not held), or None
        if the version has no such file."""
        entry = manifest.file(path)
        if entry is None:
            return None
        self._fetch([entry])
        return self.blob_path(entry.sha256)

    def blob_path(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise mf.IntegrityError(f"not a sha256 in the manifest: {sha256!r}")
        return self.blobs / sha256

    def _fetch(self, entries: Iterable[mf.FileEntry]) -> None:
        """Download the entries whose content is not held; each checked, then kept read-only."""
        wanted: dict[str, mf.FileEntry] = {}
        now = time.time()
        for entry in entries:
            blob = self.blob_path(entry.sha256)
            if blob.exists():
                os.utime(blob, (now, now))  # in use: not pruned by another process sharing the root
            else:
                wanted.setdefault(entry.sha256, entry)
        if not wanted:
            return
        incoming = self.blobs / f"{INCOMING}{uuid.uuid4().hex[:8]}"
        try:
            incoming.mkdir(parents=True)
            items = [TransferItem(incoming / sha, self.store.checked_key(entry, self.collection), entry.size)
                     for sha, entry in wanted.items()]
            small = [i for i in items if i.size <= _SMALL_FILE_BYTES]
            received = download_files(self.store.s3, self.store.bucket, [i for i in items if i not in small],
                                      f"{len(items) - len(small)} new files of {self.collection}")
            received += self._get_small(small)
            for sha, entry in wanted.items():
                try:
                    mf.verify_files(incoming, [mf.FileEntry(sha, entry.size, sha)])
                except mf.IntegrityError as exc:
                    raise mf.IntegrityError(f"{entry.path} of {self.collection}: {exc}") from None
                os.chmod(incoming / sha, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
                os.replace(incoming / sha, self.blob_path(sha))
            self.fetched.files += len(items)
            self.fetched.bytes += received
        finally:
            shutil.rmtree(incoming, ignore_errors=True)

    def _get_small(self, items: list[TransferItem]) -> int:
        """One GET per file, side by side: a new segment is mostly small files, for which the
        transfer manager's HEAD and threads cost more than the bytes."""
        def one(item: TransferItem) -> int:
            body = self.store.s3.get_object(Bucket=self.store.bucket, Key=item.key)["Body"].read()
            item.local_path.write_bytes(body)
            return len(body)

        if not items:
            return 0
        with ThreadPoolExecutor(max_workers=min(_GET_WORKERS, len(items))) as pool:
            return sum(pool.map(one, items))

    def _segment_dir(self, manifest: VersionManifest, segment: Segment, entries: Sequence[mf.FileEntry]) -> Path:
        working = self.segment_path(manifest, segment)
        if working.is_dir():
            now = time.time()
            os.utime(working, (now, now))  # in use: not pruned by another process sharing the root
            return working
        prefix = segment.path + "/"
        staging = self.segment_dirs / f"{INCOMING}{working.name}-{uuid.uuid4().hex[:8]}"
        try:
            staging.mkdir(parents=True)
            for entry in entries:
                if entry.path.startswith(prefix):
                    # copied, never linked: chroma may write any of them
                    _place(self.blob_path(entry.sha256), mf.safe_join(staging, entry.path[len(prefix):]), link=False)
            try:
                os.rename(staging, working)
            except OSError:
                if not working.is_dir():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return working

    def _segments_present(self, version_dir: Path, manifest: VersionManifest) -> bool:
        """Each segment is a link to its working copy (a dir of an older layout is rebuilt)."""
        return all((version_dir / s.path).is_symlink() and (version_dir / s.path).resolve()
                   == self.segment_path(manifest, s).resolve() for s in segments_of(manifest))

    # -- pruning ---------------------------------------------------------------------------

    def prune(self, keep: Iterable[VersionManifest], grace_seconds: float = PRUNE_GRACE_SECONDS) -> None:
        """Drop versions, segment dirs and blobs that no kept manifest names (blobs and
        segment dirs only once unused for ``grace_seconds``)."""
        kept = list(keep)
        versions = {m.version for m in kept}
        segments = {segment_key(m, s) for m in kept for s in segments_of(m)}
        blobs = {e.sha256 for m in kept for e in m.files}
        horizon = time.time() - grace_seconds
        if not self.home.is_dir():
            return
        for child in self.home.iterdir():
            if not child.name.startswith(".") and child.name not in versions:
                shutil.rmtree(child, ignore_errors=True)
            elif child.name.startswith((INCOMING, ".stale-")) and _older_than(child, horizon):
                shutil.rmtree(child, ignore_errors=True)
        for directory, names in ((self.segment_dirs, segments), (self.blobs, blobs)):
            if directory.is_dir():
                for child in directory.iterdir():
                    if child.name not in names and _older_than(child, horizon):
                        if child.is_dir():
                            shutil.rmtree(child, ignore_errors=True)
                        else:
                            child.unlink(missing_ok=True)


def _place(blob: Path, target: Path, link: bool) -> None:
    """``target`` as a hard link to ``blob`` (a copy where chroma writes, or where links fail)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(blob, target)
            return
        except OSError:  # another filesystem, or one without hard links
            pass
    shutil.copyfile(blob, target)
    os.chmod(target, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)


def _older_than(path: Path, horizon: float) -> bool:
    try:
        return path.lstat().st_mtime < horizon
    except FileNotFoundError:
        return False
