"""The producer: one batch of upserts and tombstones becomes a delta in S3, then a message.

Invariant: input is validated before anything is written, so bad input leaves no trace in
S3; the delta's manifest is uploaded last (``delta_upload``), and only then is the delta
announced on SQS — a send error propagates (a swallowed send loses the delta until
reconciliation lists ``delta/``).

The names of the delta modules are re-exported here: keys and ids (``delta_keys``), record
rules (``delta_records``), writing (``delta_upload``) and reading (``delta_reader``).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from ..chroma.client import ChromaDBClient
from ..config import Settings
from ..format.keys import (
    ARCHIVE_PREFIX, DELTA_PREFIX, QUARANTINE_PREFIX, DeltaRef, InvalidDeltaError, check_collection_name,
    delta_id_time, delta_key_for, new_delta_id, parse_delta_key,
)
from .reader import LoadedDelta, fetch_delta, find_delta, list_deltas, load_delta, quarantine_reason, read_delta_manifest
from .records import MAX_ID_LENGTH, validate_delta_input
from .upload import DELTA_FORMAT, DELTA_FORMAT_FILES, close_and_describe_delta, upload_delta, upload_delta_directory
from ..chroma.embeddings import provider_name
from .queue import DeltaQueue

log = logging.getLogger(__name__)

__all__ = [
    "ARCHIVE_PREFIX", "DELTA_FORMAT", "DELTA_FORMAT_FILES", "DELTA_PREFIX", "MAX_ID_LENGTH", "QUARANTINE_PREFIX", "DeltaRef",
    "InvalidDeltaError", "LoadedDelta", "announce_delta", "check_collection_name", "close_and_describe_delta",
    "delta_id_time", "delta_key_for", "fetch_delta", "find_delta", "list_deltas", "load_delta", "new_delta_id", "parse_delta_key",
    "produce_embedding_delta", "quarantine_reason", "read_delta_manifest", "upload_delta",
    "upload_delta_directory", "validate_delta_input",
]


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
    delta_id: str | None = None,
) -> dict[str, Any]:
    """Validate, write a delta (manifest last), upload it and announce it on SQS.

    ``delta_id`` pins the id (a resumed writer rewriting the delta it had begun); default: new."""
    settings = settings or Settings.from_env()
    started = time.perf_counter()
    dimension = validate_delta_input(ids, embeddings, documents, metadatas, collection_name, delete_ids)
    metadatas = None if metadatas is None else [m or None for m in metadatas]
    workdir = Path(tempfile.mkdtemp(prefix="vp-delta-", dir=settings.scratch_dir))
    try:
        with ChromaDBClient(workdir / "chroma", mode="delta", settings=settings) as delta:
            delta.embedding_provider_name = embedding_provider or provider_name(settings)
            delta.delta_id = delta_id
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


def announce_delta(settings: Settings, message: dict[str, Any]) -> str:
    """Send the delta's message; errors propagate (a swallowed send loses the delta)."""
    return DeltaQueue(settings).send(message)
