"""CompactionLock against DynamoDB on the moto server: conditional acquire, owner-only
heartbeat and release, expiry takeover, a fence that grows on every acquire. Does not
cover throttling or an unreachable table beyond the missing-table error."""

from __future__ import annotations

import time

import pytest

from vector_pipeline import CompactionLock
from vector_pipeline.io.aws import client
from vector_pipeline.config import Settings
from vector_pipeline.io.lock import LockBusyError, LockLostError, LockTableError


def _lock(settings: Settings, ttl: int = 60) -> CompactionLock:
    return CompactionLock("chroma-words-snapshot", ttl_seconds=ttl, settings=settings)


def test_second_acquirer_is_refused_while_lock_is_live(settings: Settings) -> None:
    first, second = _lock(settings), _lock(settings)
    assert first.acquire() is True
    assert second.acquire() is False
    assert first.holder().owner == first.owner


def test_fence_grows_on_every_acquire(settings: Settings) -> None:
    fences = []
    for _ in range(3):
        lock = _lock(settings)
        assert lock.acquire()
        fences.append(lock.fence)
        lock.release()
    assert fences == sorted(fences) and len(set(fences)) == 3


def test_only_the_owner_can_release(settings: Settings) -> None:
    owner, intruder = _lock(settings), _lock(settings)
    assert owner.acquire()
    assert intruder.release() is False
    assert owner.holder().owner == owner.owner
    assert owner.release() is True
    assert owner.holder().owner is None
    assert owner.holder().fence >= 1  # release keeps the counter


def test_expired_lock_is_taken_over_and_old_holder_cannot_heartbeat(settings: Settings) -> None:
    paused = _lock(settings, ttl=1)
    assert paused.acquire()
    time.sleep(2.1)
    taker = _lock(settings, ttl=60)
    assert taker.acquire()
    assert taker.fence > paused.fence
    with pytest.raises(LockLostError):
        paused.heartbeat()
    assert paused.release() is False
    assert taker.holder().owner == taker.owner


def test_heartbeat_extends_expiry(settings: Settings) -> None:
    lock = _lock(settings, ttl=30)
    assert lock.acquire()
    before = lock.holder().expires
    time.sleep(1.1)
    lock.heartbeat()
    assert lock.holder().expires > before


def test_background_heartbeat_keeps_a_short_lock_alive(settings: Settings) -> None:
    lock = _lock(settings, ttl=3)
    with lock:
        time.sleep(4.5)  # longer than the TTL; the heartbeat runs every second
        assert _lock(settings).acquire() is False
    assert _lock(settings).acquire() is True


def test_context_manager_raises_when_busy(settings: Settings) -> None:
    with _lock(settings):
        with pytest.raises(LockBusyError):
            with _lock(settings):
                pass


def test_lock_item_carries_ttl_attribute(settings: Settings) -> None:
    lock = _lock(settings)
    assert lock.acquire()
    dynamodb = client("dynamodb", settings)
    ttl = dynamodb.describe_time_to_live(TableName=settings.dynamodb_table_name)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires"
    item = dynamodb.get_item(TableName=settings.dynamodb_table_name,
                             Key={"lock_id": {"S": "chroma-words-snapshot"}})["Item"]
    assert abs(float(item["expires"]["N"]) - (time.time() + 60)) < 5


def test_missing_table_is_a_clear_error(settings: Settings) -> None:
    lock = CompactionLock("chroma-words-snapshot", table_name="no-such-table", settings=settings)
    with pytest.raises(LockTableError, match="no-such-table"):
        lock.acquire()


def test_acquire_retried_by_the_same_owner_succeeds(settings: Settings) -> None:
    """botocore may resend a write whose answer was lost: the lock is then already ours."""
    lock = _lock(settings)
    assert lock.acquire()
    assert lock.acquire()
    assert _lock(settings).acquire() is False
