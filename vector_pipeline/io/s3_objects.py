"""Copying an object inside a bucket, on stores with and without a working ``CopyObject``.

Invariant: the target is written by one request that either stores the whole object or
nothing (S3 PUT semantics), so a copy interrupted at any point leaves the source in place
and the target absent or whole; re-running the copy is safe. Where the store answers
``CopyObject`` with 501 Not Implemented (Ceph RGW does for objects with server-side
encryption), the object is read and written again (GET + streamed PUT), with the same
encryption arguments; the store's answer is remembered per process and endpoint.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from .aws import error_code

log = logging.getLogger(__name__)

COPY_NOT_IMPLEMENTED = ("NotImplemented", "501")

_endpoints_without_copy: set[str] = set()
_lock = threading.Lock()


def copy_object(s3: Any, bucket: str, source_key: str, target_key: str, put_args: dict[str, str]) -> None:
    """Copy ``source_key`` to ``target_key`` in ``bucket``, server-side where the store can."""
    endpoint = str(s3.meta.endpoint_url)
    if endpoint not in _endpoints_without_copy:
        try:
            s3.copy_object(Bucket=bucket, Key=target_key, CopySource={"Bucket": bucket, "Key": source_key}, **put_args)
            return
        except Exception as exc:
            if error_code(exc) not in COPY_NOT_IMPLEMENTED:
                raise
            with _lock:
                _endpoints_without_copy.add(endpoint)
            log.warning("%s does not implement CopyObject here (%s): copying by GET + PUT from now on",
                        endpoint, error_code(exc))
    body = s3.get_object(Bucket=bucket, Key=source_key)["Body"]
    try:
        s3.upload_fileobj(body, bucket, target_key, ExtraArgs=dict(put_args))
    finally:
        body.close()
