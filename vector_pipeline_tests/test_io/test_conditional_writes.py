"""The conditional-write check (``conditional_writes.py``): moto and MiniStack pass it with
quoted ETags and leave no scratch object; s3rver, which ignores ``If-None-Match`` and
``If-Match``, is refused by ``setup`` (library and CLI) and by a compactor before it writes
any version, with an error naming the endpoint, and nothing is published or lost. The
unquoted dialect (Ceph RGW) is shown by ``./dev compat``, not here."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Iterator

import numpy as np
import pytest

from vector_pipeline import ChromaCompactor, produce_embedding_delta
from vector_pipeline.io.aws import client
from vector_pipeline.io.conditional_writes import (PROBE_PREFIX, EtagDialect, UnsafeEndpointError,
                                                check_conditional_writes, verified_conditional_writes)
from vector_pipeline.config import Settings
from vector_pipeline.cli.local_aws import MotoServer, setup_resources
from vector_pipeline.table.snapshot_store import SnapshotStore

from vector_pipeline_tests.compat_servers import S3RVER_CREDENTIALS, LoopbackServer, s3rver
from vector_pipeline_tests.helpers import all_keys, vectors


@pytest.fixture(scope="module")
def s3rver_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackServer]:
    with s3rver(tmp_path_factory.mktemp("s3rver")) as server:
        yield server


@pytest.fixture
def s3rver_settings(s3rver_server: LoopbackServer, moto_server: MotoServer, settings: Settings) -> Settings:
    """S3 on s3rver (a bucket name of its own: s3rver keeps its buckets for the module);
    SQS and DynamoDB on moto (created by the ``settings`` fixture)."""
    return settings.replace(vectors_bucket=f"vp-{uuid.uuid4().hex[:10]}", aws_endpoint_url=None, aws_access_key_id=S3RVER_CREDENTIALS,
                            aws_secret_access_key=S3RVER_CREDENTIALS,
                            aws_service_endpoints=(("dynamodb", moto_server.endpoint_url), ("s3", s3rver_server.endpoint_url),
                                                   ("sqs", moto_server.endpoint_url)))


def test_moto_enforces_conditional_writes_with_quoted_etags(settings: Settings) -> None:
    checked = check_conditional_writes(client("s3", settings), settings.vectors_bucket, "moto")
    assert checked.etag_dialect is EtagDialect.QUOTED
    assert all_keys(settings, PROBE_PREFIX) == []


def test_the_check_runs_once_per_process_per_endpoint_and_bucket(settings: Settings) -> None:
    s3 = client("s3", settings)
    first = verified_conditional_writes(s3, settings.vectors_bucket, "moto-once")
    assert verified_conditional_writes(s3, settings.vectors_bucket, "moto-once") is first
    assert verified_conditional_writes(s3, settings.vectors_bucket, "moto-once", fresh=True) is not first


def test_etag_dialects_quote_or_strip() -> None:
    assert EtagDialect.QUOTED.condition('"abc"') == EtagDialect.QUOTED.condition("abc") == '"abc"'
    assert EtagDialect.UNQUOTED.condition('"abc"') == "abc"


def test_setup_refuses_s3rver_naming_the_endpoint(s3rver_settings: Settings, s3rver_server: LoopbackServer) -> None:
    with pytest.raises(UnsafeEndpointError) as refused:
        setup_resources(s3rver_settings)
    message = str(refused.value)
    assert s3rver_server.endpoint_url in message and "ignores If-None-Match" in message
    assert all_keys(s3rver_settings, PROBE_PREFIX) == []


def test_setup_command_refuses_s3rver_with_a_clear_error(s3rver_settings: Settings,
                                                         s3rver_server: LoopbackServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VECTORS_", "DELTA_", "DYNAMODB_"))}
    env.update(s3rver_settings.local_aws_environment())
    result = subprocess.run([sys.executable, "-m", "vector_pipeline.cli", "setup"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("error: ") == 1 and f"S3 endpoint {s3rver_server.endpoint_url}" in result.stderr, \
        result.stderr
    assert "conditional writes" in result.stderr and "Traceback" not in result.stderr


def test_compactor_refuses_to_write_a_version_to_s3rver(s3rver_settings: Settings,
                                                       rng: np.random.Generator) -> None:
    client("s3", s3rver_settings).create_bucket(Bucket=s3rver_settings.vectors_bucket)
    delta_key = produce_embedding_delta(["a", "b"], vectors(rng, 2), settings=s3rver_settings)["delta_key"]
    [result] = ChromaCompactor(settings=s3rver_settings).compact_pending("words")
    assert result.status == "failed" and "UnsafeEndpointError" in result.error
    assert s3rver_settings.endpoint_url_for("s3") in result.error
    assert SnapshotStore(s3rver_settings).read_pointer("words") is None
    assert all_keys(s3rver_settings, "snapshot/") == [] and all_keys(s3rver_settings, PROBE_PREFIX) == []
    assert all_keys(s3rver_settings, delta_key) != []  # still pending, its message not acknowledged
