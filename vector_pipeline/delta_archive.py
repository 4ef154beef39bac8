"""Moving deltas between ``delta/``, ``archive/`` and ``quarantine/``.

Invariant: a move copies every object, then deletes the sources; the manifest is copied
last and deleted first, so at every instant the delta is complete at its source, at its
target, or both — never at neither — and a crash mid-move is finished by running the same
move again (every step is idempotent). Applied deltas are archived (kept for rebuilds and
backfills) only after the pointer names a version holding them; poison deltas go to
``quarantine/`` beside a ``reason.json``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from . import manifest as mf
from .aws import sse_args
from .config import Settings
from .delta_keys import QUARANTINE_PREFIX, InvalidDeltaError, parse_delta_key

log = logging.getLogger(__name__)


def move_delta(s3: Any, settings: Settings, source_prefix: str, target_prefix: str) -> int:
    """Copy every object, then delete the sources; idempotent, safe to re-run after a crash."""
    bucket = settings.vectors_bucket
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=source_prefix)
            for o in page.get("Contents", [])]
    # The manifest goes last, as when the delta was written, and is deleted first.
    keys.sort(key=lambda k: k.endswith(mf.MANIFEST_NAME))
    for key in keys:
        s3.copy_object(Bucket=bucket, Key=target_prefix + key[len(source_prefix):],
                       CopySource={"Bucket": bucket, "Key": key}, **sse_args(settings))
    for start in range(0, len(keys), 1000):
        batch = sorted(keys[start:start + 1000], key=lambda k: not k.endswith(mf.MANIFEST_NAME))
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch]})
    return len(keys)


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
