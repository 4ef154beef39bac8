"""Immutable versions and the one mutable pointer per collection.

Invariant: ``snapshot/<collection>/latest.json`` only ever names a version whose manifest
exists, and a version's manifest is written after every file it lists; versions are never
modified after their manifest exists. The pointer moves by one conditional PUT
(``If-Match`` the ETag read at the start, ``If-None-Match: *`` for the first version), so
a writer that lost a race — or paused past its lock's expiry — changes nothing visible:
its version stays an orphan for GC. The pointer document carries the publish's write id: a
PUT refused because botocore resent it after its first attempt landed is recognised as
published, not reported as a conflict (``put_document_resolving_ambiguity``).

It relies on S3's strong read-after-write consistency and conditional writes; the latter are
checked once per process and bucket before the first upload or publish
(``io/conditional_writes.py``), which refuses a store that ignores them and learns the form of
``If-Match`` it compares. Readers
never list prefixes: pointer → manifest → files, downloaded into a fresh directory that
is renamed into place only when every checksum matched.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Sequence

from ..format import local_copy
from ..format import manifest as mf
from ..io.aws import client, error_code, get_object_or_none, sse_args
from ..io.conditional_writes import (ConditionalWrites, WriteOutcome, checked_bucket,
                                     put_document_resolving_ambiguity)
from ..config import Settings
from .consistency import publish_key, record_publish
from ..format.keys import check_collection_name
from ..faults import checkpoint
from ..format.merge_state import MergeState, load_state
from ..format.pointer import POINTER_NAME, PointerDocument
from ..format.version_manifest import (SNAPSHOT_PREFIX, VersionManifest, is_version_name, manifest_key,
                                       version_prefix)
from ..io.transfer import TransferItem, download_files, upload_files

log = logging.getLogger(__name__)


class PublishOutcome(Enum):
    PUBLISHED = "published"
    CONFLICT = "conflict"  # the pointer moved since it was read: nothing changed


class SnapshotNotFoundError(RuntimeError):
    """No version of the collection has been published (or the named one is gone)."""


@dataclass(frozen=True)
class Pointer:
    """The pointer as read: its document and the ETag a publish must still find."""

    etag: str
    document: PointerDocument

    @property
    def collection(self) -> str:
        return self.document.collection

    @property
    def version(self) -> str:
        return self.document.version


def _is_collection_name(name: str) -> bool:
    try:
        check_collection_name(name)
    except ValueError:
        return False
    return True


class SnapshotStore:
    """Versions, manifests and the pointer of every collection in one bucket."""

    def __init__(self, settings: Settings, bucket: str | None = None) -> None:
        self.settings = settings
        self.bucket = bucket or settings.vectors_bucket
        self.s3 = client("s3", settings)

    def conditional_writes(self) -> ConditionalWrites:
        """This bucket's store, checked to enforce conditional writes (once per process);
        raises ``UnsafeEndpointError`` naming the endpoint when it does not."""
        return checked_bucket(self.s3, self.settings, self.bucket)

    # -- pointer ----------------------------------------------------------------------

    def pointer_key(self, collection: str) -> str:
        return f"{SNAPSHOT_PREFIX}{collection}/{POINTER_NAME}"

    def read_pointer(self, collection: str) -> Pointer | None:
        """The published version and the pointer's ETag, or None before the first publish."""
        response = get_object_or_none(self.s3, self.bucket, self.pointer_key(collection))
        if response is None:
            return None
        document = PointerDocument.from_json(response["Body"].read(), self.pointer_key(collection))
        return Pointer(response["ETag"], document)

    def publish(self, manifest: VersionManifest, expected_etag: str | None,
                previous_document: PointerDocument | None = None) -> PublishOutcome:
        """Swap the pointer to ``manifest``'s version, if it still holds ``expected_etag``.

        ``previous_document`` is the pointer as read with that ETag: its version joins the
        pointer's history (when it was replaced), which GC and point-in-time rollback read.
        On conflict nothing changes and the caller's version is an orphan; safe to retry
        only after re-reading the pointer and re-merging. A refusal met by a resend of this
        very PUT (its first answer lost) is ``PUBLISHED``: the pointer is read back first.
        """
        collection, version = manifest.collection, manifest.version
        document = PointerDocument.publishing(manifest, datetime.now(timezone.utc), previous_document)
        checked = self.conditional_writes()
        put = put_document_resolving_ambiguity(self.s3, self.bucket, self.pointer_key(collection), document.to_dict(),
                                               checked.condition(expected_etag), sse_args(self.settings))
        if put.outcome is WriteOutcome.CONFLICT:
            log.warning("publish of %s/%s lost: the pointer moved", collection, version)
            return PublishOutcome.CONFLICT
        record_publish(publish_key(self.settings, self.bucket, collection), manifest)  # read-your-writes
        log.info("published %s/%s (%d vectors)", collection, version, manifest.vector_count)
        return PublishOutcome.PUBLISHED

    # -- versions ------------------------------------------------------------------------

    def read_manifest(self, collection: str, version: str, any_format: bool = False) -> VersionManifest:
        """The version's manifest; ``any_format`` also returns one of an older snapshot
        format (for GC, which needs only its file keys)."""
        key = manifest_key(collection, version)
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                raise SnapshotNotFoundError(f"version {collection}/{version} has no manifest") from None
            raise
        return VersionManifest.from_json(body, key).check_readable(key, version, any_format)

    def manifest_of(self, collection: str, version: str | None = None) -> VersionManifest:
        """``version``'s manifest, or (None) the published version's."""
        if version is None:
            pointer = self.read_pointer(collection)
            if pointer is None:
                raise SnapshotNotFoundError(f"collection {collection!r} has no published version")
            version = pointer.version
        return self.read_manifest(collection, version)

    def upload_version(self, local_dir: Path, manifest: VersionManifest,
                       parent: VersionManifest | None, untouched: Sequence[str] = ()) -> VersionManifest:
        """Upload a closed version directory, files first and manifest last.

        A file identical (path, size, sha256) to one of the parent version is not sent
        again: the manifest points at the parent's object. An ``untouched`` path (a
        segment this run never opened, a state part it reuses) is the parent's entries as
        they are, whether the work dir holds them or not. Returns the manifest written.
        """
        self.conditional_writes()  # nothing is uploaded to a store that could not publish it safely
        prefix = version_prefix(manifest.collection, manifest.version)
        parent_files = () if parent is None else parent.files
        reusable = {(e.path, e.size, e.sha256): e.key or version_prefix(parent.collection, parent.version) + e.path
                    for e in parent_files if parent is not None}
        kept_files = {path.rstrip("/") for path in untouched}
        kept_dirs = tuple(path + "/" for path in kept_files)
        kept = [replace(e, key=reusable[(e.path, e.size, e.sha256)])
                for e in parent_files if e.path in kept_files or e.path.startswith(kept_dirs)]
        entries, to_send = list(kept), []
        for entry in mf.describe_files(local_dir, skip=(mf.MANIFEST_NAME, local_copy.LOCAL_MANIFEST, *kept_files),
                                       skip_dirs=kept_dirs):
            key = reusable.get((entry.path, entry.size, entry.sha256))
            if key is None:
                key = prefix + entry.path
                to_send.append(TransferItem(local_dir / entry.path, key, entry.size))
            entries.append(mf.FileEntry(entry.path, entry.size, entry.sha256, key))
        entries.sort(key=lambda e: e.path)
        sent = upload_files(self.s3, self.bucket, to_send, sse_args(self.settings), f"version {manifest.collection}/{manifest.version}",
                            on_file_done=lambda done: done == 1 and checkpoint(self.settings, "mid_upload"))
        manifest = replace(manifest, files=tuple(entries), total_bytes=sum(e.size for e in entries),
                           uploaded_bytes=sent, reused_files=len(entries) - len(to_send))
        self.s3.put_object(Bucket=self.bucket, Key=prefix + mf.MANIFEST_NAME, Body=manifest.to_json(),
                           ContentType="application/json", **sse_args(self.settings))
        return manifest

    def download_version(self, manifest: VersionManifest, cache_root: Path) -> Path:
        """The version's directory under ``cache_root``, downloading it if absent.

        Downloads go to a fresh sibling directory, every file is checked against the
        manifest, and only then is it renamed into place: a reader sees a whole version or
        none. Returns ``cache_root/<collection>/<version>``.
        """
        collection, version = manifest.collection, manifest.version
        target = cache_root / collection / version
        if target.is_dir():
            if local_copy.is_local_copy_of(target, manifest):
                return target
            # Same name, other bytes (another bucket or endpoint used this cache): set aside.
            shutil.rmtree(target.rename(target.with_name(f".stale-{uuid.uuid4().hex[:8]}")), ignore_errors=True)
        entries = manifest.files
        with local_copy.staged_local_copy(cache_root / collection / f".incoming-{version}-{uuid.uuid4().hex[:8]}",
                                  target, manifest) as staging:
            items = [TransferItem(mf.safe_join(staging, e.path), self.checked_key(e, collection), e.size)
                     for e in entries]
            download_files(self.s3, self.bucket, items, f"version {collection}/{version}")
            mf.verify_files(staging, entries)
        return target

    def require_files(self, manifest: VersionManifest) -> None:
        """Raise (the store's not-found error) unless every object the manifest lists is
        there: a version GC already took apart is not made current again."""
        for entry in manifest.files:
            self.s3.head_object(Bucket=self.bucket, Key=entry.key)

    def checked_key(self, entry: mf.FileEntry, collection: str) -> str:
        """The S3 key of a manifest entry, if it lies under ``snapshot/<a collection>/``: the
        collection's own, or (a fork, ``forks.py``) the one whose objects it shares."""
        key = entry.key
        parts = key.split("/")
        if not key.startswith(SNAPSHOT_PREFIX) or len(parts) < 4 or ".." in parts or not _is_collection_name(parts[1]):
            raise mf.UnsafePathError(f"manifest key {key!r} is outside snapshot/{collection}/ "
                                   "(or the snapshot/ of another collection, which a fork shares)")
        return key

    def download_entries(self, manifest: VersionManifest, paths: Sequence[str], local_dir: Path) -> int:
        """Download the version's files at ``paths`` into ``local_dir`` (a private work dir),
        each checked against the manifest; returns the bytes downloaded."""
        wanted = set(paths)
        entries = [e for e in manifest.files if e.path in wanted]
        if len(entries) != len(wanted):
            raise mf.IntegrityError(f"version {manifest.version} has no {sorted(wanted - {e.path for e in entries})}")
        collection = manifest.collection
        items = [TransferItem(mf.safe_join(local_dir, e.path), self.checked_key(e, collection), e.size)
                 for e in entries]
        for item in items:
            item.local_path.parent.mkdir(parents=True, exist_ok=True)
        received = download_files(self.s3, self.bucket, items, f"{len(items)} files of {collection}/{manifest.version}")
        mf.verify_files(local_dir, entries)
        return received

    def read_state_part(self, collection: str, entry: mf.FileEntry) -> bytes:
        """One state part straight from S3 (one GET), checked against its sha256."""
        body = self.s3.get_object(Bucket=self.bucket, Key=self.checked_key(entry, collection))["Body"].read()
        if hashlib.sha256(body).hexdigest() != entry.sha256:
            raise mf.IntegrityError(f"{entry.key}: sha256 does not match the manifest")
        return body

    def read_merge_state(self, manifest: VersionManifest) -> MergeState:
        """The version's merge state (shared, read-only: ``copy()`` it to change it), from
        the in-process cache or its parts read straight from S3."""
        collection = manifest.collection
        return load_state(self.bucket, collection, manifest, lambda entry: self.read_state_part(collection, entry))

    def list_versions(self, collection: str) -> list[str]:
        """Version names under the collection's prefix (for GC and status, never readers)."""
        paginator = self.s3.get_paginator("list_objects_v2")
        versions = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{SNAPSHOT_PREFIX}{collection}/",
                                       Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"].rstrip("/").rsplit("/", 1)[-1]
                if is_version_name(name):
                    versions.append(name)
        return sorted(versions)

    def list_collections(self) -> list[str]:
        paginator = self.s3.get_paginator("list_objects_v2")
        names = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=SNAPSHOT_PREFIX, Delimiter="/"):
            names.extend(c["Prefix"][len(SNAPSHOT_PREFIX):].rstrip("/") for c in page.get("CommonPrefixes", []))
        return sorted(names)
