"""Read consistency: how stale a reader of this process may be.

Invariant (read-your-writes): once ``SnapshotStore.publish`` returned ``PUBLISHED`` in a
process — from ``ChromaCompactor.compact_deltas``, a Dagster publish step, a fold, a
rollback — every reader of that process answers from that version or a newer one on its
next call. It relies on every publish going through ``SnapshotStore.publish``, which
records the version here before it returns.

Readers of other processes see a publish within ``READER_POINTER_TTL_SECONDS`` (the
default consistency, ``BOUNDED``): they re-read the pointer at most that often.
``STRONG`` re-reads it on every call (one small GET per call).

A reader of the process that is already open is handed the new version by the publish
itself (``on_publish``): it switches before ``publish`` returns, so the first query after
a compaction is a warm one; a switch that fails leaves the next query to follow the
pointer, as any reader does.
"""

from __future__ import annotations

import logging
import threading
import weakref
from enum import Enum
from typing import Any, Callable

from ..config import Settings
from ..format.version_manifest import VersionManifest

log = logging.getLogger(__name__)


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


_listeners: dict[PublishKey, list[weakref.WeakMethod]] = {}


def on_publish(key: PublishKey, listener: Callable[[VersionManifest], Any]) -> None:
    """Call ``listener`` (a bound method, held weakly) with the manifest of every version
    this process publishes for ``key``, before ``record_publish`` returns."""
    with _publishes_lock:
        _listeners.setdefault(key, []).append(weakref.WeakMethod(listener))  # type: ignore[arg-type]


def record_publish(key: PublishKey, manifest: VersionManifest | None = None) -> None:
    """This process moved the pointer of ``key`` (to a newer version, or back, in a rollback)
    to ``manifest``'s version; its open readers switch to it now."""
    with _publishes_lock:
        _publishes[key] = _publishes.get(key, 0) + 1
        listeners = [ref() for ref in _listeners.get(key, [])]
        _listeners[key] = [ref for ref, alive in zip(_listeners.get(key, []), listeners) if alive is not None]
    if manifest is None:
        return
    for listener in listeners:
        if listener is None:
            continue
        try:
            listener(manifest)
        except Exception:  # the publish stands: the reader follows the pointer on its next call
            log.warning("a reader could not switch to the version just published", exc_info=True)


def publishes_here(key: PublishKey) -> int:
    """How many times this process moved the pointer of ``key``: a reader that last read
    the pointer when this count was lower must read it again before it answers."""
    with _publishes_lock:
        return _publishes.get(key, 0)
