"""``s3_objects.copy_object``: a server-side copy where the store has one; where it answers
``CopyObject`` with 501 (as Ceph RGW does for encrypted objects), a GET + PUT copy with the
same encryption, and no further CopyObject to that endpoint. The 501 is injected here by a
botocore ``before-send`` hook on a client of its own (the store's real 501 is RGW's, run by
``./dev compat``); everything else is moto's server."""

from __future__ import annotations

import io
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

from vector_pipeline.config import Settings
from vector_pipeline.cli.local_aws import MotoServer
from vector_pipeline.io.s3_objects import copy_object

NOT_IMPLEMENTED = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code>'
                   b'<Message>injected by the test</Message></Error>')


class _Raw(io.BytesIO):
    def stream(self, **_: object):  # type: ignore[no-untyped-def]
        yield self.read()


class CopyNotImplemented:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, request: object, **_: object) -> AWSResponse:
        self.calls += 1
        return AWSResponse("http://not-implemented", 501, {}, _Raw(NOT_IMPLEMENTED))


def _client(endpoint_url: str) -> Any:
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name="us-east-1",
                                          aws_access_key_id="testing", aws_secret_access_key="testing")


def test_server_side_copy_where_the_store_has_one(settings: Settings, moto_server: MotoServer) -> None:
    s3 = _client(moto_server.endpoint_url)
    s3.put_object(Bucket=settings.vectors_bucket, Key="delta/a", Body=b"payload")
    copy_object(s3, settings.vectors_bucket, "delta/a", "archive/a", {"ServerSideEncryption": "AES256"})
    copied = s3.get_object(Bucket=settings.vectors_bucket, Key="archive/a")
    assert copied["Body"].read() == b"payload" and copied["ServerSideEncryption"] == "AES256"


def test_copy_falls_back_to_get_and_put_where_copy_object_is_not_implemented(settings: Settings,
                                                                            moto_server: MotoServer) -> None:
    # Another spelling of the same server: the fallback is remembered per endpoint.
    s3 = _client(moto_server.endpoint_url.replace("127.0.0.1", "localhost"))
    refuse = CopyNotImplemented()
    s3.meta.events.register("before-send.s3.CopyObject", refuse)
    for name in ("a", "b"):
        s3.put_object(Bucket=settings.vectors_bucket, Key=f"delta/{name}", Body=name.encode() * 1000)
        copy_object(s3, settings.vectors_bucket, f"delta/{name}", f"archive/{name}", {"ServerSideEncryption": "AES256"})
        copied = s3.get_object(Bucket=settings.vectors_bucket, Key=f"archive/{name}")
        assert copied["Body"].read() == name.encode() * 1000 and copied["ServerSideEncryption"] == "AES256"
    assert refuse.calls == 1  # the second copy went straight to GET + PUT
