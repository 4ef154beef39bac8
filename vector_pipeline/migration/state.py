"""Migration state documents in the bucket, under ``migration/<collection>/``.

Invariant: a document is replaced by one PUT of its whole body (S3 makes that atomic), so a
reader sees the previous document or the next, never a mix; a crash between two steps of
a migration leaves the last document written, from which that step resumes.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from ..io.aws import client, get_object_or_none, sse_args
from ..config import Settings
from ..format.keys import check_collection_name

MIGRATION_PREFIX = "migration/"


def migration_key(collection: str, name: str) -> str:
    return f"{MIGRATION_PREFIX}{check_collection_name(collection)}/{name}"


def migrating_collections(settings: Settings) -> list[str]:
    """The collections a command without ``--collection`` covers: the allow-list
    (``VECTOR_COLLECTIONS``) when set, else every collection with a published snapshot."""
    from ..table.snapshot_store import SnapshotStore

    return list(settings.collections) or sorted(SnapshotStore(settings).list_collections())


def utc_stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


class MigrationState:
    """Read and write the JSON documents of one bucket's migration."""

    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.vectors_bucket
        self.s3 = client("s3", settings)
        self.settings = settings

    def read(self, key: str) -> dict[str, Any] | None:
        response = get_object_or_none(self.s3, self.bucket, key)
        if response is None:
            return None
        try:
            return json.loads(response["Body"].read())
        except ValueError:
            raise ValueError(f"s3://{self.bucket}/{key} is not JSON: delete it to start that step over") from None

    def write(self, key: str, document: dict[str, Any]) -> None:
        self.put_bytes(key, json.dumps(document, indent=1, sort_keys=True).encode(), "application/json")

    def put_bytes(self, key: str, body: bytes, content_type: str) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, **sse_args(self.settings))

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)
