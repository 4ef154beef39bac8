"""Writing a delta to S3: one object, its chroma directory packed with its manifest.

Invariant: a delta under ``delta/<collection>/<delta_id>/`` is complete exactly when its
completion marker exists (``delta_keys.COMPLETION_MARKERS``). This module writes format 2:
the whole delta is one PUT of ``delta.tar`` (``delta_pack``), so it exists whole or not at
all, and the manifest inside lists every file with its sha256. Format 1 (a file per chroma
file, ``manifest.json`` uploaded last) is still read (``delta_reader``), no longer written.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import chromadb

from ..format import manifest as mf
from .. import progress
from ..io.aws import client, error_code, sse_args
from ..config import Settings
from ..format.keys import DELTA_PREFIX, PACK_NAME, delta_key_for, new_delta_id
from ..format.pack import pack_delta
from ..chroma.embeddings import provider_name

if TYPE_CHECKING:
    from ..chroma.client import ChromaDBClient

DELTA_FORMAT = "vector_pipeline.delta.produce/2"  # one packed object (delta_pack.py)
DELTA_FORMAT_FILES = "vector_pipeline.delta.produce/1"  # a file per chroma file, manifest last: read, not written


def upload_delta_directory(delta: "ChromaDBClient", bucket: str, prefix: str = DELTA_PREFIX) -> str:
    """Close the delta client, describe it in its manifest, upload it packed in one object."""
    manifest = close_and_describe_delta(delta)
    return upload_delta(delta.settings, bucket, delta.persist_directory, manifest, prefix)


def close_and_describe_delta(delta: "ChromaDBClient") -> dict[str, Any]:
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


def upload_delta(settings: Settings, bucket: str, directory: Path, manifest: dict[str, Any],
                 prefix: str = DELTA_PREFIX) -> str:
    """One PUT of the delta packed with its manifest: from then on it is complete."""
    key = delta_key_for(manifest["collection"], manifest["delta_id"], prefix)
    body = pack_delta(directory, manifest)
    try:
        with progress.stage(f"upload delta {manifest['collection']}/{manifest['delta_id']}", len(body), "B") as bar:
            client("s3", settings).put_object(Bucket=bucket, Key=key + PACK_NAME, Body=body,
                                              ContentType="application/x-tar", **sse_args(settings))
            bar.advance(len(body))
    except Exception as exc:
        if error_code(exc) == "NoSuchBucket":
            raise RuntimeError(f"bucket {bucket!r} does not exist (run `vector-pipeline setup`)") from exc
        raise
    return key
