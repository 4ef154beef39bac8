"""Cleanup, phase 3: the whole namespace to Parquet in the bucket, verified.

Invariant: the export says "safe to delete" only after the Parquet object was read back
from S3 and its row count equals the namespace's count in ``describe_index_stats`` and the
sha256 of its sorted ids equals that of a fresh listing of the namespace, both taken after
the upload. Any difference (a write that landed meanwhile, a lost page) is reported as
``MISMATCH`` with both figures, and the index must stay.
"""

from __future__ import annotations

import enum
import hashlib
import io
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import pandas as pd

from ..io.aws import client
from ..config import Settings
from .pinecone_client import PineconeIndex
from .state import MigrationState, utc_stamp

EXPORT_PREFIX = "exports/pinecone/"


class ExportOutcome(enum.Enum):
    VERIFIED = "verified: safe to delete the namespace"
    MISMATCH = "mismatch: keep the index"


@dataclass
class ExportResult:
    outcome: ExportOutcome
    uri: str
    namespace: str
    rows: int
    index_count: int
    ids_sha256: str
    index_ids_sha256: str

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "outcome": self.outcome.name.lower(), "verdict": self.outcome.value}


def ids_checksum(ids: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for record_id in sorted(ids):
        digest.update(record_id.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:] or uri.endswith("/"):
        raise ValueError(f"--out must look like s3://bucket/path/file.parquet, not {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    if ".." in key.split("/"):
        raise ValueError(f"--out {uri!r}: '..' is not allowed in the key")
    return bucket, key


def export_namespace(settings: Settings, collection: str, out: str | None = None, *,
                     say: Callable[[str], None] = print, index: PineconeIndex | None = None) -> ExportResult:
    namespace = settings.pinecone_namespace(collection)
    index = index or PineconeIndex(settings)
    bucket, key = parse_s3_uri(out) if out else (settings.vectors_bucket, f"{EXPORT_PREFIX}{namespace}/{utc_stamp()}.parquet")
    rows = []
    for page in index.list_ids(namespace):
        for record in index.fetch(namespace, page):
            rows.append({"id": record.id, "values": [float(v) for v in record.values],
                         "metadata": json.dumps(record.metadata, sort_keys=True)})
        say(f"  exported {len(rows)} vectors of {namespace!r}")
    frame = pd.DataFrame(rows, columns=["id", "values", "metadata"])
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    s3 = client("s3", settings)
    if bucket == settings.vectors_bucket:
        MigrationState(settings).put_bytes(key, buffer.getvalue(), "application/vnd.apache.parquet")
    else:
        s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
    uri = f"s3://{bucket}/{key}"
    # Verify what S3 holds now against what the index holds now.
    stored = pd.read_parquet(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()), columns=["id"])
    index_count = index.namespace_count(namespace)
    listed = [i for page in index.list_ids(namespace) for i in page]
    result = ExportResult(ExportOutcome.MISMATCH, uri, namespace, len(stored), index_count,
                          ids_checksum(stored["id"]), ids_checksum(listed))
    if result.rows == index_count == len(listed) and result.ids_sha256 == result.index_ids_sha256:
        result.outcome = ExportOutcome.VERIFIED
    say(f"{uri}: {result.rows} rows, index reports {index_count}; ids sha256 {result.ids_sha256[:12]} vs "
        f"{result.index_ids_sha256[:12]} → {result.outcome.value}")
    return result
