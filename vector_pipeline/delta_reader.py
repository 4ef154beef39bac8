"""Reading a delta back: manifest, files, checksums and records, every one checked.

Invariant: a ``LoadedDelta`` is returned only for a delta whose manifest is well formed and
names this delta, whose every file matched its sha256, and whose records obey the
producer's rules (``delta_records``); anything else raises ``InvalidDeltaError`` with the
reason (the caller quarantines it), or ``FileNotFoundError`` while no manifest exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import manifest as mf
from .aws import error_code
from .chroma_client import ChromaDBClient
from .delta_keys import ARCHIVE_PREFIX, DELTA_PREFIX, QUARANTINE_PREFIX, DeltaRef, InvalidDeltaError, delta_key_for
from .delta_records import _check_ids, _check_metadata
from .delta_upload import DELTA_FORMAT
from .transfer import TransferItem, download_files



# -- reading a delta (compactor side) ---------------------------------------------------------


@dataclass
class LoadedDelta:
    """A downloaded, verified delta: its manifest and its records."""

    ref: DeltaRef
    manifest: dict[str, Any]
    ids: list[str] = field(default_factory=list)
    embeddings: list[list[float]] = field(default_factory=list)
    documents: list[str | None] = field(default_factory=list)
    metadatas: list[dict[str, Any] | None] = field(default_factory=list)

    @property
    def delete_ids(self) -> list[str]:
        return list(self.manifest.get("delete_ids", []))

    @property
    def dimension(self) -> int:
        return int(self.manifest.get("dimension", 0))

    @property
    def embedding_provider(self) -> str:
        return str(self.manifest.get("embedding_provider", ""))


def read_delta_manifest(s3: Any, bucket: str, ref: DeltaRef, prefix: str = DELTA_PREFIX) -> dict[str, Any]:
    key = delta_key_for(ref.collection, ref.delta_id, prefix) + mf.MANIFEST_NAME
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
        if head["ContentLength"] > mf.MAX_MANIFEST_BYTES:
            raise InvalidDeltaError(f"manifest is {head['ContentLength']} bytes", ref.key)
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            raise FileNotFoundError(key) from None
        raise
    try:
        manifest = mf.loads(body, key)
    except mf.IntegrityError as exc:
        raise InvalidDeltaError(str(exc), ref.key) from None
    _check_manifest(manifest, ref)
    return manifest


def _check_manifest(manifest: dict[str, Any], ref: DeltaRef) -> None:
    if manifest.get("format") != DELTA_FORMAT:
        raise InvalidDeltaError(f"unknown manifest format {manifest.get('format')!r}", ref.key)
    if manifest.get("delta_id") != ref.delta_id or manifest.get("collection") != ref.collection:
        raise InvalidDeltaError("manifest names another delta or collection", ref.key)
    if not isinstance(manifest.get("files"), list) or (
        not manifest["files"] and manifest.get("upsert_count", 0)
    ):
        raise InvalidDeltaError("manifest lists no files", ref.key)
    for entry in manifest["files"]:
        try:
            mf.check_relative_path(str(entry.get("path", "")))
        except (mf.UnsafePathError, AttributeError) as exc:
            raise InvalidDeltaError(str(exc), ref.key) from None
    deletes = manifest.get("delete_ids", [])
    if not isinstance(deletes, list) or not all(isinstance(i, str) and i for i in deletes):
        raise InvalidDeltaError("delete_ids is not a list of non-empty strings", ref.key)


def load_delta(s3: Any, bucket: str, ref: DeltaRef, manifest: dict[str, Any], workdir: Path,
               prefix: str = DELTA_PREFIX) -> LoadedDelta:
    """Download into ``workdir``, verify every checksum, read its records, release chroma."""
    workdir.mkdir(parents=True, exist_ok=True)
    entries = [mf.FileEntry.from_dict(e) for e in manifest["files"]]
    key = delta_key_for(ref.collection, ref.delta_id, prefix)
    items = [TransferItem(mf.safe_join(workdir, e.path), key + e.path, e.size) for e in entries]
    download_files(s3, bucket, items, f"delta {ref.collection}/{ref.delta_id}")
    try:
        mf.verify_files(workdir, entries)
    except mf.IntegrityError as exc:
        raise InvalidDeltaError(f"checksum: {exc}", ref.key) from None
    loaded = LoadedDelta(ref, manifest)
    if not manifest.get("upsert_count"):
        return loaded
    try:
        with ChromaDBClient(workdir, mode="read") as reader:
            records = reader.get_vectors(ref.collection, include=["embeddings", "documents", "metadatas"])
    except Exception as exc:
        raise InvalidDeltaError(f"unreadable chroma data: {exc}", ref.key) from None
    loaded.ids = records["ids"]
    loaded.embeddings = records["embeddings"]
    loaded.documents = records["documents"] or [None] * len(loaded.ids)
    loaded.metadatas = records["metadatas"] or [None] * len(loaded.ids)
    _check_records(loaded)
    return loaded


def _check_records(loaded: LoadedDelta) -> None:
    """The same rules the producer applies, for deltas written by anything else."""
    if len(loaded.ids) != int(loaded.manifest.get("upsert_count", -1)):
        raise InvalidDeltaError(
            f"holds {len(loaded.ids)} vectors, manifest says {loaded.manifest.get('upsert_count')}",
            loaded.ref.key)
    try:
        _check_ids("id", list(loaded.ids))
        _check_ids("delete id", loaded.delete_ids)
        for position, metadata in enumerate(loaded.metadatas):
            _check_metadata(position, metadata)
    except ValueError as exc:
        raise InvalidDeltaError(str(exc), loaded.ref.key) from None
    for vector in loaded.embeddings:
        if len(vector) != loaded.dimension:
            raise InvalidDeltaError(
                f"vector of dimension {len(vector)}, manifest says {loaded.dimension}", loaded.ref.key)
        if not all(math.isfinite(x) for x in vector):
            raise InvalidDeltaError("embedding contains NaN or infinity", loaded.ref.key)


def fetch_delta(s3: Any, bucket: str, ref: DeltaRef, scratch: Path) -> LoadedDelta:
    """The delta from ``delta/`` (or ``archive/``, for rebuilds), downloaded and verified.

    Raises ``FileNotFoundError`` when no manifest exists anywhere (not written yet, or
    lost) and ``InvalidDeltaError`` when it is poison, or was quarantined before.
    """
    for prefix in (DELTA_PREFIX, ARCHIVE_PREFIX):
        try:
            manifest = read_delta_manifest(s3, bucket, ref, prefix)
        except FileNotFoundError:
            continue
        try:
            return load_delta(s3, bucket, ref, manifest, scratch, prefix)
        except mf.UnsafePathError as exc:
            raise InvalidDeltaError(str(exc), ref.key) from None
    reason = quarantine_reason(s3, bucket, ref)
    if reason is not None:
        raise InvalidDeltaError(f"quarantined earlier: {reason}", ref.key)
    raise FileNotFoundError(f"{ref.key}manifest.json")


def quarantine_reason(s3: Any, bucket: str, ref: DeltaRef) -> str | None:
    key = f"{QUARANTINE_PREFIX}{ref.collection}/{ref.delta_id}/reason.json"
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            return None
        raise
    return str(mf.loads(body, key).get("reason", "unknown"))
