"""What a store may lack without harm: ``setup`` warns and goes on where the lock table's TTL
is not implemented (dynalite: ``UpdateTimeToLive`` unknown) and the lock still works there;
where the bucket's default encryption is refused (s3rver: 501), setup warns that the objects
carry their own. Does not cover a store refusing the per-object header (``VECTORS_SSE=none``
is shown on Ceph RGW by ``./dev compat``)."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Iterator

import pytest

from vector_pipeline import CompactionLock
from vector_pipeline.config import Settings
from vector_pipeline.cli.local_aws import MotoServer, OptionalFeature, _ensure_bucket, setup_resources

from vector_pipeline_tests.compat_servers import S3RVER_CREDENTIALS, LoopbackServer, dynalite, s3rver


@pytest.fixture(scope="module")
def dynalite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackServer]:
    with dynalite(tmp_path_factory.mktemp("dynalite")) as server:
        yield server


def test_setup_without_ttl_warns_and_the_lock_still_works(settings: Settings, moto_server: MotoServer,
                                                          dynalite_server: LoopbackServer,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    on_dynalite = settings.replace(dynamodb_table_name=f"vp-locks-{uuid.uuid4().hex[:8]}",
                                   aws_service_endpoints=(("dynamodb", dynalite_server.endpoint_url),))
    with caplog.at_level(logging.WARNING, logger="vector_pipeline"):
        report = setup_resources(on_dynalite)
    assert report["lock_table_ttl"] == OptionalFeature.UNSUPPORTED.value
    assert "TTL not available" in caplog.text and "UnknownOperationException" in caplog.text
    assert report["conditional_writes"].startswith("enforced")  # S3 is still moto's
    paused = CompactionLock("chroma-words-snapshot", ttl_seconds=1, settings=on_dynalite)
    assert paused.acquire()
    assert CompactionLock("chroma-words-snapshot", settings=on_dynalite).acquire() is False
    time.sleep(1.5)
    taker = CompactionLock("chroma-words-snapshot", settings=on_dynalite)
    assert taker.acquire() and taker.fence > paused.fence  # expiry is the lock's own rule, not TTL's


def test_setup_on_moto_enables_ttl_and_bucket_encryption(settings: Settings) -> None:
    fresh = settings.replace(vectors_bucket=f"vp-{uuid.uuid4().hex[:8]}", dynamodb_table_name=f"vp-locks-{uuid.uuid4().hex[:8]}")
    report = setup_resources(fresh)
    assert report["lock_table_ttl"] == report["bucket_default_encryption"] == OptionalFeature.ENABLED.value
    assert setup_resources(fresh)["bucket_default_encryption"] == OptionalFeature.LEFT_AS_IS.value


def test_refused_bucket_encryption_is_a_warning_when_objects_carry_their_own(
        tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture) -> None:
    server = s3rver(tmp_path_factory.mktemp("s3rver")).start()
    try:
        on_s3rver = Settings(aws_service_endpoints=(("s3", server.endpoint_url),), vectors_bucket="vp-encryption",
                             aws_access_key_id=S3RVER_CREDENTIALS, aws_secret_access_key=S3RVER_CREDENTIALS)
        with caplog.at_level(logging.WARNING, logger="vector_pipeline"):
            assert _ensure_bucket(on_s3rver) == ("vp-encryption", OptionalFeature.UNSUPPORTED)
        assert "default encryption refused (NotImplemented)" in caplog.text and "VECTORS_SSE=AES256" in caplog.text
        unencrypted = on_s3rver.replace(vectors_bucket="vp-no-encryption", sse="none")
        assert _ensure_bucket(unencrypted) == ("vp-no-encryption", OptionalFeature.NOT_REQUESTED)
    finally:
        server.stop()
