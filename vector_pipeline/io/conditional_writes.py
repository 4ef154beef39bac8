"""Whether an S3 endpoint enforces the conditional writes the commit protocol rests on.

Invariant: no process publishes a pointer to a bucket on an endpoint until it has seen, with
scratch objects in that bucket, the store refuse ``If-None-Match: *`` on an existing key and
``If-Match`` with a stale ETag (412 or 409). A store that silently ignores either (s3rver
does) would let a compactor that paused past its lock's expiry overwrite a newer pointer: a
lost update that nothing reports. Such an endpoint is refused with ``UnsafeEndpointError``
naming it, before anything is published.

The check also learns the store's ETag dialect: AWS, moto and MiniStack compare ``If-Match``
with the ETag as they return it (quoted); Ceph RGW 16 answers 412 to the quoted form and
compares the bare one. Every conditional PUT then sends the form the store compares
(``etag_condition``). The result is kept per process, per endpoint and bucket.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .aws import error_code, sse_args
from ..config import Settings

log = logging.getLogger(__name__)

PROBE_PREFIX = "_conditional-write-check/"
# What a store answers to a condition that does not hold: S3's 412, or 409 on a race.
REFUSED_CODES = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


class EtagDialect(Enum):
    QUOTED = "quoted"  # If-Match: "<md5>", as S3 returns the ETag
    UNQUOTED = "unquoted"  # If-Match: <md5> (Ceph RGW)

    def condition(self, etag: str) -> str:
        bare = etag.strip('"')
        return f'"{bare}"' if self is EtagDialect.QUOTED else bare


class UnsafeEndpointError(RuntimeError):
    """The S3 endpoint does not enforce conditional writes: publishing there could lose updates."""


class ObjectEncryptionRefusedError(RuntimeError):
    """The S3 endpoint refuses the per-object encryption header ``VECTORS_SSE`` asks for."""


@dataclass(frozen=True)
class ConditionalWrites:
    """What the check found for one bucket on one endpoint."""

    endpoint: str
    bucket: str
    etag_dialect: EtagDialect

    def if_match(self, etag: str) -> dict[str, str]:
        """The ``put_object`` arguments for "only if the object still has ``etag``"."""
        return {"IfMatch": self.etag_dialect.condition(etag)}


_checked: dict[tuple[str, str], ConditionalWrites] = {}
_checked_lock = threading.Lock()


def verified_conditional_writes(s3: Any, bucket: str, endpoint: str, put_args: dict[str, str] | None = None,
                                fresh: bool = False) -> ConditionalWrites:
    """The check's result for ``bucket`` on ``endpoint``, running it on first use in this
    process (or again, ``fresh``); raises ``UnsafeEndpointError`` (every time) if the store
    does not enforce them."""
    with _checked_lock:
        known = None if fresh else _checked.get((endpoint, bucket))
        if known is None:
            known = _checked[(endpoint, bucket)] = check_conditional_writes(s3, bucket, endpoint, put_args)
        return known


def checked_bucket(s3: Any, settings: Settings, bucket: str | None = None, fresh: bool = False) -> ConditionalWrites:
    """``verified_conditional_writes`` for ``settings``' bucket (or ``bucket``) on its S3
    endpoint, probing with the encryption arguments every write of this project carries."""
    endpoint = settings.endpoint_url_for("s3") or f"AWS S3 ({settings.aws_region})"
    return verified_conditional_writes(s3, bucket or settings.vectors_bucket, endpoint, sse_args(settings), fresh)


def _accepts_plain_put(s3: Any, bucket: str, key: str) -> bool:
    """Whether a PUT without encryption arguments goes through (the key is deleted after)."""
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=b"plain")
        return True
    except Exception:
        return False


def check_conditional_writes(s3: Any, bucket: str, endpoint: str,
                             put_args: dict[str, str] | None = None) -> ConditionalWrites:
    """Write, overwrite and delete one scratch object under ``PROBE_PREFIX`` to see whether the
    store refuses a create over an existing key and a write with a stale ETag; returns the
    ETag dialect the store compares. Safe to run concurrently (each run has its own key)."""
    key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    extra = dict(put_args or {})
    where = f"S3 endpoint {endpoint} (bucket {bucket!r})"

    def put(body: bytes, **condition: str) -> str | None:
        """The new ETag, or None when the store refused the condition."""
        try:
            return str(s3.put_object(Bucket=bucket, Key=key, Body=body, **condition, **extra)["ETag"])
        except Exception as exc:
            if error_code(exc) in REFUSED_CODES:
                return None
            if extra and condition.get("IfNoneMatch") and _accepts_plain_put(s3, bucket, key):
                raise ObjectEncryptionRefusedError(
                    f"{where} refuses PUTs carrying {extra} ({error_code(exc)}); set VECTORS_SSE=none to "
                    f"write objects without the header (the store's own encryption at rest applies)") from exc
            raise UnsafeEndpointError(
                f"{where} failed a conditional-write check ({error_code(exc) or type(exc).__name__}: "
                f"{exc}); the commit protocol needs If-None-Match and If-Match on PUT") from exc

    try:
        first = put(b"first", IfNoneMatch="*")
        if first is None:
            raise UnsafeEndpointError(f"{where} refused If-None-Match: * on a key that does not exist")
        if put(b"second", IfNoneMatch="*") is not None:
            raise UnsafeEndpointError(
                f"{where} ignores If-None-Match: * (it overwrote an existing object); refusing to publish "
                f"there: a paused compactor could overwrite a newer pointer. Use a store that enforces "
                f"conditional writes (AWS S3, Ceph RGW, ...).")
        dialect, current = EtagDialect.QUOTED, put(b"third", IfMatch=EtagDialect.QUOTED.condition(first))
        if current is None:
            dialect, current = EtagDialect.UNQUOTED, put(b"third", IfMatch=EtagDialect.UNQUOTED.condition(first))
        if current is None:
            raise UnsafeEndpointError(f"{where} refused If-Match with the object's current ETag, quoted or not")
        if put(b"fourth", IfMatch=dialect.condition(first)) is not None:
            raise UnsafeEndpointError(
                f"{where} ignores If-Match (a PUT with a stale ETag overwrote the object); refusing to "
                f"publish there: a paused compactor could overwrite a newer pointer. Use a store that "
                f"enforces conditional writes (AWS S3, Ceph RGW, ...).")
    finally:
        try:
            s3.delete_object(Bucket=bucket, Key=key)
        except Exception:  # the check's answer stands; a leftover scratch object is harmless
            log.warning("could not delete the scratch object %s from %s", key, where)
    log.info("%s enforces conditional writes (If-Match ETag %s)", where, dialect.value)
    return ConditionalWrites(endpoint, bucket, dialect)
