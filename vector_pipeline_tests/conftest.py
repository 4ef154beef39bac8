"""Shared fixtures: one moto server per test session (a real HTTP endpoint on loopback),
reset before each test, with bucket, queues and lock table created by the project's own
``setup_resources``. SIGTERM and SIGHUP end the session as Ctrl-C does (fixtures torn down,
child process groups stopped), so a killed test run leaves no server behind."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from vector_pipeline.config import Settings
from vector_pipeline.cli.local_aws import MotoServer, setup_resources
from vector_pipeline.cli.processes import stop_on_signals
from vector_pipeline.read.reader import close_readers


@pytest.fixture(scope="session", autouse=True)
def child_processes_stop_on_signals() -> Iterator[None]:
    with stop_on_signals():
        yield


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(moto_server: MotoServer, tmp_path: Path) -> Iterator[Settings]:
    moto_server.reset()
    # Readers follow the pointer on every query here, so tests see each publish at once.
    configured = moto_server.settings(Settings(cache_dir=str(tmp_path / "cache"), lock_ttl_seconds=60,
                                               reader_pointer_ttl_seconds=0))
    setup_resources(configured)
    logging.getLogger("vector_pipeline").setLevel(logging.INFO)
    yield configured
    close_readers()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def vectors(rng: np.random.Generator, count: int, dimension: int = 8) -> list[list[float]]:
    return rng.random((count, dimension), dtype=np.float32).tolist()


def all_keys(settings: Settings, prefix: str = "") -> list[str]:
    from vector_pipeline.io.aws import client

    s3 = client("s3", settings)
    return sorted(o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=settings.vectors_bucket, Prefix=prefix) for o in page.get("Contents", []))
