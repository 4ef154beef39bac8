"""The command line's one error boundary: a failure the user can cause or fix (credentials,
endpoint, region, bucket, queue, table, permissions, a store that breaks the commit protocol,
bad input) becomes one or two lines naming the problem and the fix, exit 2; ``-v`` adds the
traceback. Anything else is a bug and keeps its traceback.

The cause is looked for along the exception's chain (``raise ... from``), innermost
configuration problem first: a missing bucket met during the conditional-write check is a
missing bucket, not a store that ignores conditions.
"""

from __future__ import annotations

from typing import Iterator

from ..config import Settings

SETUP = "run `vector-pipeline setup` (it creates what is missing)"
LOCAL = "for the embedded AWS, run `vector-pipeline local-aws` and paste the exports it prints"

_CREDENTIALS_REFUSED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "UnrecognizedClientException",
                        "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException", "InvalidSignatureException",
                        "AuthFailure", "InvalidToken", "AWS.SimpleQueueService.InvalidAccessKeyId"}
_FORBIDDEN = {"AccessDenied", "AccessDeniedException", "AllAccessDisabled", "Forbidden", "403",
              "AWS.SimpleQueueService.AccessDenied", "UnauthorizedOperation", "KMS.AccessDeniedException"}
_WRONG_REGION = {"AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException",
                 "InvalidLocationConstraint", "301", "InvalidRegion"}
_NO_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _endpoint(settings: Settings | None, service: str | None) -> str:
    if settings is None:
        return "the AWS endpoint"
    return (service and settings.endpoint_url_for(service)) or settings.describe_endpoints()


def _service_of(operation: str) -> str | None:
    if operation.endswith(("Object", "Objects", "ObjectsV2", "Bucket", "Buckets", "Upload", "Part")) \
            or "Bucket" in operation:
        return "s3"
    if "Queue" in operation or "Message" in operation:
        return "sqs"
    if "Item" in operation or "Table" in operation or operation in ("Query", "Scan"):
        return "dynamodb"
    return None


def _aws_problem(exc: BaseException, settings: Settings | None) -> str | None:
    """One AWS-side cause, or None when ``exc`` is not one."""
    from botocore import exceptions as bx

    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        return ("no AWS credentials found. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE); "
                f"{LOCAL}.")
    if isinstance(exc, bx.NoRegionError):
        return "no AWS region configured. Set AWS_DEFAULT_REGION (e.g. us-east-1)."
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ConnectionClosedError)):
        from urllib.parse import urlsplit

        url = getattr(exc, "kwargs", {}).get("endpoint_url", "")
        url = f"{urlsplit(url).scheme}://{urlsplit(url).netloc}" if url else _endpoint(settings, None)
        return (f"cannot reach {url}: nothing answers there. Start the embedded AWS (`vector-pipeline local-aws`) "
                "or fix AWS_ENDPOINT_URL (unset it for real AWS).")
    if isinstance(exc, bx.ReadTimeoutError):
        return f"{_endpoint(settings, None)} stopped answering (read timeout). Check the endpoint, then try again."
    if not isinstance(exc, bx.ClientError):
        return None
    code = str(exc.response.get("Error", {}).get("Code", ""))
    operation = getattr(exc, "operation_name", "") or ""
    bucket = settings.vectors_bucket if settings else "the bucket"
    if code == "NoSuchBucket":
        return f"bucket {bucket!r} does not exist. Set VECTORS_BUCKET, or {SETUP}."
    if code in _NO_QUEUE:
        queue = settings.delta_queue_name if settings else "the delta queue"
        return f"SQS queue {queue!r} does not exist. Set DELTA_QUEUE_NAME (or DELTA_QUEUE_URL), or {SETUP}."
    if code == "ResourceNotFoundException":
        table = settings.dynamodb_table_name if settings else "the lock table"
        return f"DynamoDB table {table!r} does not exist. Set DYNAMODB_TABLE_NAME, or {SETUP}."
    if code in _CREDENTIALS_REFUSED:
        return (f"AWS refused the credentials ({code}). Check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
                "(and AWS_SESSION_TOKEN if it expired).")
    if code in _WRONG_REGION:
        region = settings.aws_region if settings else "AWS_DEFAULT_REGION"
        return (f"{operation or 'a request'} went to the wrong region ({code}): the resource is not in {region}. "
                "Set AWS_DEFAULT_REGION to the bucket's region.")
    if code in _FORBIDDEN:
        return (f"AWS denied {operation or 'a request'} ({code}) at {_endpoint(settings, _service_of(operation))}: "
                "the credentials lack a permission this command needs (see docs/deploy.md for the policy).")
    return None


def _project_problem(exc: BaseException) -> str | None:
    """The project's own refusals: they already name the problem and the fix."""
    from ..format.manifest import IntegrityError
    from ..io.conditional_writes import ObjectEncryptionRefusedError, UnsafeEndpointError

    if isinstance(exc, (UnsafeEndpointError, ObjectEncryptionRefusedError)):
        return f"the S3 store breaks the commit protocol: {exc}"
    if isinstance(exc, IntegrityError):
        return f"the store returned data that fails its checks: {exc}"
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"{exc.filename}: no such file"
    if isinstance(exc, (RuntimeError, ValueError, OSError)) and not isinstance(
            exc, (NotImplementedError, RecursionError)):
        return str(exc) or type(exc).__name__
    return None


def explain(exc: BaseException, settings: Settings | None = None) -> str | None:
    """The line(s) a user reads for ``exc``; None for a bug (the caller keeps the traceback)."""
    chain = list(_chain(exc))
    note = getattr(exc, "note", None)  # what was done before the failure (a half-done produce)
    for link in reversed(chain):  # the innermost AWS cause names the real problem
        problem = _aws_problem(link, settings)
        if problem:
            return f"{problem}\n{note}" if note else problem
    return _project_problem(exc)
