"""The original design's compaction, written plainly (not the library's code).

Download the whole current snapshot, merge each delta with get + upsert, upload the whole
snapshot as a new prefix, then copy it object by object to ``latest/``. It keeps its own
snapshot (seeded from the same base as ours) so that it always works on one chroma dir.
It reads the same deltas as ours: packed ones (one object) are unpacked, which spares the
baseline the five GETs per delta the original's file-per-file deltas cost, so the ratios
against it are conservative.
"""

import io
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import chromadb
from chromadb.config import Settings as ChromaSettings


def _download_prefix(s3: Any, bucket: str, prefix: str, target: Path) -> int:
    moved = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            relative = obj["Key"][len(prefix):]
            if not relative or relative == "manifest.json":
                continue
            local = target / relative
            local.parent.mkdir(parents=True, exist_ok=True)
            if relative == "delta.tar":  # a packed delta: its chroma files, beside its manifest
                body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                    tar.extractall(target, members=[m for m in tar if m.name != "manifest.json"], filter="data")
            else:
                s3.download_file(bucket, obj["Key"], str(local))
            moved += obj["Size"]
    return moved


def _upload_dir(s3: Any, bucket: str, source: Path, prefix: str) -> int:
    moved = 0
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, prefix + path.relative_to(source).as_posix())
        moved += path.stat().st_size
    return moved


def seed_baseline(s3: Any, bucket: str, collection: str, chroma_dir: Path) -> str:
    """The baseline's own snapshot (one chroma dir under ``baseline/<collection>/latest/``),
    seeded from the same base as ours; returns its prefix."""
    latest = f"baseline/{collection}/latest/"
    _upload_dir(s3, bucket, chroma_dir, latest)
    return latest


def baseline_compaction(s3: Any, bucket: str, latest: str, delta_prefixes: list[str],
                        collection: str) -> dict[str, float]:
    """Returns seconds, merge seconds and bytes moved; the result replaces ``latest``."""
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="baseline-"))
    moved = _download_prefix(s3, bucket, latest, work / "snapshot")
    snapshot = chromadb.PersistentClient(path=str(work / "snapshot"), settings=ChromaSettings(anonymized_telemetry=False))
    target = snapshot.get_or_create_collection(collection, embedding_function=None)
    merge_seconds = 0.0
    for number, prefix in enumerate(delta_prefixes):
        delta_dir = work / f"delta{number}"
        moved += _download_prefix(s3, bucket, prefix, delta_dir)
        delta = chromadb.PersistentClient(path=str(delta_dir), settings=ChromaSettings(anonymized_telemetry=False))
        source = delta.get_collection(collection, embedding_function=None)
        merge_started = time.perf_counter()
        records = source.get(include=["embeddings", "documents", "metadatas"])
        if records["ids"]:
            target.upsert(ids=records["ids"], embeddings=records["embeddings"], documents=records["documents"],
                          metadatas=records["metadatas"])
        merge_seconds += time.perf_counter() - merge_started
        delta.close()
    snapshot.close()
    stamp = f"{time.time():.6f}-{os.getpid()}"
    versioned = latest.replace("/latest/", f"/{stamp}/")
    moved += _upload_dir(s3, bucket, work / "snapshot", versioned)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=versioned):
        for obj in page.get("Contents", []):  # "latest" by copying object by object
            s3.copy_object(Bucket=bucket, Key=latest + obj["Key"][len(versioned):],
                           CopySource={"Bucket": bucket, "Key": obj["Key"]})
            moved += obj["Size"]
    shutil.rmtree(work, ignore_errors=True)
    return {"seconds": time.perf_counter() - started, "merge_seconds": merge_seconds, "bytes_moved": moved}
