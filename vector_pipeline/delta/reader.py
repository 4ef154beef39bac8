"""Reading a delta back: manifest, files, checksums and records, every one checked.

Invariant: a ``LoadedDelta`` is returned only for a delta whose manifest is well formed and
names this delta (``format/delta_manifest.py``), whose every file matched its sha256, and whose records obey the
producer's rules (``delta/records.py``); anything else raises ``InvalidDeltaError`` with the
reason (the caller quarantines it), or ``FileNotFoundError`` while the delta is not
complete. Both formats are read: 2, one packed object (``format/pack.py``), and 1, a file per
chroma file beside a ``manifest.json`` written last.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..format import manifest as mf
from .. import progress
from ..io.aws import error_code
from ..chroma.client import ChromaDBClient
from ..format.keys import (ARCHIVE_PREFIX, DELTA_PREFIX, PACK_NAME, QUARANTINE_PREFIX, DeltaRef, InvalidDeltaError,
                         delta_key_for, is_completion_marker, parse_delta_key)
from ..format.delta_manifest import DELTA_FORMAT, DELTA_FORMAT_FILES, DeltaManifest
from ..format.pack import MAX_PACK_BYTES, check_members, extract_members, read_pack
from .records import Problems, check_ids, check_metadata
from ..format.loaded_delta import LoadedDelta
from ..io.transfer import TransferItem, download_files

log = logging.getLogger(__name__)


def list_deltas(s3: Any, bucket: str, prefix: str, start_after: str | None = None,
                on_page: Any = None) -> list[DeltaRef]:
    """The complete deltas below ``prefix`` (``delta/``, ``archive/``, a collection of
    either), oldest first; a listed key that is no delta's is logged and skipped."""
    within = next(p for p in (DELTA_PREFIX, ARCHIVE_PREFIX) if prefix.startswith(p))
    options: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if start_after:
        options["StartAfter"] = start_after
    refs: dict[tuple[str, str], DeltaRef] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(**options):
        if on_page is not None:
            on_page()
        for obj in page.get("Contents", []):
            if not is_completion_marker(obj["Key"]):
                continue
            try:
                ref = parse_delta_key(obj["Key"], prefixes=(within,))
            except InvalidDeltaError as exc:
                log.warning("ignoring %s: %s", obj["Key"], exc.reason)
                continue
            refs[(ref.delta_id, ref.collection)] = ref
    return [refs[k] for k in sorted(refs)]


# -- reading a delta (compactor side) ---------------------------------------------------------


@dataclass
class StoredDelta:
    """A delta found in the bucket: its checked manifest, and (packed) its checked files."""

    ref: DeltaRef
    prefix: str
    manifest: DeltaManifest
    members: dict[str, bytes] | None  # None: format 1, files still to download
    fetched_bytes: int = 0


def find_delta(s3: Any, bucket: str, ref: DeltaRef, prefix: str = DELTA_PREFIX) -> StoredDelta:
    """The delta under ``prefix``, packed (one GET) or as files (its manifest read).

    Raises ``FileNotFoundError`` while it is not complete there, ``InvalidDeltaError`` if poison."""
    base = delta_key_for(ref.collection, ref.delta_id, prefix)
    body = _get_limited(s3, bucket, base + PACK_NAME, MAX_PACK_BYTES, ref)
    if body is not None:
        document, members = read_pack(body, ref.key)
        manifest = DeltaManifest.from_dict(document, ref, DELTA_FORMAT)
        check_members(manifest.files, members, ref.key)
        return StoredDelta(ref, prefix, manifest, members, len(body))
    body = _get_limited(s3, bucket, base + mf.MANIFEST_NAME, mf.MAX_MANIFEST_BYTES, ref)
    if body is None:
        raise FileNotFoundError(base + PACK_NAME)
    manifest = DeltaManifest.from_json(body, ref, DELTA_FORMAT_FILES, base + mf.MANIFEST_NAME)
    return StoredDelta(ref, prefix, manifest, None, len(body) + manifest.file_bytes)


def _get_limited(s3: Any, bucket: str, key: str, limit: int, ref: DeltaRef) -> bytes | None:
    """The object's bytes, None if absent; refused unread past ``limit`` bytes."""
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    size = int(response.get("ContentLength", 0))
    if size > limit:
        response["Body"].close()
        raise InvalidDeltaError(f"{key.rsplit('/', 1)[-1]} is {size} bytes, over the {limit} byte limit", ref.key)
    with progress.stage(f"download delta {ref.collection}/{ref.delta_id}", size, "B") as bar:
        body = response["Body"].read()
        bar.advance(len(body))
    return body


def read_delta_manifest(s3: Any, bucket: str, ref: DeltaRef, prefix: str = DELTA_PREFIX) -> DeltaManifest:
    """The delta's checked manifest (``find_delta``)."""
    return find_delta(s3, bucket, ref, prefix).manifest


def load_delta(s3: Any, bucket: str, stored: StoredDelta, workdir: Path) -> LoadedDelta:
    """Unpack (or download) into ``workdir``, verify every checksum, read its records,
    release chroma."""
    ref, manifest = stored.ref, stored.manifest
    if stored.members is not None:
        extract_members(stored.members, workdir)  # checked against the manifest when read
    else:
        workdir.mkdir(parents=True, exist_ok=True)
        entries = manifest.files
        key = delta_key_for(ref.collection, ref.delta_id, stored.prefix)
        items = [TransferItem(mf.safe_join(workdir, e.path), key + e.path, e.size) for e in entries]
        download_files(s3, bucket, items, f"delta {ref.collection}/{ref.delta_id}")
        try:
            mf.verify_files(workdir, entries)
        except mf.IntegrityError as exc:
            raise InvalidDeltaError(f"checksum: {exc}", ref.key) from None
    loaded = LoadedDelta(ref, manifest, found_under=stored.prefix, fetched_bytes=stored.fetched_bytes)
    if not manifest.upsert_count:
        return loaded
    try:
        with ChromaDBClient(workdir, mode="read") as reader:
            records = reader.read_records(ref.collection)
    except Exception as exc:
        raise InvalidDeltaError(f"unreadable chroma data: {exc}", ref.key) from None
    loaded.ids = records["ids"]
    loaded.embeddings = records["embeddings"]
    loaded.documents = records["documents"]
    loaded.metadatas = records["metadatas"]
    _check_records(loaded)
    return loaded


def _check_records(loaded: LoadedDelta) -> None:
    """The same rules the producer applies, for deltas written by anything else."""
    if len(loaded.ids) != loaded.manifest.upsert_count:
        raise InvalidDeltaError(
            f"holds {len(loaded.ids)} vectors, manifest says {loaded.manifest.upsert_count}",
            loaded.ref.key)
    try:
        problems = Problems()
        check_ids("id", list(loaded.ids), problems)
        check_ids("delete id", loaded.delete_ids, problems)
        for row, metadata in enumerate(loaded.metadatas, start=1):
            check_metadata(row, metadata, problems)
        problems.raise_any()
    except ValueError as exc:
        raise InvalidDeltaError(str(exc), loaded.ref.key) from None
    if len(loaded.ids) and loaded.embeddings.shape[1] != loaded.dimension:
        raise InvalidDeltaError(
            f"vector of dimension {loaded.embeddings.shape[1]}, manifest says {loaded.dimension}", loaded.ref.key)
    if not np.isfinite(loaded.embeddings).all():
        raise InvalidDeltaError("embedding contains NaN or infinity", loaded.ref.key)


def fetch_delta(s3: Any, bucket: str, ref: DeltaRef, scratch: Path) -> LoadedDelta:
    """The delta from ``delta/`` (or ``archive/``, for rebuilds), downloaded and verified.

    Raises ``FileNotFoundError`` when no manifest exists anywhere (not written yet, or
    lost) and ``InvalidDeltaError`` when it is poison, or was quarantined before.
    """
    for prefix in (DELTA_PREFIX, ARCHIVE_PREFIX):
        try:
            stored = find_delta(s3, bucket, ref, prefix)
        except FileNotFoundError:
            continue
        try:
            return load_delta(s3, bucket, stored, scratch)
        except mf.UnsafePathError as exc:
            raise InvalidDeltaError(str(exc), ref.key) from None
    reason = quarantine_reason(s3, bucket, ref)
    if reason is not None:
        raise InvalidDeltaError(f"quarantined earlier: {reason}", ref.key)
    raise FileNotFoundError(f"{ref.key}{PACK_NAME}")


def quarantine_reason(s3: Any, bucket: str, ref: DeltaRef) -> str | None:
    key = f"{QUARANTINE_PREFIX}{ref.collection}/{ref.delta_id}/reason.json"
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            return None
        raise
    return str(mf.loads(body, key).get("reason", "unknown"))
