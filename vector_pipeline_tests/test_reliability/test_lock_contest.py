"""Exactly one winner when N acquirers of one lock key are released together (never taken,
and just released), as threads and as processes, round after round, with a fence given to
one winner only; concurrent ``ADD`` on one counter loses no increment; and N simultaneous
conditional PUTs of one S3 key (``If-None-Match``, then ``If-Match``) have one winner. Run on the
embedded server (moto behind ``vector_pipeline.cli.moto_server``, which makes DynamoDB's
conditional writes atomic: stock moto gives two winners in 22-29 % of the rounds,
``scripts/lock_contest.py``) and, for DynamoDB, on dynalite (which serialises per item).
CI runs few rounds; ``./dev reliability`` runs ``VP_LOCK_CONTEST_ROUNDS`` (200).
Not covered: an expired key (test_lock.py takes one over); copies under contest."""

from __future__ import annotations

import os
import threading
import uuid
from typing import Iterator

import pytest

from vector_pipeline.cli.local_aws import setup_resources
from vector_pipeline.config import Settings
from vector_pipeline.io.aws import client, error_code

from ..compat_servers import LoopbackServer, dynalite
from .lock_contest import Workers, run_contest

ROUNDS = int(os.environ.get("VP_LOCK_CONTEST_ROUNDS", "20"))
ACQUIRERS = {Workers.THREADS: 4, Workers.PROCESSES: 3}
INCREMENTS = 4  # per thread, in the counter test


@pytest.fixture(scope="module")
def dynalite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackServer]:
    with dynalite(tmp_path_factory.mktemp("dynalite")) as server:
        yield server


@pytest.fixture(params=["embedded", "dynalite"])
def table_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The lock table on the embedded server (``settings``) or on dynalite (S3 and SQS stay on
    the embedded server; dynalite has no TTL, which the lock does not need)."""
    if request.param == "embedded":
        return settings
    server: LoopbackServer = request.getfixturevalue("dynalite_server")
    on_dynalite = settings.replace(dynamodb_table_name=f"vp-locks-{uuid.uuid4().hex[:8]}",
                                   aws_service_endpoints=(("dynamodb", server.endpoint_url),))
    setup_resources(on_dynalite)
    return on_dynalite


@pytest.mark.parametrize("workers", list(Workers), ids=lambda w: w.value)
def test_concurrent_acquirers_of_one_key_have_exactly_one_winner_with_its_own_fence(
        table_settings: Settings, workers: Workers) -> None:
    outcome = run_contest(table_settings, ACQUIRERS[workers], ROUNDS, workers)
    assert len(outcome.attempts) == ACQUIRERS[workers] * ROUNDS
    assert outcome.rounds_without_one_winner() == {}, "rounds → winners"
    assert outcome.repeated_fences() == {}, "(key, fence) → winners"
    never_taken = [outcome.winners(r)[0].fence for r in outcome.rounds if r % 2 == 0]
    just_released = [outcome.winners(r)[0].fence for r in outcome.rounds if r % 2 == 1]
    assert never_taken == [1] * len(never_taken) and just_released == [2] * len(just_released)  # once per acquire


def test_concurrent_increments_of_one_counter_are_never_lost(table_settings: Settings) -> None:
    """The lock's fence is ``ADD fence :one``: each caller must get a value of its own."""
    dynamodb, key = client("dynamodb", table_settings), f"counter-{uuid.uuid4().hex[:8]}"
    threads = ACQUIRERS[Workers.THREADS]
    barrier, values = threading.Barrier(threads), []

    def add() -> None:
        barrier.wait(60)
        for _ in range(INCREMENTS):
            answer = dynamodb.update_item(TableName=table_settings.dynamodb_table_name,
                                          Key={"lock_id": {"S": key}}, UpdateExpression="ADD fence :one",
                                          ExpressionAttributeValues={":one": {"N": "1"}}, ReturnValues="UPDATED_NEW")
            values.append(int(answer["Attributes"]["fence"]["N"]))

    running = [threading.Thread(target=add) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join(120)
    assert sorted(values) == list(range(1, threads * INCREMENTS + 1))


def test_simultaneous_conditional_puts_of_one_object_have_one_winner(settings: Settings) -> None:
    """The pointer's commit on the embedded server: N PUTs of one key released together, first
    with ``If-None-Match: *`` (a first version), then with ``If-Match`` the current ETag."""
    s3, threads = client("s3", settings), ACQUIRERS[Workers.THREADS]
    for round_number in range(max(1, ROUNDS // 4)):
        key, etag = f"contest/pointer-{round_number}.json", None
        for condition in ("IfNoneMatch", "IfMatch"):
            barrier, won = threading.Barrier(threads), []

            def put(body: bytes, condition: str = condition, etag: str | None = etag) -> None:
                barrier.wait(60)
                try:
                    answer = s3.put_object(Bucket=settings.vectors_bucket, Key=key, Body=body,
                                           **{condition: "*" if condition == "IfNoneMatch" else etag})
                    won.append((body, answer["ETag"]))
                except Exception as exc:
                    if error_code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                        raise

            running = [threading.Thread(target=put, args=(f"{condition}-{n}".encode(),)) for n in range(threads)]
            for thread in running:
                thread.start()
            for thread in running:
                thread.join(120)
            assert len(won) == 1, (round_number, condition, won)
            body, etag = won[0]
            assert s3.get_object(Bucket=settings.vectors_bucket, Key=key)["Body"].read() == body
