"""Pinecone fixtures: a loopback index per test (``pinecone_server``), settings pointing the
official SDK at it with quick retries, and the shipped receipts' lines embedded once."""

from __future__ import annotations

from typing import Any

import pytest

from vector_pipeline.config import Settings

from ..pinecone_server import DEFAULT_API_KEY, PineconeServer, pinecone_server  # noqa: F401 (fixture)


@pytest.fixture
def pinecone_settings(settings: Settings, pinecone_server: PineconeServer) -> Settings:  # noqa: F811
    return settings.with_overrides(pinecone_index_host=pinecone_server.host, pinecone_api_key=DEFAULT_API_KEY,
                                   pinecone_max_attempts=3, pinecone_retry_base_seconds=0.05)


@pytest.fixture
def pinecone_env(pinecone_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The process environment of a user running ``vector-pipeline`` against both endpoints."""
    for name, value in pinecone_settings.local_aws_environment().items():  # PINECONE_* among them
        monkeypatch.setenv(name, value)
    assert Settings.from_env() == pinecone_settings
    return pinecone_settings


@pytest.fixture(scope="session")
def receipt_lines() -> list[dict[str, Any]]:
    """Every line of the shipped receipts as a Pinecone vector: real MiniLM embedding, the
    text in metadata ``text``, receipt fields beside it."""
    from vector_pipeline.cli.demo import load_receipts, receipt_records
    from vector_pipeline.chroma.embeddings import MiniLMProvider

    records = [r for receipt in load_receipts() for r in receipt_records(receipt)["lines"]]
    vectors = MiniLMProvider().embed([text for _, text, _ in records])
    return [{"id": record_id, "values": list(map(float, vector)), "metadata": {**metadata, "text": text}}
            for (record_id, text, metadata), vector in zip(records, vectors)]
