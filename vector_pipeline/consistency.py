"""Read consistency: how stale a reader of this process may be.

Invariant (read-your-writes): once ``SnapshotStore.publish`` returned ``PUBLISHED`` in a
process — from ``ChromaCompactor.compact_deltas``, a Dagster publish step, a fold, a
rollback — every reader of that process answers from that version or a newer one on its
next call. It relies on every publish going through ``SnapshotStore.publish``, which
records the version here before it returns.

Readers of other processes see a publish within ``READER_POINTER_TTL_SECONDS`` (the
default consistency, ``BOUNDED``): they re-read the pointer at most that often.
``STRONG`` re-reads it on every call (one small GET per call).
"""

from __future__ import annotations

import threading
from enum import Enum

from .config import Settings


class ReadConsistency(str, Enum):
    BOUNDED = "bounded"  # the pointer re-read at most once per READER_POINTER_TTL_SECONDS
    STRONG = "strong"  # the pointer re-read on every call

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: "ReadConsistency | str") -> "ReadConsistency":
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"consistency must be one of {[c.value for c in cls]}, not {value!r}") from None


PublishKey = tuple[str | None, str, str]  # (endpoint, bucket, collection)

_publishes: dict[PublishKey, int] = {}
_publishes_lock = threading.Lock()


def publish_key(settings: Settings, bucket: str, collection: str) -> PublishKey:
    return settings.aws_endpoint_url, bucket, collection


def record_publish(key: PublishKey) -> None:
    """This process moved the pointer of ``key`` (to a newer version, or back, in a rollback)."""
    with _publishes_lock:
        _publishes[key] = _publishes.get(key, 0) + 1


def publishes_here(key: PublishKey) -> int:
    """How many times this process moved the pointer of ``key``: a reader that last read
    the pointer when this count was lower must read it again before it answers."""
    with _publishes_lock:
        return _publishes.get(key, 0)
