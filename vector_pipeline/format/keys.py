"""Delta keys and ids: where a delta lives in the bucket, and the order deltas apply in.

Invariant: every key this project reads or writes under ``delta/``, ``archive/`` or
``quarantine/`` was built by ``delta_key_for`` or checked by ``parse_delta_key``: one
collection (a valid chroma name with no ``..``) and one ULID, nothing else — so no key
taken from a message or a listing can reach outside its prefix or the local disk.

``delta_id`` is a ULID (48-bit millisecond time + 80 bits of randomness, Crockford
base32): sorting ids sorts deltas by creation time, which fixes the apply order.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from . import manifest as mf

DELTA_PREFIX = "delta/"
ARCHIVE_PREFIX = "archive/"
QUARANTINE_PREFIX = "quarantine/"
PACK_NAME = "delta.tar"  # format 2: the whole delta in one object (format/pack.py)
# The object whose presence makes a delta complete: its pack, or (format 1) its manifest.
COMPLETION_MARKERS = (PACK_NAME, mf.MANIFEST_NAME)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DELTA_ID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
_COLLECTION_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,61}[a-zA-Z0-9]$")


class InvalidDeltaError(ValueError):
    """A delta (or its key, or its message) cannot be applied; ``reason`` says why."""

    def __init__(self, reason: str, delta_key: str = ""):
        super().__init__(f"{delta_key}: {reason}" if delta_key else reason)
        self.reason = reason
        self.delta_key = delta_key


def new_delta_id(now_ms: int | None = None) -> str:
    millis = int(time.time() * 1000) if now_ms is None else now_ms
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def delta_id_time(delta_id: str) -> datetime:
    value = 0
    for char in delta_id:
        value = value * 32 + _CROCKFORD.index(char)
    return datetime.fromtimestamp((value >> 80) / 1000, tz=timezone.utc)


def check_collection_name(collection_name: str) -> str:
    if not isinstance(collection_name, str) or not _COLLECTION_RE.match(collection_name) \
            or ".." in collection_name:
        raise ValueError(
            f"invalid collection name {collection_name!r}: 3-63 characters of letters, digits, "
            "'.', '_' or '-', starting and ending with a letter or digit, no '..'"
        )
    return collection_name


def delta_key_for(collection_name: str, delta_id: str, prefix: str = DELTA_PREFIX) -> str:
    return f"{prefix}{collection_name}/{delta_id}/"


@dataclass(frozen=True)
class DeltaRef:
    """A delta's place: collection and id, parsed from a key that was checked."""

    collection: str
    delta_id: str

    @property
    def key(self) -> str:
        return delta_key_for(self.collection, self.delta_id)

    @property
    def archive_key(self) -> str:
        return delta_key_for(self.collection, self.delta_id, ARCHIVE_PREFIX)

    @property
    def partition_key(self) -> str:
        return f"{self.collection}.{self.delta_id}"


def parse_delta_key(delta_key: str, prefixes: Sequence[str] = (DELTA_PREFIX,)) -> DeltaRef:
    """``delta/<collection>/<delta_id>/`` (trailing ``/``, ``delta.tar`` or ``manifest.json`` optional)."""
    if not isinstance(delta_key, str) or "\\" in delta_key or "\x00" in delta_key:
        raise InvalidDeltaError("delta key is not a plain string", str(delta_key))
    key = delta_key.removesuffix(mf.MANIFEST_NAME).removesuffix(PACK_NAME).rstrip("/")
    prefix = next((p for p in prefixes if key.startswith(p)), None)
    if prefix is None:
        raise InvalidDeltaError(f"key outside {' or '.join(prefixes)}", delta_key)
    parts = key[len(prefix):].split("/")
    if len(parts) != 2 or ".." in key.split("/"):
        raise InvalidDeltaError("expected <prefix><collection>/<delta_id>/", delta_key)
    collection, delta_id = parts
    try:
        check_collection_name(collection)
    except ValueError as exc:
        raise InvalidDeltaError(str(exc), delta_key) from None
    if not _DELTA_ID_RE.match(delta_id):
        raise InvalidDeltaError(f"delta id {delta_id!r} is not a ULID", delta_key)
    return DeltaRef(collection, delta_id)


def is_completion_marker(key: str) -> bool:
    """Whether a listed object makes its delta complete: its pack, or a format-1 manifest
    (not a format-1 delta's chroma files)."""
    return key.endswith(tuple("/" + marker for marker in COMPLETION_MARKERS))
