"""The delta queue (SQS): notifications that a collection has a new delta.

Invariant: a message is a notification, never the only record of a delta — the delta's
complete files under ``delta/`` are (S3 is the source of truth for what is pending, and
every compaction lists ``delta/<collection>/``). So a message is deleted as soon as its
delta is durably known: applied by a published version, registered as a Dagster
partition, or listed complete under ``delta/`` by the consumer that is about to act on its
collection. No consumer ever makes another consumer's message visible again (each receive
counts toward the redrive limit): a valid message is received about once, never reaches the
dead-letter queue, and a quiet system has an empty queue. A malformed message is moved to
the dead-letter queue at once with the reason; a message naming a delta that never appears
comes back after its visibility timeout until redrive takes it there.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Iterable
from urllib.parse import unquote_plus

from ..io.aws import client, error_code
from ..config import Settings
from ..format.keys import DeltaRef, InvalidDeltaError, is_completion_marker, parse_delta_key

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 256 * 1024
# Queue URLs never change for a name; looking one up costs a request per delta otherwise.
_queue_urls: dict[tuple[str | None, str, str], str] = {}


@dataclass(frozen=True)
class DeltaMessage:
    ref: DeltaRef
    receipt_handle: str
    message_id: str
    body: dict[str, Any]


@dataclass(frozen=True)
class MalformedMessage:
    receipt_handle: str
    message_id: str
    raw_body: str
    reason: str


def parse_message(raw_body: str) -> DeltaRef:
    """The delta a message names; ``InvalidDeltaError`` says what is wrong with it."""
    if len(raw_body.encode()) > MAX_MESSAGE_BYTES:
        raise InvalidDeltaError("message larger than SQS allows")
    try:
        body = json.loads(raw_body)
    except ValueError:
        raise InvalidDeltaError("message is not JSON") from None
    if isinstance(body, dict) and "delta_key" not in body and "Records" in body:
        body = {"delta_key": _s3_event_key(body)}  # the bucket's notification on a delta manifest
    if not isinstance(body, dict) or not isinstance(body.get("delta_key"), str):
        raise InvalidDeltaError("message has no string 'delta_key'")
    ref = parse_delta_key(body["delta_key"])
    if body.get("collection", ref.collection) != ref.collection:
        raise InvalidDeltaError("message 'collection' disagrees with its delta_key", body["delta_key"])
    return ref


def _s3_event_key(body: dict[str, Any]) -> str:
    """The object key of an S3 event notification naming one delta manifest."""
    records = body.get("Records")
    if not isinstance(records, list) or len(records) != 1 or not isinstance(records[0], dict):
        raise InvalidDeltaError("S3 event notification without exactly one record")
    key = records[0].get("s3", {}).get("object", {}).get("key")
    if not isinstance(key, str) or not is_completion_marker(unquote_plus(key)):
        raise InvalidDeltaError("S3 event notification not about a delta's pack or manifest")
    return unquote_plus(key)


class DeltaQueue:
    """The SQS delta queue and its dead-letter queue."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._sqs = client("sqs", self.settings)
        self._url: str | None = self.settings.delta_queue_url
        self._dlq_url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = self._queue_url(self.settings.delta_queue_name)
        return self._url

    @property
    def dead_letter_url(self) -> str:
        if self._dlq_url is None:
            self._dlq_url = self._queue_url(self.settings.dead_letter_queue_name)
        return self._dlq_url

    def send(self, message: dict[str, Any]) -> str:
        response = self._sqs.send_message(QueueUrl=self.url, MessageBody=json.dumps(message))
        return str(response["MessageId"])

    def receive(self, max_messages: int = 100, wait_seconds: int = 0,
                visibility_timeout: int | None = None, deadline_seconds: float = 20.0,
                drain_wait_seconds: int | None = None) -> tuple[list[DeltaMessage], list[MalformedMessage]]:
        """Up to ``max_messages`` (10 per call), within ``deadline_seconds``. Each call long-polls
        ``wait_seconds``; once messages came, ``drain_wait_seconds`` if given (0: a loop that
        waited for its first message takes what is there and goes, instead of waiting again)."""
        good: list[DeltaMessage] = []
        bad: list[MalformedMessage] = []
        started = time.monotonic()
        while len(good) + len(bad) < max_messages and time.monotonic() - started < deadline_seconds:
            args: dict[str, Any] = {
                "QueueUrl": self.url, "MaxNumberOfMessages": min(10, max_messages - len(good) - len(bad)),
                "WaitTimeSeconds": wait_seconds if drain_wait_seconds is None or not (good or bad)
                else drain_wait_seconds, "AttributeNames": ["ApproximateReceiveCount"],
            }
            if visibility_timeout is not None:
                args["VisibilityTimeout"] = visibility_timeout
            messages = self._sqs.receive_message(**args).get("Messages", [])
            if not messages:
                break
            for raw in messages:
                self._sort(raw, good, bad)
        return good, bad

    def _sort(self, raw: dict[str, Any], good: list[DeltaMessage], bad: list[MalformedMessage]) -> None:
        body_text = raw.get("Body", "")
        try:
            ref = parse_message(body_text)
        except InvalidDeltaError as exc:
            bad.append(MalformedMessage(raw["ReceiptHandle"], raw["MessageId"], body_text, exc.reason))
            return
        good.append(DeltaMessage(ref, raw["ReceiptHandle"], raw["MessageId"], json.loads(body_text)))

    def ack(self, receipt_handles: Iterable[str]) -> int:
        """Delete messages (after publish only). Returns how many were deleted."""
        handles = list(dict.fromkeys(receipt_handles))
        deleted = 0
        for start in range(0, len(handles), 10):
            batch = handles[start:start + 10]
            response = self._sqs.delete_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(batch)],
            )
            deleted += len(response.get("Successful", []))
            for failure in response.get("Failed", []):
                log.warning("could not delete message: %s", failure.get("Message"))
        return deleted

    def dead_letter(self, receipt_handle: str, raw_body: str, reason: str) -> None:
        """Move one message to the dead-letter queue with the reason, then delete it."""
        self._sqs.send_message(
            QueueUrl=self.dead_letter_url, MessageBody=raw_body[:MAX_MESSAGE_BYTES - 1024] or "{}",
            MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:1000]}},
        )
        self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=receipt_handle)
        log.warning("message moved to the dead-letter queue: %s", reason)

    def approximate_depth(self) -> dict[str, int]:
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return {"visible": int(attributes.get("ApproximateNumberOfMessages", 0)),
                "in_flight": int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0))}

    def dead_letter_depth(self) -> int:
        """Messages in the dead-letter queue (malformed, or naming a delta that never came)."""
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.dead_letter_url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        return int(attributes.get("ApproximateNumberOfMessages", 0))

    def _queue_url(self, name: str) -> str:
        cache_key = (self.settings.endpoint_url_for("sqs"), self.settings.aws_region, name)
        if cache_key not in _queue_urls:
            _queue_urls[cache_key] = self._lookup_queue_url(name)
        return _queue_urls[cache_key]

    def _lookup_queue_url(self, name: str) -> str:
        try:
            return str(self._sqs.get_queue_url(QueueName=name)["QueueUrl"])
        except Exception as exc:
            if error_code(exc) in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
                raise RuntimeError(
                    f"SQS queue {name!r} does not exist (run `vector-pipeline setup`)") from exc
            raise
