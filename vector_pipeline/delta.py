"""Deltas: one producer batch of upserts and tombstones, as a chroma dir plus manifest.

Invariant: a delta under ``delta/<collection>/<delta_id>/`` is complete exactly when its
``manifest.json`` exists — the manifest is uploaded last and lists every file with its
sha256. A producer that dies midway leaves files without a manifest, which nothing reads.
Input is validated before anything is written, so bad input leaves no trace in S3.

``delta_id`` is a ULID (48-bit millisecond time + 80 bits of randomness, Crockford
base32): sorting ids sorts deltas by creation time, which fixes the apply order.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import chromadb
import numpy as np
from chromadb.api.types import validate_metadata

from . import manifest as mf
from .aws import client, error_code, sse_args
from .chroma_client import ChromaDBClient
from .config import Settings
from .embeddings import provider_name
from .transfer import TransferItem, download_files, upload_files

log = logging.getLogger(__name__)

DELTA_PREFIX = "delta/"
ARCHIVE_PREFIX = "archive/"
QUARANTINE_PREFIX = "quarantine/"
DELTA_FORMAT = "vector_pipeline.delta/1"
MAX_ID_LENGTH = 512

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DELTA_ID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
_COLLECTION_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,61}[a-zA-Z0-9]$")


class InvalidDeltaError(ValueError):
    """A delta (or its key, or its message) cannot be applied; ``reason`` says why."""

    def __init__(self, reason: str, delta_key: str = ""):
        super().__init__(f"{delta_key}: {reason}" if delta_key else reason)
        self.reason = reason
        self.delta_key = delta_key


def new_delta_id(now_ms: int | None = None) -> str:
    millis = int(time.time() * 1000) if now_ms is None else now_ms
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def delta_id_time(delta_id: str) -> datetime:
    value = 0
    for char in delta_id:
        value = value * 32 + _CROCKFORD.index(char)
    return datetime.fromtimestamp((value >> 80) / 1000, tz=timezone.utc)


def check_collection_name(collection_name: str) -> str:
    if not isinstance(collection_name, str) or not _COLLECTION_RE.match(collection_name) \
            or ".." in collection_name:
        raise ValueError(
            f"invalid collection name {collection_name!r}: 3-63 characters of letters, digits, "
            "'.', '_' or '-', starting and ending with a letter or digit, no '..'"
        )
    return collection_name


def delta_key_for(collection_name: str, delta_id: str, prefix: str = DELTA_PREFIX) -> str:
    return f"{prefix}{collection_name}/{delta_id}/"


@dataclass(frozen=True)
class DeltaRef:
    """A delta's place: collection and id, parsed from a key that was checked."""

    collection: str
    delta_id: str

    @property
    def key(self) -> str:
        return delta_key_for(self.collection, self.delta_id)

    @property
    def archive_key(self) -> str:
        return delta_key_for(self.collection, self.delta_id, ARCHIVE_PREFIX)

    @property
    def partition_key(self) -> str:
        return f"{self.collection}.{self.delta_id}"


def parse_delta_key(delta_key: str, prefixes: Sequence[str] = (DELTA_PREFIX,)) -> DeltaRef:
    """``delta/<collection>/<delta_id>/`` (trailing ``/`` or ``manifest.json`` optional)."""
    if not isinstance(delta_key, str) or "\\" in delta_key or "\x00" in delta_key:
        raise InvalidDeltaError("delta key is not a plain string", str(delta_key))
    key = delta_key.removesuffix(mf.MANIFEST_NAME).rstrip("/")
    prefix = next((p for p in prefixes if key.startswith(p)), None)
    if prefix is None:
        raise InvalidDeltaError(f"key outside {' or '.join(prefixes)}", delta_key)
    parts = key[len(prefix):].split("/")
    if len(parts) != 2 or ".." in key.split("/"):
        raise InvalidDeltaError("expected <prefix><collection>/<delta_id>/", delta_key)
    collection, delta_id = parts
    try:
        check_collection_name(collection)
    except ValueError as exc:
        raise InvalidDeltaError(str(exc), delta_key) from None
    if not _DELTA_ID_RE.match(delta_id):
        raise InvalidDeltaError(f"delta id {delta_id!r} is not a ULID", delta_key)
    return DeltaRef(collection, delta_id)


# -- producer -----------------------------------------------------------------------------


def validate_delta_input(
    ids: Sequence[str],
    embeddings: Sequence[Sequence[float]],
    documents: Sequence[str] | None,
    metadatas: Sequence[dict[str, Any] | None] | None,
    collection_name: str,
    delete_ids: Sequence[str] | None,
) -> int:
    """Raise ``ValueError`` naming the first problem; returns the dimension (0 if no upserts)."""
    check_collection_name(collection_name)
    ids, delete_ids = list(ids), list(delete_ids or [])
    if not ids and not delete_ids:
        raise ValueError("a delta needs at least one upsert or delete")
    if len(embeddings) != len(ids):
        raise ValueError(f"{len(ids)} ids but {len(embeddings)} embeddings")
    for name, values in (("documents", documents), ("metadatas", metadatas)):
        if values is not None and len(values) != len(ids):
            raise ValueError(f"{len(ids)} ids but {len(values)} {name}")
    for what, values in (("id", ids), ("delete id", delete_ids)):
        _check_ids(what, values)
    dimension = _check_embeddings(embeddings)
    if documents is not None:
        for position, document in enumerate(documents):
            if document is not None and not isinstance(document, str):
                raise ValueError(f"document {position} is a {type(document).__name__}, not a str")
    if metadatas is not None:
        for position, metadata in enumerate(metadatas):
            _check_metadata(position, metadata)
    return dimension


def _check_ids(what: str, values: list[str]) -> None:
    for position, value in enumerate(values):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{what} {position} is empty or not a string: {value!r}")
        if len(value) > MAX_ID_LENGTH:
            raise ValueError(f"{what} {position} is {len(value)} characters (max {MAX_ID_LENGTH})")
    if len(set(values)) != len(values):
        duplicate = next(v for v in values if values.count(v) > 1)
        raise ValueError(f"{what}s are not unique: {duplicate!r} repeats")


def _check_embeddings(embeddings: Sequence[Sequence[float]]) -> int:
    try:  # the common case in one vectorised pass; the loop below names the first problem
        matrix = np.asarray(embeddings, dtype=np.float64)
        if matrix.ndim == 2 and matrix.shape[1] > 0 and np.isfinite(matrix).all():
            return int(matrix.shape[1])
    except (TypeError, ValueError):
        pass
    dimension = 0
    for position, vector in enumerate(embeddings):
        try:
            values = [float(x) for x in vector]
        except (TypeError, ValueError):
            raise ValueError(f"embedding {position} is not a sequence of numbers") from None
        if not values:
            raise ValueError(f"embedding {position} is empty")
        if dimension and len(values) != dimension:
            raise ValueError(f"embedding {position} has dimension {len(values)}, expected {dimension}")
        dimension = len(values)
        if not all(math.isfinite(x) for x in values):
            raise ValueError(f"embedding {position} contains NaN or infinity")
    return dimension


def _check_metadata(position: int, metadata: dict[str, Any] | None) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata {position} is a {type(metadata).__name__}, not a dict")
    for key, value in metadata.items():
        if value is None:
            raise ValueError(f"metadata {position}: {key!r} is None (omit the key instead)")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"metadata {position}: {key!r} is NaN or infinity")
    try:
        validate_metadata(metadata or None)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata {position}: {exc}") from None


def produce_embedding_delta(
    ids: Sequence[str],
    embeddings: Sequence[Sequence[float]],
    documents: Sequence[str] | None = None,
    metadatas: Sequence[dict[str, Any] | None] | None = None,
    collection_name: str = "words",
    delete_ids: Sequence[str] | None = None,
    *,
    settings: Settings | None = None,
    embedding_provider: str | None = None,
    notify: bool = True,
) -> dict[str, Any]:
    """Validate, write a delta (manifest last), upload it and announce it on SQS."""
    settings = settings or Settings.from_env()
    started = time.perf_counter()
    dimension = validate_delta_input(ids, embeddings, documents, metadatas, collection_name, delete_ids)
    metadatas = None if metadatas is None else [m or None for m in metadatas]
    workdir = Path(tempfile.mkdtemp(prefix="vp-delta-", dir=settings.scratch_dir))
    try:
        with ChromaDBClient(workdir / "chroma", mode="delta", settings=settings) as delta:
            delta.embedding_provider_name = embedding_provider or provider_name(settings)
            if ids:
                delta.upsert_vectors(collection_name, ids, embeddings, documents, metadatas)
            if delete_ids:
                delta.delete_vectors(collection_name, delete_ids)
            delta_key = delta.persist_and_upload_delta(settings.vectors_bucket)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ref = parse_delta_key(delta_key)
    message = {
        "delta_key": delta_key, "collection": collection_name, "delta_id": ref.delta_id,
        "upsert_count": len(ids), "delete_count": len(delete_ids or []), "dimension": dimension,
    }
    if notify:
        message["message_id"] = announce_delta(settings, message)
    elapsed = time.perf_counter() - started
    log.info("produced %s (%d upserts, %d deletes) in %.0f ms", delta_key, len(ids),
             len(delete_ids or []), elapsed * 1000)
    return {**message, "bucket": settings.vectors_bucket, "seconds": elapsed}


def upload_delta_directory(delta: ChromaDBClient, bucket: str, prefix: str = DELTA_PREFIX) -> str:
    """Close the delta client, write its manifest, upload files then the manifest."""
    manifest = close_and_describe_delta(delta)
    return upload_delta_files(delta.settings, bucket, delta.persist_directory, manifest, prefix)


def close_and_describe_delta(delta: ChromaDBClient) -> dict[str, Any]:
    """Release chroma and return the delta's manifest (files, sha256, counts, embedding)."""
    collection = delta.delta_collection
    if collection is None:
        raise ValueError("the delta is empty: nothing was upserted or deleted")
    upsert_count = delta.count(collection)
    delta.close()
    files = mf.describe_files(delta.persist_directory)
    return {
        "format": DELTA_FORMAT,
        "delta_id": delta.delta_id or new_delta_id(),
        "collection": collection,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "upsert_count": upsert_count,
        "delete_ids": list(delta.delete_ids),
        "delete_count": len(delta.delete_ids),
        "dimension": delta.dimension,
        "embedding_provider": delta.embedding_provider_name or provider_name(delta.settings),
        "chromadb_version": chromadb.__version__,
        "hnsw": delta.hnsw.as_dict(),
        "files": [entry.as_dict() for entry in files],
        "total_bytes": sum(entry.size for entry in files),
    }


def upload_delta_files(settings: Settings, bucket: str, directory: Path, manifest: dict[str, Any],
                       prefix: str = DELTA_PREFIX) -> str:
    """Upload the listed files, then the manifest (its presence marks the delta complete)."""
    key = delta_key_for(manifest["collection"], manifest["delta_id"], prefix)
    s3 = client("s3", settings)
    items = [TransferItem(directory / e["path"], key + e["path"], int(e["size"])) for e in manifest["files"]]
    try:
        upload_files(s3, bucket, items, sse_args(settings), f"delta {manifest['collection']}/{manifest['delta_id']}")
        s3.put_object(Bucket=bucket, Key=key + mf.MANIFEST_NAME, Body=mf.dumps(manifest),
                      ContentType="application/json", **sse_args(settings))
    except Exception as exc:
        if error_code(exc) == "NoSuchBucket":
            raise RuntimeError(f"bucket {bucket!r} does not exist (run `vector-pipeline setup`)") from exc
        raise
    return key


def announce_delta(settings: Settings, message: dict[str, Any]) -> str:
    """Send the delta's message; errors propagate (a swallowed send loses the delta)."""
    from .queue import DeltaQueue  # the queue module builds on delta keys

    return DeltaQueue(settings).send(message)


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
