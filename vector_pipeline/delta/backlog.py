"""A collection's backlog: the complete deltas waiting under ``delta/<collection>/``.

Invariant: read-only, one listing of the collection's prefix. S3 is the truth for what is
pending (a queue message only says where to look), so what a scheduler decides from a
``Backlog`` — compact now or later — never depends on which messages it happened to read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..config import Settings
from ..format.keys import (DELTA_PREFIX, InvalidDeltaError, delta_id_time, delta_key_for, is_completion_marker,
                           parse_delta_key)
from ..io.aws import client


@dataclass(frozen=True)
class Backlog:
    """The pending deltas of one collection, oldest first, and their packed bytes."""

    collection: str
    sizes: dict[str, int]  # delta id → bytes of its pack (format 1: of its manifest)

    @property
    def delta_ids(self) -> list[str]:
        return sorted(self.sizes)

    @property
    def delta_keys(self) -> list[str]:
        return [delta_key_for(self.collection, delta_id) for delta_id in self.delta_ids]

    @property
    def bytes(self) -> int:
        return sum(self.sizes.values())

    @property
    def pending(self) -> int:
        return len(self.sizes)

    @property
    def oldest_delta_id(self) -> str | None:
        return min(self.sizes) if self.sizes else None

    def oldest_age_seconds(self, now: datetime | None = None) -> float:
        """How long the oldest pending delta has waited (0 with nothing pending)."""
        oldest = self.oldest_delta_id
        if oldest is None:
            return 0.0
        return max(0.0, ((now or datetime.now(timezone.utc)) - delta_id_time(oldest)).total_seconds())


def read_backlog(settings: Settings, collection: str) -> Backlog:
    """List ``delta/<collection>/`` once: its complete deltas (pack or format-1 manifest)."""
    return read_backlogs(settings, f"{DELTA_PREFIX}{collection}/").get(collection, Backlog(collection, {}))


def read_backlogs(settings: Settings, prefix: str = DELTA_PREFIX) -> dict[str, Backlog]:
    """Every collection's backlog below ``prefix`` (all of ``delta/`` by default), one listing."""
    s3: Any = client("s3", settings)
    sizes: dict[str, dict[str, int]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.vectors_bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if not is_completion_marker(obj["Key"]):
                continue
            try:
                ref = parse_delta_key(obj["Key"])
            except InvalidDeltaError:
                continue  # not a delta's key: the compaction's intake reports it
            own = sizes.setdefault(ref.collection, {})
            own[ref.delta_id] = own.get(ref.delta_id, 0) + int(obj.get("Size", 0))
    return {collection: Backlog(collection, own) for collection, own in sizes.items()}
