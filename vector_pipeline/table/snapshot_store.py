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
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, Sequence

from ..format import manifest as mf
from ..io.aws import client, error_code, get_object_or_none, sse_args
from ..io.conditional_writes import (ConditionalWrites, WriteOutcome, checked_bucket,
                                     put_document_resolving_ambiguity)
from ..config import Settings
from .consistency import publish_key, record_publish
from ..format.keys import check_collection_name
from ..faults import checkpoint
from ..format.merge_state import MergeState, load_state
from ..io.transfer import TransferItem, download_files, upload_files

log = logging.getLogger(__name__)

SNAPSHOT_PREFIX = "snapshot/"
POINTER_NAME = "latest.json"
SNAPSHOT_FORMAT = "vector_pipeline.snapshot/3"  # 3: the merge state as a log of parts (format/merge_state.py)
# 2: segmented (format/segments.py), one whole state.json.gz per version: read as a log of one part.
READABLE_FORMATS = ("vector_pipeline.snapshot/2", SNAPSHOT_FORMAT)
HISTORY_LENGTH = 500  # publishes the pointer remembers (GC, rollback --as-of)
_VERSION_RE = re.compile(r"^(\d{8})-(\d{8}T\d{6}\d{3}Z)$")


class PublishOutcome(Enum):
    PUBLISHED = "published"
    CONFLICT = "conflict"  # the pointer moved since it was read: nothing changed


class SnapshotNotFoundError(RuntimeError):
    """No version of the collection has been published (or the named one is gone)."""


class UnsupportedFormatError(mf.IntegrityError):
    """A version written in another snapshot format (format 1 had one ``chroma/`` dir)."""


@dataclass(frozen=True)
class Pointer:
    collection: str
    version: str
    manifest_key: str
    etag: str
    document: dict[str, Any]


def _is_collection_name(name: str) -> bool:
    try:
        check_collection_name(name)
    except ValueError:
        return False
    return True


def version_number(version: str) -> int:
    match = _VERSION_RE.match(version)
    if not match:
        raise ValueError(f"not a snapshot version: {version!r}")
    return int(match.group(1))


def next_version(previous: str | None, now: datetime | None = None) -> str:
    number = 0 if previous is None else version_number(previous)
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S%f")[:-3] + "Z"
    return f"{number + 1:08d}-{stamp}"


def version_prefix(collection: str, version: str) -> str:
    return f"{SNAPSHOT_PREFIX}{collection}/{version}/"


def pointer_history(previous_document: dict[str, Any] | None, replaced_at: datetime) -> list[dict[str, Any]]:
    """The versions the pointer named before, newest last, each with when it was published
    and when it stopped being current; the last ``HISTORY_LENGTH`` publishes."""
    if not previous_document:
        return []
    entry = {"version": previous_document["version"], "published_at": previous_document.get("published_at"),
             "replaced_at": replaced_at.isoformat()}
    return [*previous_document.get("history", []), entry][-HISTORY_LENGTH:]


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
        document = mf.loads(response["Body"].read(), self.pointer_key(collection))
        version = str(document["version"])
        version_number(version)
        return Pointer(collection, version, str(document["manifest_key"]), response["ETag"], document)

    def publish(self, manifest: dict[str, Any], expected_etag: str | None,
                previous_document: dict[str, Any] | None = None) -> PublishOutcome:
        """Swap the pointer to ``manifest``'s version, if it still holds ``expected_etag``.

        ``previous_document`` is the pointer as read with that ETag: its version joins the
        pointer's history (when it was replaced), which GC and point-in-time rollback read.
        On conflict nothing changes and the caller's version is an orphan; safe to retry
        only after re-reading the pointer and re-merging. A refusal met by a resend of this
        very PUT (its first answer lost) is ``PUBLISHED``: the pointer is read back first.
        """
        collection, version = manifest["collection"], manifest["version"]
        now = datetime.now(timezone.utc)
        document = {
            "collection": collection,
            "version": version,
            "manifest_key": version_prefix(collection, version) + mf.MANIFEST_NAME,
            "vector_count": manifest["vector_count"],
            "parent_version": manifest.get("parent_version"),
            "fence": manifest.get("fence"),
            "published_at": now.isoformat(),
            "history": pointer_history(previous_document, now),
        }
        checked = self.conditional_writes()
        put = put_document_resolving_ambiguity(self.s3, self.bucket, self.pointer_key(collection), document,
                                               checked.condition(expected_etag), sse_args(self.settings))
        if put.outcome is WriteOutcome.CONFLICT:
            log.warning("publish of %s/%s lost: the pointer moved", collection, version)
            return PublishOutcome.CONFLICT
        record_publish(publish_key(self.settings, self.bucket, collection), manifest)  # read-your-writes
        log.info("published %s/%s (%d vectors)", collection, version, manifest["vector_count"])
        return PublishOutcome.PUBLISHED

    # -- versions ------------------------------------------------------------------------

    def read_manifest(self, collection: str, version: str, any_format: bool = False) -> dict[str, Any]:
        """The version's manifest; ``any_format`` also returns one of an older snapshot
        format (for GC, which needs only its file keys)."""
        key = version_prefix(collection, version) + mf.MANIFEST_NAME
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:
            if error_code(exc) in ("NoSuchKey", "404"):
                raise SnapshotNotFoundError(f"version {collection}/{version} has no manifest") from None
            raise
        manifest = mf.loads(body, key)
        written_in = str(manifest.get("format", ""))
        if manifest.get("version") != version or not written_in.startswith("vector_pipeline.snapshot/"):
            raise mf.IntegrityError(f"{key}: not the manifest of version {version}")
        if written_in not in READABLE_FORMATS and not any_format:
            raise UnsupportedFormatError(
                f"{key}: written in {written_in}, this build reads {SNAPSHOT_FORMAT}; rebuild the "
                f"collection from archive/ (the Dagster compaction job with rebuild_from_archive, or maintenance.rebuild_from_archive)")
        return manifest

    def manifest_of(self, collection: str, version: str | None = None) -> dict[str, Any]:
        """``version``'s manifest, or (None) the published version's."""
        if version is None:
            pointer = self.read_pointer(collection)
            if pointer is None:
                raise SnapshotNotFoundError(f"collection {collection!r} has no published version")
            version = pointer.version
        return self.read_manifest(collection, version)

    def upload_version(self, local_dir: Path, manifest: dict[str, Any],
                       parent: dict[str, Any] | None, untouched: Sequence[str] = ()) -> dict[str, Any]:
        """Upload a closed version directory, files first and manifest last.

        A file identical (path, size, sha256) to one of the parent version is not sent
        again: the manifest points at the parent's object. An ``untouched`` path (a
        segment this run never opened, a state part it reuses) is the parent's entries as
        they are, whether the work dir holds them or not. Returns the manifest written.
        """
        self.conditional_writes()  # nothing is uploaded to a store that could not publish it safely
        prefix = version_prefix(manifest["collection"], manifest["version"])
        reusable = {(e["path"], e["size"], e["sha256"]): e.get("key") or
                    version_prefix(parent["collection"], parent["version"]) + e["path"]
                    for e in (parent or {}).get("files", [])}
        kept_files = {path.rstrip("/") for path in untouched}
        kept_dirs = tuple(path + "/" for path in kept_files)
        kept = [mf.FileEntry.from_dict({**e, "key": reusable[(e["path"], e["size"], e["sha256"])]})
                for e in (parent or {}).get("files", []) if e["path"] in kept_files or e["path"].startswith(kept_dirs)]
        entries, to_send = list(kept), []
        for entry in mf.describe_files(local_dir, skip=(mf.MANIFEST_NAME, mf.LOCAL_MANIFEST, *kept_files),
                                       skip_dirs=kept_dirs):
            key = reusable.get((entry.path, entry.size, entry.sha256))
            if key is None:
                key = prefix + entry.path
                to_send.append(TransferItem(local_dir / entry.path, key, entry.size))
            entries.append(mf.FileEntry(entry.path, entry.size, entry.sha256, key))
        entries.sort(key=lambda e: e.path)
        sent = upload_files(self.s3, self.bucket, to_send, sse_args(self.settings), f"version {manifest['collection']}/{manifest['version']}",
                            on_file_done=lambda done: done == 1 and checkpoint(self.settings, "mid_upload"))
        manifest = {**manifest, "files": [e.as_dict() for e in entries],
                    "total_bytes": sum(e.size for e in entries), "uploaded_bytes": sent,
                    "reused_files": len(entries) - len(to_send)}
        self.s3.put_object(Bucket=self.bucket, Key=prefix + mf.MANIFEST_NAME, Body=mf.dumps(manifest),
                           ContentType="application/json", **sse_args(self.settings))
        return manifest

    def download_version(self, manifest: dict[str, Any], cache_root: Path) -> Path:
        """The version's directory under ``cache_root``, downloading it if absent.

        Downloads go to a fresh sibling directory, every file is checked against the
        manifest, and only then is it renamed into place: a reader sees a whole version or
        none. Returns ``cache_root/<collection>/<version>``.
        """
        collection, version = manifest["collection"], manifest["version"]
        target = cache_root / collection / version
        if target.is_dir():
            if mf.is_local_copy_of(target, manifest):
                return target
            # Same name, other bytes (another bucket or endpoint used this cache): set aside.
            shutil.rmtree(target.rename(target.with_name(f".stale-{uuid.uuid4().hex[:8]}")), ignore_errors=True)
        entries = [mf.FileEntry.from_dict(e) for e in manifest["files"]]
        with mf.staged_local_copy(cache_root / collection / f".incoming-{version}-{uuid.uuid4().hex[:8]}",
                                  target, manifest) as staging:
            items = [TransferItem(mf.safe_join(staging, e.path), self.checked_key(e, collection), e.size)
                     for e in entries]
            download_files(self.s3, self.bucket, items, f"version {collection}/{version}")
            mf.verify_files(staging, entries)
        return target

    def checked_key(self, entry: mf.FileEntry, collection: str) -> str:
        """The S3 key of a manifest entry, if it lies under ``snapshot/<a collection>/``: the
        collection's own, or (a fork, ``forks.py``) the one whose objects it shares."""
        key = entry.key
        parts = key.split("/")
        if not key.startswith(SNAPSHOT_PREFIX) or len(parts) < 4 or ".." in parts or not _is_collection_name(parts[1]):
            raise mf.UnsafePathError(f"manifest key {key!r} is outside snapshot/{collection}/ "
                                   "(or the snapshot/ of another collection, which a fork shares)")
        return key

    def download_entries(self, manifest: dict[str, Any], paths: Sequence[str], local_dir: Path) -> int:
        """Download the version's files at ``paths`` into ``local_dir`` (a private work dir),
        each checked against the manifest; returns the bytes downloaded."""
        wanted = set(paths)
        entries = [mf.FileEntry.from_dict(e) for e in manifest["files"] if e["path"] in wanted]
        if len(entries) != len(wanted):
            raise mf.IntegrityError(f"version {manifest['version']} has no {sorted(wanted - {e.path for e in entries})}")
        collection = str(manifest["collection"])
        items = [TransferItem(mf.safe_join(local_dir, e.path), self.checked_key(e, collection), e.size)
                 for e in entries]
        for item in items:
            item.local_path.parent.mkdir(parents=True, exist_ok=True)
        received = download_files(self.s3, self.bucket, items, f"{len(items)} files of {collection}/{manifest['version']}")
        mf.verify_files(local_dir, entries)
        return received

    def read_state_part(self, collection: str, entry: dict[str, Any]) -> bytes:
        """One state part straight from S3 (one GET), checked against its sha256."""
        checked = mf.FileEntry.from_dict(entry)
        body = self.s3.get_object(Bucket=self.bucket, Key=self.checked_key(checked, collection))["Body"].read()
        if hashlib.sha256(body).hexdigest() != checked.sha256:
            raise mf.IntegrityError(f"{checked.key}: sha256 does not match the manifest")
        return body

    def read_merge_state(self, manifest: dict[str, Any]) -> MergeState:
        """The version's merge state (shared, read-only: ``copy()`` it to change it), from
        the in-process cache or its parts read straight from S3."""
        collection = str(manifest["collection"])
        return load_state(self.bucket, collection, manifest, lambda entry: self.read_state_part(collection, entry))

    def list_versions(self, collection: str) -> list[str]:
        """Version names under the collection's prefix (for GC and status, never readers)."""
        paginator = self.s3.get_paginator("list_objects_v2")
        versions = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=f"{SNAPSHOT_PREFIX}{collection}/",
                                       Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"].rstrip("/").rsplit("/", 1)[-1]
                if _VERSION_RE.match(name):
                    versions.append(name)
        return sorted(versions)

    def list_collections(self) -> list[str]:
        paginator = self.s3.get_paginator("list_objects_v2")
        names = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=SNAPSHOT_PREFIX, Delimiter="/"):
            names.extend(c["Prefix"][len(SNAPSHOT_PREFIX):].rstrip("/") for c in page.get("CommonPrefixes", []))
        return sorted(names)
