"""Lock table faults: missing, throttled (ProvisionedThroughputExceededException injected by
a botocore event hook on the real HTTP client) and unreachable. Each gives a clear error or
is retried with backoff and jitter (botocore's standard mode), and nothing is half-written."""

import io
import time

import numpy as np
import pytest
from botocore.awsrequest import AWSResponse

from vector_pipeline import ChromaCompactor, CompactionLock, produce_embedding_delta
from vector_pipeline.io.aws import client
from vector_pipeline.config import Settings
from vector_pipeline.cli.local_aws import free_port
from vector_pipeline.io.lock import LockTableError, lock_id_for

from ..conftest import all_keys, vectors

THROTTLED = (b'{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",'
             b'"message":"injected by the test"}')


class _Raw(io.BytesIO):
    def stream(self, **_: object):  # type: ignore[no-untyped-def]
        yield self.getvalue()


class Throttle:
    """Answers the first ``times`` UpdateItem calls with a throttling error."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.calls = 0

    def __call__(self, request: object, **_: object) -> AWSResponse | None:
        self.calls += 1
        if self.calls > self.times:
            return None
        return AWSResponse("http://throttled", 400, {"x-amzn-ErrorType": "ProvisionedThroughputExceededException"},
                           _Raw(THROTTLED))


@pytest.fixture
def throttle(settings: Settings):  # type: ignore[no-untyped-def]
    hooks = []

    def install(times: int) -> Throttle:
        hook = Throttle(times)
        events = client("dynamodb", settings).meta.events
        events.register("before-send.dynamodb.UpdateItem", hook)
        hooks.append((events, hook))
        return hook

    yield install
    for events, hook in hooks:
        events.unregister("before-send.dynamodb.UpdateItem", hook)


def test_throttled_lock_table_is_retried_with_backoff(settings: Settings, throttle) -> None:  # type: ignore[no-untyped-def]
    hook = throttle(3)
    started = time.monotonic()
    lock = CompactionLock(lock_id_for("words"), settings=settings)
    assert lock.acquire()
    assert hook.calls >= 4  # three throttled attempts, then the one that went through
    assert time.monotonic() - started > 0.05  # it backed off between them
    lock.release()


def test_lock_table_throttled_past_retries_is_a_clear_error_and_nothing_is_written(
        settings: Settings, rng: np.random.Generator, throttle) -> None:  # type: ignore[no-untyped-def]
    key = produce_embedding_delta(["a"], vectors(rng, 1), settings=settings)["delta_key"]
    before = all_keys(settings)
    throttle(1000)
    with pytest.raises(LockTableError, match="throttled after retries"):
        ChromaCompactor(settings=settings).compact_deltas([key], "words")
    assert all_keys(settings) == before


def test_missing_lock_table_is_a_clear_error_and_nothing_is_written(settings: Settings, rng: np.random.Generator) -> None:
    key = produce_embedding_delta(["a"], vectors(rng, 1), settings=settings)["delta_key"]
    before = all_keys(settings)
    with pytest.raises(LockTableError, match="'missing-table' does not exist"):
        ChromaCompactor(table_name="missing-table", settings=settings).compact_deltas([key], "words")
    assert all_keys(settings) == before


def test_unreachable_lock_table_is_a_clear_error(settings: Settings) -> None:
    nowhere = settings.with_overrides(aws_endpoint_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(LockTableError, match="unreachable"):
        CompactionLock(lock_id_for("words"), settings=nowhere).acquire()
