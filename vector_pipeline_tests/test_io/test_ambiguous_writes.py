"""Conditional writes whose answer was lost, against the moto server through the fault proxy
(``fault_proxy.py``): the first request lands, its answer is dropped (or held past the read
timeout), botocore resends it and meets 412 against its own write. The pointer's publish
(first and later), the catalog's create and update and the helper under them recognise their
own write by its write id; a write that really lost a race is still a conflict; the lock's
acquire recognises its own owner. Also: every fault kind the proxy injects is one botocore
retries; the endpoint's conditional-write check is not fooled by a lost answer. Not covered here: the workload under faults (test_reliability/test_wire_faults.py)."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest

from vector_pipeline import ChromaCompactor, CompactionLock, produce_embedding_delta
from vector_pipeline.cli.local_aws import MotoServer
from vector_pipeline.config import Settings
from vector_pipeline.io.aws import client
from vector_pipeline.format import manifest as mf
from vector_pipeline.io.conditional_writes import (CREATE_ONLY, PROBE_PREFIX, WRITE_ID_FIELD, EtagDialect,
                                                   WriteOutcome, checked_bucket, put_document_resolving_ambiguity)
from vector_pipeline.table.catalog import CatalogConflictError, CollectionCatalog, CollectionConfig
from vector_pipeline.table.snapshot_store import PublishOutcome, SnapshotStore

from ..helpers import vectors
from ..fault_proxy import FaultProxy
from ..fault_rules import Fault, FaultRule, ProxiedRequest

READ_TIMEOUT = 3.0


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.endpoint_url, hold_seconds=READ_TIMEOUT + 1) as started:
        yield started


@pytest.fixture
def proxied(settings: Settings, proxy: FaultProxy) -> Settings:
    """The test's settings through the proxy, with a read timeout short enough for TIMEOUT."""
    return proxy.settings(settings).with_overrides(aws_read_timeout_seconds=READ_TIMEOUT, compact_watch_wait_seconds=1)


def _put_of(suffix: str):
    return lambda request: request.is_conditional_put and request.path.split("?")[0].endswith(suffix)


def test_publish_whose_answer_was_lost_is_published_first_and_later(proxied: Settings, proxy: FaultProxy,
                                                                      rng: np.random.Generator) -> None:
    compactor = ChromaCompactor(settings=proxied)
    for round_number, fault in enumerate((Fault.DROP, Fault.TIMEOUT)):  # If-None-Match *, then If-Match
        produce_embedding_delta(["a"], vectors(rng, 1), documents=[f"r{round_number}"], settings=proxied)
        proxy.add(FaultRule(fault, match=_put_of("words/latest.json"), times=1))
        [result] = compactor.compact_pending("words")
        assert result.status == "ok", result.error
        pointer = SnapshotStore(proxied).read_pointer("words")
        assert pointer.version == result.version, "the pointer names the run's own version"
        assert proxy.injected(fault) == 1 and len(proxy.retry_gaps(fault)) == 1, "botocore resent the PUT"
    assert proxy.injected() == 2


def test_a_publish_that_lost_the_race_is_still_a_conflict_after_the_read_back(proxied: Settings, proxy: FaultProxy,
                                                                            rng: np.random.Generator) -> None:
    produce_embedding_delta(["a"], vectors(rng, 1), settings=proxied)
    assert ChromaCompactor(settings=proxied).compact_pending("words")[0].status == "ok"
    store = SnapshotStore(proxied)
    pointer = store.read_pointer("words")
    manifest = store.read_manifest("words", pointer.version)
    moved = mf.dumps({**pointer.document.to_dict(), WRITE_ID_FIELD: "another-writer"})
    store.s3.put_object(Bucket=store.bucket, Key=store.pointer_key("words"), Body=moved)  # the pointer moved
    proxy.add(FaultRule(Fault.DROP, match=_put_of("words/latest.json"), times=1))
    assert store.publish(manifest, pointer.etag, pointer.document) is PublishOutcome.CONFLICT


def test_catalog_create_and_update_whose_answers_were_lost_succeed(proxied: Settings, proxy: FaultProxy) -> None:
    catalog = CollectionCatalog(proxied)
    proxy.add(FaultRule(Fault.DROP, match=_put_of("collections/receipts.json"), times=2))
    created = catalog.create(CollectionConfig.defaults_for("receipts", proxied))
    updated = catalog.update("receipts", segment_max_count=7)
    assert proxy.injected(Fault.DROP) == 2
    assert catalog.get("receipts") == updated and updated.created_at == created.created_at
    with pytest.raises(CatalogConflictError):  # a second creator still loses
        catalog.create(CollectionConfig.defaults_for("receipts", proxied))


def test_helper_names_written_mine_and_conflict(proxied: Settings, proxy: FaultProxy) -> None:
    s3, bucket = client("s3", proxied), proxied.vectors_bucket
    first = put_document_resolving_ambiguity(s3, bucket, "t/doc.json", {"n": 1}, CREATE_ONLY)
    assert first.outcome is WriteOutcome.WRITTEN and first.etag
    proxy.add(FaultRule(Fault.DROP, match=_put_of("t/doc.json"), times=1))
    condition = checked_bucket(s3, proxied).if_match(first.etag)
    mine = put_document_resolving_ambiguity(s3, bucket, "t/doc.json", {"n": 2}, condition)
    assert mine.outcome is WriteOutcome.MINE and mine.outcome.landed and mine.etag != first.etag
    stale = put_document_resolving_ambiguity(s3, bucket, "t/doc.json", {"n": 3}, condition)
    assert stale.outcome is WriteOutcome.CONFLICT and stale.etag is None
    held = s3.get_object(Bucket=bucket, Key="t/doc.json")["Body"].read()
    assert f'"{WRITE_ID_FIELD}": "{mine.write_id}"'.encode() in held


@pytest.mark.parametrize("condition", ["if-none-match", "if-match"])
def test_the_endpoint_check_is_not_fooled_by_a_lost_answer(proxied: Settings, proxy: FaultProxy,
                                                          condition: str) -> None:
    """The probe's create (If-None-Match) or overwrite (If-Match) lands, its answer is lost,
    the resend is refused: the store still enforces conditions, and the check says so."""
    proxy.add(FaultRule(Fault.DROP, times=1, match=lambda request: request.method == "PUT" and condition in
                        request.headers and PROBE_PREFIX in request.path))
    checked = checked_bucket(client("s3", proxied), proxied, fresh=True)
    assert checked.etag_dialect is EtagDialect.QUOTED and proxy.injected(Fault.DROP) == 1


def test_a_write_whose_every_answer_was_lost_is_recognised_after_the_retries(proxied: Settings,
                                                                            proxy: FaultProxy) -> None:
    s3, bucket = client("s3", proxied), proxied.vectors_bucket
    proxy.add(FaultRule(Fault.DROP, match=_put_of("t/lost.json")))  # every attempt: botocore gives up
    put = put_document_resolving_ambiguity(s3, bucket, "t/lost.json", {"n": 1}, CREATE_ONLY)
    assert put.outcome is WriteOutcome.MINE
    assert proxy.injected(Fault.DROP) >= 8, "every one of standard mode's 8 attempts had its answer dropped"


def test_lock_acquire_whose_answer_was_lost_still_holds_the_lock(proxied: Settings, proxy: FaultProxy) -> None:
    proxy.add(FaultRule(Fault.DROP, service="dynamodb", times=1,
                        match=lambda request: request.target.endswith("UpdateItem")))
    lock = CompactionLock("chroma-words-snapshot", ttl_seconds=60, settings=proxied)
    assert lock.acquire() is True, "the resent acquire met the lock it had taken: its own owner"
    assert lock.holder().owner == lock.owner and proxy.injected(Fault.DROP) == 1
    assert CompactionLock("chroma-words-snapshot", ttl_seconds=60, settings=proxied).acquire() is False
    lock.release()


@pytest.mark.parametrize("fault", [f for f in Fault if f is not Fault.LATENCY])
def test_every_injected_fault_is_retried_by_botocore_on_each_service(proxied: Settings, proxy: FaultProxy,
                                                                    fault: Fault) -> None:
    def first_call(request: ProxiedRequest) -> bool:
        return request.method != "HEAD"

    for service in ("s3", "sqs", "dynamodb"):
        proxy.add(FaultRule(fault, service=service, times=1, match=first_call))
    client("s3", proxied).put_object(Bucket=proxied.vectors_bucket, Key="t/x", Body=b"x")
    client("sqs", proxied).get_queue_url(QueueName=proxied.delta_queue_name)
    client("dynamodb", proxied).describe_table(TableName=proxied.dynamodb_table_name)
    assert {service: proxy.injected(fault, service) for service in ("s3", "sqs", "dynamodb")} == \
        {"s3": 1, "sqs": 1, "dynamodb": 1}
    assert len(proxy.retry_gaps(fault)) == 3, "each faulted call came back as a resend"
