"""Poison deltas (14 kinds, in both delta layouts; 4 more only a packed delta can have) in one
batch with good ones: each is quarantined beside a reason object, its message goes to the
dead-letter queue with the reason, and the good deltas of the same batch still land.
Malformed messages go to the dead-letter queue too."""

import io
import json
import tarfile
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest

import numpy as np

from vector_pipeline import ChromaCompactor, open_snapshot, produce_embedding_delta
from vector_pipeline.io.aws import client
from vector_pipeline.config import Settings
from vector_pipeline.format.keys import new_delta_id
from vector_pipeline.format.keys import PACK_NAME
from vector_pipeline.format.manifest import MAX_MANIFEST_BYTES
from vector_pipeline.delta.queue import DeltaQueue
from vector_pipeline.read.reader import close_readers

from ..conftest import all_keys, vectors
from .crafting import corrupt_a_file, craft_delta, dead_letter_reasons, nan_embeddings, truncate_sqlite

craft = craft_delta

TWO_HOURS_AGO_MS = int((datetime.now(timezone.utc) - timedelta(hours=2)).timestamp() * 1000)


def _member(name: str, body: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = "") -> Callable[[tarfile.TarFile], None]:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.type, info.linkname = (len(body) if kind == tarfile.REGTYPE else 0), kind, link
        tar.addfile(info, io.BytesIO(body) if kind == tarfile.REGTYPE else None)
    return add


def _truncated_pack(settings: Settings) -> str:
    key = craft_delta(settings)
    s3 = client("s3", settings)
    body = s3.get_object(Bucket=settings.vectors_bucket, Key=key + PACK_NAME)["Body"].read()
    s3.put_object(Bucket=settings.vectors_bucket, Key=key + PACK_NAME, Body=body[:len(body) // 3] + b"\x01" * 700)
    return key


def _pack_only_poison(settings: Settings) -> dict[str, tuple[str, str]]:
    return {
        "symlink member": (craft_delta(settings, members=_member("link", kind=tarfile.SYMTYPE, link="/etc/passwd")),
                           "not a regular file"),
        "unlisted member": (craft_delta(settings, members=_member("extra.bin")), "does not list"),
        "member twice": (craft_delta(settings, members=_member("chroma.sqlite3")), "twice"),
        "truncated pack": (_truncated_pack(settings), "tar"),
    }


def _poison(settings: Settings, packed: bool) -> dict[str, tuple[str, str]]:
    """kind → (delta key, a word its quarantine reason must contain)."""
    huge = {"padding": "x" * (MAX_MANIFEST_BYTES + 1024)}

    def craft_delta(settings: Settings, **options: Any) -> str:
        return craft(settings, packed=packed, **options)

    return {
        **(_pack_only_poison(settings) if packed else {}),
        "no manifest": (craft_delta(settings, upload_manifest=False, delta_id=new_delta_id(TWO_HOURS_AGO_MS)),
                        "no manifest"),
        "manifest without files": (craft_delta(settings, manifest=lambda m: m.update(files=[])), "no files"),
        "checksum mismatch": (craft_delta(settings, files=corrupt_a_file), "checksum"),
        "truncated sqlite": (craft_delta(settings, files=truncate_sqlite), "unreadable"),
        "wrong dimension": (craft_delta(settings, dimension=4), "4-d"),
        "NaN embeddings": (craft_delta(settings, files=nan_embeddings), "NaN"),
        "over-long id": (craft_delta(settings, ids=["x" * 600]), "characters"),
        "bad delete ids": (craft_delta(settings, manifest=lambda m: m.update(delete_ids=["ok", 5])), "delete_ids"),
        "unknown collection": (craft_delta(settings, collection="receipts"), "not in VECTOR_COLLECTIONS"),
        "zip-bomb-sized manifest": (craft_delta(settings, manifest=lambda m: m.update(huge)), "bytes"),
        "path with ..": (craft_delta(settings, manifest=lambda m: m["files"].append(
            {"path": "../../../escape", "size": 1, "sha256": "0" * 64})), "unsafe path"),
        "absolute path": (craft_delta(settings, manifest=lambda m: m["files"].append(
            {"path": "/tmp/escape", "size": 1, "sha256": "0" * 64})), "unsafe path"),
        "manifest of another delta": (craft_delta(settings, manifest=lambda m: m.update(delta_id=new_delta_id())),
                                      "another delta"),
        "manifest not JSON": (craft_delta(settings, raw_manifest=b"{not json"), "not valid JSON"),
    }


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "files"])
def test_poison_deltas_are_quarantined_and_dead_lettered_while_good_ones_land(
        settings: Settings, rng: np.random.Generator, packed: bool) -> None:
    settings = settings.with_overrides(collections=("words", "lines"))  # an allow-list: "receipts" is not on it
    produce_embedding_delta(["base"], vectors(rng, 1), settings=settings)
    assert ChromaCompactor(settings=settings).compact_pending()[0].status == "ok"
    poison = _poison(settings, packed)
    good = [produce_embedding_delta([f"good{i}"], vectors(rng, 1), settings=settings)["delta_key"] for i in range(2)]
    sqs, queue = client("sqs", settings), DeltaQueue(settings)
    for body in ('{"delta_key": "delta/words/../../etc/"}', '{"delta_key": "/etc/passwd"}', "not json at all"):
        sqs.send_message(QueueUrl=queue.url, MessageBody=body)

    results = ChromaCompactor(settings=settings).compact_pending()

    words = next(r for r in results if r.collection == "words")
    assert words.status == "ok" and words.deltas_processed == len(good)
    close_readers()
    assert sorted(open_snapshot(settings=settings).get_vectors("words")["ids"]) == ["base", "good0", "good1"]
    reasons = dead_letter_reasons(settings)
    s3 = client("s3", settings)
    for kind, (key, word) in poison.items():
        delta_id = key.rstrip("/").rsplit("/", 1)[1]
        collection = key.split("/")[1]
        reason_key = f"quarantine/{collection}/{delta_id}/reason.json"
        reason = json.loads(s3.get_object(Bucket=settings.vectors_bucket, Key=reason_key)["Body"].read())["reason"]
        assert word in reason, f"{kind}: {reason}"
        assert all_keys(settings, key) == [], f"{kind}: still under delta/"
        assert word in reasons.get(key, ""), f"{kind}: message not dead-lettered with its reason"
    assert {"delta/words/../../etc/", "/etc/passwd", "not json at all"} <= set(reasons)
    assert queue.approximate_depth() == {"visible": 0, "in_flight": 0}
    print(f"FIGURE poison kinds quarantined: {len(poison)}; malformed messages dead-lettered: 3")
