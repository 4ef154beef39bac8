"""Endpoints given per service (``AWS_ENDPOINT_URL_S3`` / ``_SQS`` / ``_DYNAMODB``), as a user
of an independent implementation sets them: ``status`` names each one (never "real AWS"),
and ``setup`` reports what the store enforces; a store refusing the per-object encryption
header (stock Ceph RGW) is named with the setting that works there (``VECTORS_SSE=none``). The subprocesses of the core suite (CLI,
compactors) get them the same way."""

import json
import os
import subprocess
import sys

import pytest

from vector_pipeline.config import Settings
from vector_pipeline.io.conditional_writes import ObjectEncryptionRefusedError
from vector_pipeline.cli.local_aws import OptionalFeature, setup_resources

from vector_pipeline_tests.compat_servers import Backend


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VECTORS_", "DELTA_", "DYNAMODB_"))}
    env.update(settings.local_aws_environment())
    return subprocess.run([sys.executable, "-m", "vector_pipeline.cli", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def test_status_names_every_service_endpoint(settings: Settings) -> None:
    result = _cli(settings, "status")
    assert result.returncode == 0, result.stderr
    assert "real AWS" not in result.stdout
    for service in ("s3", "sqs", "dynamodb"):
        assert f"{service} {settings.endpoint_url_for(service)}" in result.stdout


def test_setup_reports_conditional_writes_enforced(settings: Settings, backend: Backend) -> None:
    result = _cli(settings, "setup", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["conditional_writes"] == f"enforced (If-Match ETag {backend.etag_dialect})"
    expected_ttl = OptionalFeature.ENABLED if backend.lock_table_ttl else OptionalFeature.UNSUPPORTED
    assert report["lock_table_ttl"] == expected_ttl.value


def test_a_store_refusing_object_encryption_is_named_with_the_setting_that_works(settings: Settings,
                                                                                 backend: Backend) -> None:
    encrypted = settings.replace(sse="AES256", vectors_bucket=settings.vectors_bucket + "-sse")
    if backend.sse == "AES256":
        assert setup_resources(encrypted)["conditional_writes"].startswith("enforced")
        return
    with pytest.raises(ObjectEncryptionRefusedError, match="VECTORS_SSE=none") as refused:
        setup_resources(encrypted)
    assert encrypted.endpoint_url_for("s3") in str(refused.value)
