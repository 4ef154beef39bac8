"""What a compaction run did: its outcome (``CompactionStatus``) and its figures (``CompactionResult``),
as ``ChromaCompactor``, the base fold and the maintenance commands report them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class CompactionStatus(str, Enum):
    OK = "ok"
    BUSY = "busy"  # another compactor holds the lock: nothing was touched
    NOOP = "noop"  # every delta was already applied (or none was given)
    FAILED = "failed"  # nothing visible changed; messages stay for redelivery

    def __str__(self) -> str:
        return self.value


@dataclass
class CompactionResult:
    status: CompactionStatus
    collection: str
    deltas_processed: int = 0
    version: str | None = None
    previous_version: str | None = None
    vector_count: int | None = None
    already_applied: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)
    messages_acked: int = 0
    bytes_downloaded: int = 0
    bytes_uploaded: int = 0
    duration_seconds: float = 0.0
    fence: int | None = None
    fold: str | None = None  # append | fold_recent | fold_all (format/segments.py)
    segments: int | None = None
    merge_seconds: float = 0.0
    publish_seconds: float | None = None  # from the call until readers could see the version
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in (CompactionStatus.OK, CompactionStatus.NOOP)

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Enum) else v) for k, v in self.__dict__.items()}
