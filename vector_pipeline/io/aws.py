"""boto3 clients for the endpoint the settings name (none = real AWS).

Every AWS call in the project goes through a client made here, so the same code reaches
moto's server on loopback, another implementation (an endpoint per service) and real AWS.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import boto3
from botocore.config import Config

from ..config import Settings

# Standard retry mode resends after a throttle, a 5xx, a reset or a read timeout, backing off
# with full jitter (rand × 2^attempt s after a throttle, × 50 ms otherwise; at most 20 s),
# out of a retry quota per client (500 tokens, 5 per throttled retry, 14 per other retry, 1
# back per clean call). "adaptive" would add a client-side rate limiter per client; the
# project's calls are few and bursty, so it keeps "standard". A resend can meet its own
# landed write: conditional writes resolve that (conditional_writes.py). AWS_MAX_ATTEMPTS
# (Settings.aws_max_attempts, 8) bounds the attempts, AWS_READ_TIMEOUT_SECONDS the wait.

_client_lock = threading.Lock()



def sse_args(settings: Settings) -> dict[str, str]:
    """The encryption arguments of every PUT, upload and copy this project makes
    (``VECTORS_SSE``): none for a store that refuses the header, SSE-S3, or SSE-KMS."""
    if settings.sse == "none":
        return {}
    args = {"ServerSideEncryption": settings.sse}
    if settings.sse == "aws:kms" and settings.sse_kms_key_id:
        args["SSEKMSKeyId"] = settings.sse_kms_key_id
    return args


def client(service: str, settings: Settings) -> Any:
    """A boto3 client for ``settings``' endpoint of ``service``, shared per process (clients
    are thread-safe and take ~100 ms to build, more than a small delta takes to upload)."""
    return _cached_client(service, settings.aws_region, settings.endpoint_url_for(service),
                          settings.aws_access_key_id,
                          settings.aws_secret_access_key.get_secret_value() if settings.aws_secret_access_key else None,
                          settings.aws_read_timeout_seconds, settings.aws_max_attempts)


@functools.lru_cache(maxsize=64)
def _cached_client(service: str, region: str, endpoint_url: str | None, access_key_id: str | None,
                   secret_access_key: str | None, read_timeout: float, max_attempts: int = 8) -> Any:
    with _client_lock:  # boto3 sessions are not thread-safe while they build clients
        return boto3.session.Session().client(
            service,
            region_name=region,
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(retries={"max_attempts": max_attempts, "mode": "standard"}, max_pool_connections=32,
                          connect_timeout=10, read_timeout=read_timeout),
        )


def get_object_or_none(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    """``GetObject``'s response, or None when the key does not exist; a missing bucket is a
    ``RuntimeError`` that says how to create it."""
    try:
        return dict(s3.get_object(Bucket=bucket, Key=key))
    except Exception as exc:
        if error_code(exc) in ("NoSuchKey", "404"):
            return None
        if error_code(exc) == "NoSuchBucket":
            raise RuntimeError(f"bucket {bucket!r} does not exist (run `vector-pipeline setup`)") from exc
        raise


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError, or of the one a transfer error wraps ('' if none)."""
    seen: BaseException | None = exc
    for _ in range(4):  # boto3's S3UploadFailedError is raised while handling a ClientError
        if seen is None:
            break
        response = getattr(seen, "response", None) or {}
        code = response.get("Error", {}).get("Code")
        if code:
            return str(code)
        seen = seen.__cause__ or seen.__context__
    return ""
