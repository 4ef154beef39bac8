"""Writing a delta to S3: one object, its chroma directory packed with its manifest.

Invariant: a delta under ``delta/<collection>/<delta_id>/`` is complete exactly when its
completion marker exists (``format.keys.COMPLETION_MARKERS``). This module writes format 2:
the whole delta is one PUT of ``delta.tar`` (``format/pack.py``), so it exists whole or not at
all, and the manifest inside lists every file with its sha256. Format 1 (a file per chroma
file, ``manifest.json`` uploaded last) is still read (``delta/reader.py``), no longer written.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from ..format import manifest as mf
from .. import progress
from ..io.aws import client, error_code, sse_args
from ..config import Settings
from ..chroma.written_delta import WrittenDelta
from ..format.delta_manifest import DELTA_FORMAT, DeltaManifest
from ..format.keys import DELTA_PREFIX, PACK_NAME, delta_key_for, new_delta_id
from ..format.pack import pack_delta


def delta_manifest(written: WrittenDelta, embedding_provider: str, delta_id: str | None = None) -> DeltaManifest:
    """The manifest of a closed delta directory: files with sha256, counts, embedding."""
    files = tuple(mf.describe_files(written.directory))
    return DeltaManifest(
        format=DELTA_FORMAT, delta_id=delta_id or new_delta_id(), collection=written.collection,
        created_at=datetime.now(timezone.utc).isoformat(), upsert_count=written.upsert_count,
        delete_ids=tuple(written.delete_ids), delete_count=len(written.delete_ids), dimension=written.dimension,
        embedding_provider=embedding_provider, chromadb_version=written.chromadb_version, hnsw=written.hnsw,
        files=files, total_bytes=sum(entry.size for entry in files))


def upload_delta(settings: Settings, bucket: str, directory: Path, manifest: DeltaManifest,
                 prefix: str = DELTA_PREFIX) -> str:
    """One PUT of the delta packed with its manifest: from then on it is complete."""
    key = delta_key_for(manifest.collection, manifest.delta_id, prefix)
    body = pack_delta(directory, manifest)
    try:
        with progress.stage(f"upload delta {manifest.collection}/{manifest.delta_id}", len(body), "B") as bar:
            client("s3", settings).put_object(Bucket=bucket, Key=key + PACK_NAME, Body=body,
                                              ContentType="application/x-tar", **sse_args(settings))
            bar.advance(len(body))
    except Exception as exc:
        if error_code(exc) == "NoSuchBucket":
            raise RuntimeError(f"bucket {bucket!r} does not exist (run `vector-pipeline setup`)") from exc
        raise
    return key
