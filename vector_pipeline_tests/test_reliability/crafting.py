"""Deltas written by something other than our producer: valid chroma data with a hostile or
broken twist, uploaded the way a producer would and announced: packed in one object
(format 2, what producers write), or as files then manifest (format 1, still read)."""

import io
import json
import sqlite3
import struct
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vector_pipeline.io.aws import client, sse_args
from vector_pipeline.chroma.client import ChromaDBClient
from vector_pipeline.config import Settings
from vector_pipeline.chroma.embeddings import provider_name
from vector_pipeline.delta.upload import delta_manifest
from vector_pipeline.format.delta_manifest import DELTA_FORMAT_FILES
from vector_pipeline.format.keys import delta_key_for, new_delta_id
from vector_pipeline.format.keys import PACK_NAME
from vector_pipeline.format.manifest import dumps, sha256_of
from vector_pipeline.delta.queue import DeltaQueue


def craft_delta(settings: Settings, *, ids: list[str] | None = None, dimension: int = 8, collection: str = "words",
                files: Callable[[Path, dict[str, Any]], None] | None = None,
                manifest: Callable[[dict[str, Any]], None] | None = None, delta_id: str | None = None,
                upload_manifest: bool = True, raw_manifest: bytes | None = None, packed: bool = True,
                members: Callable[[tarfile.TarFile], None] | None = None) -> str:
    """``upload_manifest=False``: a producer that died before its delta was complete (for a
    packed delta: nothing at all was stored). ``members`` adds tar members of its own."""
    ids = ids or ["p0"]
    workdir = Path(tempfile.mkdtemp(prefix="vp-craft-")) / "chroma"
    delta = ChromaDBClient(workdir, mode="delta", settings=settings)
    delta_id = delta_id or new_delta_id()
    delta.upsert_vectors(collection, ids, np.random.default_rng(0).random((len(ids), dimension)).tolist())
    described = delta_manifest(delta.close_and_describe(), provider_name(settings), delta_id).to_dict()
    if not packed:
        described["format"] = DELTA_FORMAT_FILES
    if files:
        files(workdir, described)
    if manifest:
        manifest(described)
    key = delta_key_for(collection, delta_id)
    s3 = client("s3", settings)
    body = raw_manifest if raw_manifest is not None else dumps(described)
    real_files = sorted(p for p in workdir.rglob("*") if p.is_file())  # the real files, as a producer would
    if packed:
        if upload_manifest:
            s3.put_object(Bucket=settings.vectors_bucket, Key=key + PACK_NAME, Body=_tar(
                [("manifest.json", body)] + [(p.relative_to(workdir).as_posix(), p.read_bytes()) for p in real_files],
                members), **sse_args(settings))
    else:
        for local in real_files:
            relative = local.relative_to(workdir).as_posix()
            s3.upload_file(str(local), settings.vectors_bucket, key + relative, ExtraArgs=sse_args(settings))
        if upload_manifest:
            s3.put_object(Bucket=settings.vectors_bucket, Key=key + "manifest.json", Body=body, **sse_args(settings))
    DeltaQueue(settings).send({"delta_key": key, "collection": collection, "delta_id": delta_id})
    return key


def _tar(members: list[tuple[str, bytes]], extra: Callable[[tarfile.TarFile], None] | None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, body in members:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        if extra:
            extra(tar)
    return buffer.getvalue()


def rehash(workdir: Path, described: dict[str, Any], path: str) -> None:
    """Make the manifest agree with a file changed on purpose (so only deeper checks catch it)."""
    for entry in described["files"]:
        if entry["path"] == path:
            entry["size"] = (workdir / path).stat().st_size
            entry["sha256"] = sha256_of(workdir / path)


def truncate_sqlite(workdir: Path, described: dict[str, Any]) -> None:
    with open(workdir / "chroma.sqlite3", "r+b") as handle:
        handle.truncate(4096)
    rehash(workdir, described, "chroma.sqlite3")


def nan_embeddings(workdir: Path, described: dict[str, Any]) -> None:
    with sqlite3.connect(workdir / "chroma.sqlite3") as db:
        dimension = described["dimension"]
        db.execute("UPDATE embeddings_queue SET vector = ?", (struct.pack(f"{dimension}f", *[float("nan")] * dimension),))
    rehash(workdir, described, "chroma.sqlite3")


def corrupt_a_file(workdir: Path, described: dict[str, Any]) -> None:
    with open(workdir / "chroma.sqlite3", "ab") as handle:
        handle.write(b"\0garbage")


def dead_letter_reasons(settings: Settings) -> dict[str, str]:
    """delta_key → reason of every message on the dead-letter queue."""
    queue = DeltaQueue(settings)
    sqs = client("sqs", settings)
    reasons: dict[str, str] = {}
    for _ in range(20):
        got = sqs.receive_message(QueueUrl=queue.dead_letter_url, MaxNumberOfMessages=10,
                                  MessageAttributeNames=["All"], VisibilityTimeout=60).get("Messages", [])
        if not got:
            break
        for message in got:
            try:
                key = json.loads(message["Body"]).get("delta_key", message["Body"])
            except ValueError:
                key = message["Body"]
            reasons[str(key)] = message.get("MessageAttributes", {}).get("reason", {}).get("StringValue", "")
    return reasons
