"""Moving deltas between ``delta/``, ``archive/`` and ``quarantine/``.

Invariant: a move copies every object, then deletes the sources; the completion marker
(a format-1 manifest) is copied last and deleted first, so at every instant the delta is
complete at its source, at its target, or both — never at neither — and a crash mid-move
is finished by running the same move again (every step is idempotent). Applied deltas are
archived (kept for rebuilds and backfills) only after the pointer names a version holding
them; poison deltas go to ``quarantine/`` beside a ``reason.json``.

A packed delta (format 2) is one object: archiving it is one server-side copy, and the
sources of a whole compaction go in one ``DeleteObjects`` request; a key it reports as not
deleted is deleted alone, and an error then propagates (the next run finishes the move).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from ..format import manifest as mf
from ..io.aws import error_code, sse_args
from ..config import Settings
from ..format.keys import PACK_NAME, QUARANTINE_PREFIX, DeltaRef, InvalidDeltaError, parse_delta_key
from ..io.s3_objects import copy_object

log = logging.getLogger(__name__)

ARCHIVE_WORKERS = 8


def move_delta(s3: Any, settings: Settings, source_prefix: str, target_prefix: str) -> int:
    """Copy every object, then delete the sources; idempotent, safe to re-run after a crash."""
    bucket = settings.vectors_bucket
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=source_prefix)
            for o in page.get("Contents", [])]
    # The manifest goes last, as when the delta was written, and is deleted first.
    keys.sort(key=lambda k: k.endswith(mf.MANIFEST_NAME))
    for key in keys:
        copy_object(s3, bucket, key, target_prefix + key[len(source_prefix):], sse_args(settings))
    delete_keys(s3, bucket, sorted(keys, key=lambda k: not k.endswith(mf.MANIFEST_NAME)))
    return len(keys)


def archive_deltas(s3: Any, settings: Settings, refs: Sequence[DeltaRef],
                   on_archived: Callable[[], object] = lambda: None) -> int:
    """Move applied deltas from ``delta/`` to ``archive/``: a packed one by one copy (its
    source deleted with the others in one request), any other by ``move_delta``."""
    bucket = settings.vectors_bucket

    def archive(ref: DeltaRef) -> str | None:
        source = ref.key + PACK_NAME
        try:
            copy_object(s3, bucket, source, ref.archive_key + PACK_NAME, sse_args(settings))
        except Exception as exc:
            if error_code(exc) not in ("NoSuchKey", "404"):
                raise
            move_delta(s3, settings, ref.key, ref.archive_key)  # format 1, or archived already
            source = None
        on_archived()
        return source

    with ThreadPoolExecutor(max_workers=ARCHIVE_WORKERS) as pool:  # copies are latency-bound
        copied = [key for key in pool.map(archive, refs) if key is not None]
    delete_keys(s3, bucket, copied)
    return len(refs)


def delete_keys(s3: Any, bucket: str, keys: Sequence[str]) -> None:
    """Delete ``keys`` in order, 1,000 a request. A key the batch reports as not deleted is
    deleted alone (a store may authorize the batch differently, or fail one key for a
    moment); an error then propagates: nothing is ever reported deleted that is not."""
    for start in range(0, len(keys), 1000):
        batch = keys[start:start + 1000]
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch]})
        for error in answer.get("Errors", []):
            log.info("DeleteObjects left %s (%s): deleting it alone", error.get("Key"), error.get("Code"))
            s3.delete_object(Bucket=bucket, Key=error["Key"])


def quarantine_delta(s3: Any, settings: Settings, delta_key: str, reason: str) -> str | None:
    """Move a poison delta's objects to ``quarantine/`` beside a ``reason.json``."""
    try:
        ref = parse_delta_key(delta_key)
    except InvalidDeltaError:
        log.warning("not quarantined (key outside delta/): %r: %s", delta_key, reason)
        return None
    target = f"{QUARANTINE_PREFIX}{ref.collection}/{ref.delta_id}/"
    s3.put_object(Bucket=settings.vectors_bucket, Key=target + "reason.json", ContentType="application/json",
                  Body=mf.dumps({"delta_key": ref.key, "reason": reason,
                                 "quarantined_at": datetime.now(timezone.utc).isoformat()}),
                  **sse_args(settings))
    move_delta(s3, settings, ref.key, target + "delta/")
    log.warning("quarantined %s: %s", ref.key, reason)
    return target
