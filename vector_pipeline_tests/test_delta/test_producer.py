"""produce_embedding_delta: validation before anything is written, the delta layout
(files, then manifest last), the SQS announcement, and server-side encryption."""

from __future__ import annotations

import io
import json
import tarfile
import math

import numpy as np
import pytest

from vector_pipeline import produce_embedding_delta
from vector_pipeline.io.aws import client
from vector_pipeline.config import Settings
from vector_pipeline.format.keys import InvalidDeltaError, delta_id_time, new_delta_id, parse_delta_key
from vector_pipeline.delta.queue import DeltaQueue

from vector_pipeline_tests.helpers import all_keys, vectors


def test_delta_is_one_packed_object_whose_manifest_lists_every_file(settings: Settings,
                                                                     rng: np.random.Generator) -> None:
    result = produce_embedding_delta(["a", "b"], vectors(rng, 2), documents=["x", "y"],
                                     metadatas=[{"k": 1}, {"k": "v"}], delete_ids=["old"], settings=settings)
    key = result["delta_key"]
    assert key.startswith("delta/words/") and key.endswith("/")
    assert all_keys(settings, key) == [key + "delta.tar"]
    s3 = client("s3", settings)
    body = s3.get_object(Bucket=settings.vectors_bucket, Key=key + "delta.tar")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert names[0] == "manifest.json"
    assert manifest["format"] == "vector_pipeline.delta/2"
    assert manifest["upsert_count"] == 2 and manifest["delete_ids"] == ["old"]
    assert manifest["dimension"] == 8
    assert sorted(f["path"] for f in manifest["files"]) == sorted(names[1:])
    assert any(f["path"].endswith("chroma.sqlite3") for f in manifest["files"])


def test_every_object_written_is_encrypted(settings: Settings, rng: np.random.Generator) -> None:
    produce_embedding_delta(["a"], vectors(rng, 1), settings=settings)
    s3 = client("s3", settings)
    keys = all_keys(settings)
    assert keys
    for key in keys:
        assert s3.head_object(Bucket=settings.vectors_bucket, Key=key).get("ServerSideEncryption") == "AES256"


def test_delta_is_announced_on_sqs(settings: Settings, rng: np.random.Generator) -> None:
    result = produce_embedding_delta(["a", "b", "c"], vectors(rng, 3), delete_ids=["z"],
                                     collection_name="lines", settings=settings)
    messages, malformed = DeltaQueue(settings).receive(max_messages=10)
    assert not malformed and len(messages) == 1
    body = messages[0].body
    assert body["delta_key"] == result["delta_key"]
    assert body["collection"] == "lines" and body["delta_id"] == result["delta_id"]
    assert body["upsert_count"] == 3 and body["delete_count"] == 1


BAD_INPUTS = [
    (dict(ids=["a", "b"], embeddings=[[0.1]]), "2 ids but 1 embeddings"),
    (dict(ids=["a", "a"], embeddings=[[0.1], [0.2]]), "repeats row 1"),
    (dict(ids=[""], embeddings=[[0.1]]), "empty"),
    (dict(ids=["a", "b"], embeddings=[[0.1, 0.2], [0.3]]), "dimension"),
    (dict(ids=["a"], embeddings=[[math.nan]]), "NaN"),
    (dict(ids=["a"], embeddings=[[0.1]], metadatas=[{"k": {"nested": 1}}]), "row 1: metadata"),
    (dict(ids=["a"], embeddings=[[0.1]], metadatas=[{"k": None}]), "None"),
    (dict(ids=["a"], embeddings=[[0.1]], documents=[3]), "row 1: document"),
    (dict(ids=["a"], embeddings=[[0.1]], collection_name="../etc"), "collection name"),
    (dict(ids=["x" * 600], embeddings=[[0.1]]), "characters"),
    (dict(ids=[], embeddings=[]), "at least one"),
]


@pytest.mark.parametrize("arguments,message", BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_input_is_refused_and_writes_nothing(settings: Settings, arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        produce_embedding_delta(settings=settings, **arguments)
    assert all_keys(settings) == []
    assert DeltaQueue(settings).receive(max_messages=10) == ([], [])


def test_missing_bucket_is_a_clear_error(settings: Settings, rng: np.random.Generator) -> None:
    with pytest.raises(RuntimeError, match="no-such-bucket"):
        produce_embedding_delta(["a"], vectors(rng, 1), settings=settings.with_overrides(vectors_bucket="no-such-bucket"))


def test_delta_ids_sort_by_creation_time() -> None:
    earlier, later = new_delta_id(now_ms=1_700_000_000_000), new_delta_id(now_ms=1_700_000_000_001)
    assert earlier < later
    assert delta_id_time(earlier).timestamp() == pytest.approx(1_700_000_000.0)


@pytest.mark.parametrize("key", ["delta/words/../x/", "snapshot/words/01ARZ3NDEKTSV4RRFFQ69G5FAV/",
                                 "/etc/passwd", "delta/words/not-a-ulid/", "delta/a/b/c/d"])
def test_keys_outside_the_delta_layout_are_refused(key: str) -> None:
    with pytest.raises(InvalidDeltaError):
        parse_delta_key(key)
