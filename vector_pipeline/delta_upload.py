"""Writing a delta to S3: its files first, its manifest last.

Invariant: a delta under ``delta/<collection>/<delta_id>/`` is complete exactly when its
``manifest.json`` exists — the manifest is uploaded last and lists every file with its
sha256. A producer that dies midway leaves files without a manifest, which nothing reads.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import chromadb

from . import manifest as mf
from .aws import client, error_code, sse_args
from .config import Settings
from .delta_keys import DELTA_PREFIX, delta_key_for, new_delta_id
from .embeddings import provider_name
from .transfer import TransferItem, upload_files

if TYPE_CHECKING:
    from .chroma_client import ChromaDBClient

DELTA_FORMAT = "vector_pipeline.delta/1"


def upload_delta_directory(delta: "ChromaDBClient", bucket: str, prefix: str = DELTA_PREFIX) -> str:
    """Close the delta client, write its manifest, upload files then the manifest."""
    manifest = close_and_describe_delta(delta)
    return upload_delta_files(delta.settings, bucket, delta.persist_directory, manifest, prefix)


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
