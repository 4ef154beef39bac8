"""The compaction lock: at most one live holder per collection, on DynamoDB.

Invariant: a lock item names at most one owner whose ``expires_ms`` lies in the future, and
only that owner can extend or release it. Acquire is one conditional write (item absent,
released, or expired), so two acquirers can never both succeed for the same lifetime.

What it relies on: DynamoDB's conditional writes are atomic per item. What it does not
give: protection against a holder that paused past its expiry — that holder still
believes it owns the lock. The snapshot pointer's conditional PUT is what makes such a
holder harmless; the ``fence`` (a counter that grows on every acquire, kept in its own
item so the table's TTL can never reset it) lets manifests say which acquisition wrote
them.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from .aws import client, error_code
from ..config import Settings

log = logging.getLogger(__name__)

_FENCE_SUFFIX = "#fence"


class LockBusyError(RuntimeError):
    """Raised by ``with lock:`` when another owner holds a live lock."""


class LockTableError(RuntimeError):
    """The lock table is missing or unreachable."""


class LockLostError(RuntimeError):
    """The caller no longer owns the lock (it expired and was taken, or was released)."""


def lock_id_for(collection_name: str) -> str:
    return f"chroma-{collection_name}-snapshot"


# A lifetime this many heartbeats long survives one missed or late beat.
MIN_HEARTBEATS_PER_LIFETIME = 2.0


def refuse_unsafe_lock_timing(settings: Settings) -> None:
    """Raise ``ValueError`` unless the lock lives comfortably longer than the heartbeat
    interval (the original system once ran a heartbeat set longer than the lock's life)."""
    ttl, beat = settings.lock_ttl_seconds, settings.heartbeat_seconds
    if beat <= 0 or ttl < MIN_HEARTBEATS_PER_LIFETIME * beat:
        raise ValueError(
            f"COMPACTION_LOCK_TTL_SECONDS={ttl} must be at least {MIN_HEARTBEATS_PER_LIFETIME:g}x "
            f"COMPACTION_HEARTBEAT_SECONDS={beat:g} (and the heartbeat positive): a lock could "
            "expire between two heartbeats while its holder still works")


@dataclass(frozen=True)
class LockHolder:
    owner: str | None
    expires: float
    fence: int

    @property
    def is_live(self) -> bool:
        return self.owner is not None and self.expires > time.time()


class CompactionLock:
    """A DynamoDB lock with TTL, heartbeat, fence and owner-only release.

    ``acquire()`` never blocks: it returns False when another owner holds a live lock.
    As a context manager it acquires (raising ``LockBusyError`` when busy), runs a
    heartbeat thread at a third of the TTL, and releases on exit.
    """

    def __init__(
        self,
        lock_id: str,
        table_name: str | None = None,
        ttl_seconds: int | None = None,
        *,
        settings: Settings | None = None,
    ) -> None:
        self.settings = (Settings.resolve(settings)).with_overrides(
            dynamodb_table_name=table_name, lock_ttl_seconds=ttl_seconds
        )
        self.lock_id = lock_id
        self.table_name = self.settings.dynamodb_table_name
        self.ttl_seconds = int(self.settings.lock_ttl_seconds)
        self.owner = str(uuid.uuid4())
        self.fence: int | None = None
        self.expires: float = 0.0
        self._dynamodb = client("dynamodb", self.settings)
        self._heartbeat_stop = threading.Event()
        self._heartbeat_thread: threading.Thread | None = None
        self.lost = False

    # -- protocol steps ---------------------------------------------------------------

    def acquire(self) -> bool:
        """Take the lock if absent, released or expired. Safe to retry; never blocks."""
        now = time.time()
        expires = now + self.ttl_seconds
        try:
            self._call(
                "update_item",
                TableName=self.table_name,
                Key={"lock_id": {"S": self.lock_id}},
                UpdateExpression="SET #owner = :owner, #expires_ms = :expires_ms, #expires = :expires, "
                                 "acquired_at = :now_ms",
                # "= :owner": botocore may retry a write whose answer was lost; it is ours.
                ConditionExpression=("attribute_not_exists(lock_id) OR attribute_not_exists(#owner) "
                                     "OR #expires_ms < :now_ms OR #owner = :owner"),
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues={":owner": {"S": self.owner}, ":now_ms": _ms(now), **_expiry(expires)},
            )
        except _ConditionFailed:
            return False
        self.expires = expires
        self.lost = False
        try:
            self.fence = self._next_fence()
        except Exception:
            self.release()
            raise
        log.info("lock %s acquired (owner %s, fence %s, expires in %ss)",
                 self.lock_id, self.owner[:8], self.fence, self.ttl_seconds)
        return True

    def heartbeat(self) -> None:
        """Extend ``expires`` while still the owner; raise ``LockLostError`` otherwise."""
        expires = time.time() + self.ttl_seconds
        try:
            self._call(
                "update_item",
                TableName=self.table_name,
                Key={"lock_id": {"S": self.lock_id}},
                UpdateExpression="SET #expires_ms = :expires_ms, #expires = :expires",
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues={":owner": {"S": self.owner}, **_expiry(expires)},
            )
        except _ConditionFailed:
            self.lost = True
            raise LockLostError(f"lock {self.lock_id} is no longer held by {self.owner}") from None
        self.expires = expires

    def release(self) -> bool:
        """Give the lock up if still the owner. Returns False (and changes nothing) if not."""
        self._stop_heartbeat()
        try:
            self._call(
                "update_item",
                TableName=self.table_name,
                Key={"lock_id": {"S": self.lock_id}},
                UpdateExpression="REMOVE #owner SET #expires = :zero, #expires_ms = :zero",
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames=_NAMES,
                ExpressionAttributeValues={":owner": {"S": self.owner}, ":zero": {"N": "0"}},
            )
        except _ConditionFailed:
            log.warning("lock %s was not ours to release (owner %s)", self.lock_id, self.owner[:8])
            return False
        log.info("lock %s released (owner %s)", self.lock_id, self.owner[:8])
        return True

    def holder(self) -> LockHolder:
        """Who holds the lock now (for ``status``); never changes anything."""
        item = self._call(
            "get_item", TableName=self.table_name, Key={"lock_id": {"S": self.lock_id}},
            ConsistentRead=True,
        ).get("Item", {})
        fence_item = self._call(
            "get_item", TableName=self.table_name,
            Key={"lock_id": {"S": self.lock_id + _FENCE_SUFFIX}}, ConsistentRead=True,
        ).get("Item", {})
        return LockHolder(
            owner=item.get("owner", {}).get("S"),
            expires=float(item.get("expires_ms", {}).get("N", 0)) / 1000,
            fence=int(fence_item.get("fence", {}).get("N", 0)),
        )

    # -- heartbeat ----------------------------------------------------------------------

    def start_heartbeat(self) -> None:
        if self._heartbeat_thread is not None:
            return
        self._heartbeat_stop.clear()
        self._heartbeat_thread = threading.Thread(
            target=self._heartbeat_loop, name=f"heartbeat-{self.lock_id}", daemon=True
        )
        self._heartbeat_thread.start()

    def _heartbeat_loop(self) -> None:
        while not self._heartbeat_stop.wait(self.settings.heartbeat_seconds):
            try:
                self.heartbeat()
            except LockLostError:
                log.error("lock %s lost: the heartbeat found another owner", self.lock_id)
                return
            except Exception:  # a passing fault: the next beat retries, well before expiry
                log.warning("heartbeat of %s failed; retrying", self.lock_id, exc_info=True)

    def _stop_heartbeat(self) -> None:
        thread, self._heartbeat_thread = self._heartbeat_thread, None
        if thread is not None:
            self._heartbeat_stop.set()
            thread.join(timeout=10)

    # -- context manager -------------------------------------------------------------------

    def __enter__(self) -> "CompactionLock":
        if not self.acquire():
            raise LockBusyError(f"lock {self.lock_id} is held by another owner")
        self.start_heartbeat()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    # -- plumbing ----------------------------------------------------------------------------

    def _next_fence(self) -> int:
        response = self._call(
            "update_item",
            TableName=self.table_name,
            Key={"lock_id": {"S": self.lock_id + _FENCE_SUFFIX}},
            UpdateExpression="ADD fence :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        return int(response["Attributes"]["fence"]["N"])

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._dynamodb, operation)(**kwargs)
        except Exception as exc:
            code = error_code(exc)
            if code == "ConditionalCheckFailedException":
                raise _ConditionFailed() from None
            if code in ("ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"):
                raise LockTableError(
                    f"lock table {self.table_name!r} still throttled after retries with backoff: {exc}") from exc
            if code == "ResourceNotFoundException":
                raise LockTableError(
                    f"lock table {self.table_name!r} does not exist "
                    f"(run `vector-pipeline setup` or set DYNAMODB_TABLE_NAME)"
                ) from exc
            if code:
                raise
            raise LockTableError(f"lock table {self.table_name!r} unreachable: {exc}") from exc


class _ConditionFailed(Exception):
    pass


# ``expires_ms`` decides ownership to the millisecond; ``expires`` (whole seconds, rounded up)
# is the table's TTL attribute, which lets DynamoDB remove locks of holders that died.
_NAMES = {"#owner": "owner", "#expires": "expires", "#expires_ms": "expires_ms"}


def _ms(seconds: float) -> dict[str, str]:
    return {"N": str(int(seconds * 1000))}


def _expiry(expires: float) -> dict[str, dict[str, str]]:
    return {":expires_ms": _ms(expires), ":expires": {"N": str(math.ceil(expires))}}
