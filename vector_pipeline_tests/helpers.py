"""Small helpers the tests share (fixtures live in conftest.py): random vectors, a listing of
the bucket, a collection whose recall its search breadth decides."""

from __future__ import annotations

import numpy as np

from vector_pipeline.config import Settings


def vectors(rng: np.random.Generator, count: int, dimension: int = 8) -> list[list[float]]:
    return rng.random((count, dimension), dtype=np.float32).tolist()


def all_keys(settings: Settings, prefix: str = "") -> list[str]:
    from vector_pipeline.io.aws import client

    s3 = client("s3", settings)
    return sorted(o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=settings.vectors_bucket, Prefix=prefix) for o in page.get("Contents", []))


def hard_collection(settings: Settings, name: str) -> None:
    """2,000 gaussian 32-d vectors in a sparse graph (8 neighbours, construction breadth 32):
    the search breadth decides the recall."""
    from vector_pipeline import produce_embedding_delta
    from vector_pipeline.table.catalog import CollectionCatalog, CollectionConfig

    CollectionCatalog(settings).create(CollectionConfig.defaults_for(name, settings).changed(
        hnsw_max_neighbors=8, hnsw_construction_ef=32))
    data = np.random.default_rng(0).standard_normal((2000, 32)).astype(np.float32)
    produce_embedding_delta([f"v{i}" for i in range(2000)], data.tolist(), collection_name=name, settings=settings)
