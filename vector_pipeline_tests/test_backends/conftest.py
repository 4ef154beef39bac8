"""The ``settings`` of this package: every test here runs once per independent AWS
implementation in ``INDEPENDENT_BACKENDS`` (the rest of the suite runs on moto alone).

Servers are started once per session and stopped by their process group; each test gets a
bucket, queue and lock table of its own (these servers have no reset), created by the
project's own ``setup_resources``."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from vector_pipeline.config import Settings
from vector_pipeline.cli.local_aws import setup_resources
from vector_pipeline.read.reader import close_readers

from ..compat_servers import Backend, start_backend, unique_names

# CI: MiniStack (S3, SQS) + DynamoDB Local. `./dev compat` runs every one of compat_servers.BACKENDS.
INDEPENDENT_BACKENDS = tuple(os.environ.get("VP_COMPAT_BACKENDS", "ministack").split(","))


@pytest.fixture(scope="session")
def started_backends() -> Iterator[dict[str, Backend]]:
    started: dict[str, Backend] = {}
    try:
        yield started
    finally:
        for backend in started.values():
            backend.stop()


@pytest.fixture(params=INDEPENDENT_BACKENDS)
def backend(request: pytest.FixtureRequest, started_backends: dict[str, Backend],
            tmp_path_factory: pytest.TempPathFactory) -> Backend:
    name = request.param
    if name not in started_backends:
        started_backends[name] = start_backend(name, tmp_path_factory.mktemp(name))
    return started_backends[name]


@pytest.fixture
def settings(backend: Backend, tmp_path: Path) -> Iterator[Settings]:
    base = Settings(cache_dir=str(tmp_path / "cache"), lock_ttl_seconds=60, reader_pointer_ttl_seconds=0)
    configured = unique_names(backend.settings(base), uuid.uuid4().hex[:10])
    setup_resources(configured)
    logging.getLogger("vector_pipeline").setLevel(logging.INFO)
    yield configured
    close_readers()
