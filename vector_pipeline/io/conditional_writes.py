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

Every conditional write of a JSON document goes through ``put_document_resolving_ambiguity``:
botocore resends a PUT whose answer was lost (reset, read timeout, 5xx), and when the first
attempt had landed the resend meets 412 against the writer's own document. The document
carries a fresh ``write_id``; on a refusal (or a retryable error that outlived the retries)
the writer reads the key back and names the outcome: ``MINE`` (its own write is there),
``CONFLICT`` (another writer's, or nothing). A conflict is reported only after that look.
The check's own probe writes go through it too: a lost answer must not make a safe store
look unsafe.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .aws import error_code, get_object_or_none, sse_args
from ..config import Settings
from ..format import manifest as mf

log = logging.getLogger(__name__)

PROBE_PREFIX = "_conditional-write-check/"
# What a store answers to a condition that does not hold: S3's 412, or 409 on a race.
REFUSED_CODES = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")
WRITE_ID_FIELD = "write_id"  # the uuid a conditionally written document carries
CREATE_ONLY = {"IfNoneMatch": "*"}  # the condition of a first write: no object at the key


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

    def condition(self, etag: str | None) -> dict[str, str]:
        """``if_match(etag)``, or ``CREATE_ONLY`` when there was no object (``etag`` None)."""
        return self.if_match(etag) if etag else dict(CREATE_ONLY)


class WriteOutcome(Enum):
    WRITTEN = "written"  # the PUT was answered 2xx
    MINE = "mine"  # refused (or its answer lost), but the key holds this very write: it landed
    CONFLICT = "conflict"  # the key holds another writer's document (or none): nothing of ours is there

    @property
    def landed(self) -> bool:
        return self is not WriteOutcome.CONFLICT


@dataclass(frozen=True)
class ConditionalPut:
    """What ``put_document_resolving_ambiguity`` found: the outcome, the write id the
    document carried, and the key's ETag when this write is there (None on conflict)."""

    outcome: WriteOutcome
    write_id: str
    etag: str | None


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

    def put(step: str, **condition: str) -> str | None:
        """The new ETag, or None when the store refused the condition (a refusal met by a
        resend of this very write, its first answer lost, is not one: read back)."""
        try:
            written = put_document_resolving_ambiguity(s3, bucket, key, {"probe": step}, condition, extra)
            return written.etag if written.outcome.landed else None
        except Exception as exc:
            if extra and condition.get("IfNoneMatch") and _accepts_plain_put(s3, bucket, key):
                raise ObjectEncryptionRefusedError(
                    f"{where} refuses PUTs carrying {extra} ({error_code(exc)}); set VECTORS_SSE=none to "
                    f"write objects without the header (the store's own encryption at rest applies)") from exc
            raise UnsafeEndpointError(
                f"{where} failed a conditional-write check ({error_code(exc) or type(exc).__name__}: "
                f"{exc}); the commit protocol needs If-None-Match and If-Match on PUT") from exc

    try:
        first = put("first", IfNoneMatch="*")
        if first is None:
            raise UnsafeEndpointError(f"{where} refused If-None-Match: * on a key that does not exist")
        if put("second", IfNoneMatch="*") is not None:
            raise UnsafeEndpointError(
                f"{where} ignores If-None-Match: * (it overwrote an existing object); refusing to publish "
                f"there: a paused compactor could overwrite a newer pointer. Use a store that enforces "
                f"conditional writes (AWS S3, Ceph RGW, ...).")
        dialect, current = EtagDialect.QUOTED, put("third", IfMatch=EtagDialect.QUOTED.condition(first))
        if current is None:
            dialect, current = EtagDialect.UNQUOTED, put("third", IfMatch=EtagDialect.UNQUOTED.condition(first))
        if current is None:
            raise UnsafeEndpointError(f"{where} refused If-Match with the object's current ETag, quoted or not")
        if put("fourth", IfMatch=dialect.condition(first)) is not None:
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


def put_document_resolving_ambiguity(s3: Any, bucket: str, key: str, document: dict[str, Any],
                                     condition: dict[str, str], put_args: dict[str, str] | None = None,
                                     write_id: str | None = None) -> ConditionalPut:
    """PUT ``document`` (JSON, with ``WRITE_ID_FIELD`` set to ``write_id`` or a fresh uuid) at
    ``key`` under ``condition`` (``ConditionalWrites.condition``), and say what happened.

    A refusal (412/409) or an error that outlived botocore's retries is not taken at its
    word: the key is read back, and if it holds this write id the write landed (``MINE``; a
    resend met the first attempt's own write). A refusal with anything else there is
    ``CONFLICT``; any other error is raised as it came when the read-back does not show the
    write. Safe to call again with the same ``write_id``. A write of ours that a later writer
    already replaced reads as ``CONFLICT``: the safe answer (the caller redoes its work). The
    caller checks the store first (``checked_bucket``): on a store that ignores conditions
    ``WRITTEN`` would mean nothing.
    """
    write_id = write_id or uuid.uuid4().hex
    body = mf.dumps({**document, WRITE_ID_FIELD: write_id})
    try:
        response = s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json",
                                 **condition, **(put_args or {}))
        return ConditionalPut(WriteOutcome.WRITTEN, write_id, str(response.get("ETag", "")) or None)
    except Exception as exc:
        refused = error_code(exc) in REFUSED_CODES
        try:
            found = written_by(s3, bucket, key, write_id)
        except Exception as unreadable:  # the outcome cannot be told: raise, naming both
            raise unreadable from exc
        if found is not None:
            log.warning("conditional PUT of %s: %s, but the key holds this write (%s): it landed",
                        key, error_code(exc) or type(exc).__name__, write_id[:8])
            return ConditionalPut(WriteOutcome.MINE, write_id, found)
        if refused:
            return ConditionalPut(WriteOutcome.CONFLICT, write_id, None)
        raise


def written_by(s3: Any, bucket: str, key: str, write_id: str) -> str | None:
    """The ETag of ``key`` if the document there carries ``write_id``, else None."""
    response = get_object_or_none(s3, bucket, key)
    if response is None:
        return None
    try:
        held = mf.loads(response["Body"].read(), key).get(WRITE_ID_FIELD)
    except mf.IntegrityError:
        return None
    return str(response["ETag"]) if held == write_id else None
