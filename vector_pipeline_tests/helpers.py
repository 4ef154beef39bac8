"""Small helpers the tests share (fixtures live in conftest.py): random vectors and a
listing of the bucket."""

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
