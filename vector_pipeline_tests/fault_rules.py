"""The faults the fault proxy (``fault_proxy.py``) injects and the rules that choose them.

A rule injects one fault into a share of the requests to a service (``s3``, ``sqs``,
``dynamodb``) that its matcher accepts, at most so many times. The faults:

- ``LATENCY``: forward after a delay;
- ``RESET``: reset the connection (TCP RST) before forwarding: nothing applied;
- ``ERROR_500``: answer 500 InternalError without forwarding;
- ``THROTTLE``: answer S3's 503 SlowDown, or DynamoDB's / SQS's ThrottlingException;
- ``TIMEOUT``: forward (the server applies it), then hold the answer past the client's read
  timeout and close: the ambiguous case botocore resends;
- ``DROP``: forward, then close the connection without the answer: the lost answer.

``error_answer`` is what each service says for an injected error, in its own protocol (S3's
XML, the JSON protocol's ``__type``), so botocore classifies it as it would the real one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Callable, Mapping

SERVICES = ("s3", "sqs", "dynamodb")


class Fault(Enum):
    LATENCY = "latency"
    RESET = "reset"
    ERROR_500 = "error_500"
    THROTTLE = "throttle"
    TIMEOUT = "timeout"
    DROP = "drop"

    @property
    def applied_by_server(self) -> bool:
        """Whether the server received the request (the client cannot know it did)."""
        return self in (Fault.LATENCY, Fault.TIMEOUT, Fault.DROP)


@dataclass(frozen=True)
class ProxiedRequest:
    service: str
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def target(self) -> str:
        """The JSON protocol's operation (``DynamoDB_20120810.UpdateItem``, ``AmazonSQS.SendMessage``)."""
        return self.headers.get("x-amz-target", "")

    @property
    def is_conditional_put(self) -> bool:
        return self.method == "PUT" and ("if-match" in self.headers or "if-none-match" in self.headers)

    def describe(self) -> str:
        return f"{self.service} {self.target or self.method + ' ' + self.path.split('?')[0]}"


@dataclass
class FaultRule:
    """Inject ``fault`` into a share ``rate`` of the requests to ``service`` (None: any) that
    ``match`` accepts (None: all), at most ``times`` times (None: no limit)."""

    fault: Fault
    rate: float = 1.0
    service: str | None = None
    match: Callable[[ProxiedRequest], bool] | None = None
    times: int | None = None
    latency_seconds: float = 0.3
    fired: int = 0

    def applies_to(self, request: ProxiedRequest) -> bool:
        return ((self.service is None or self.service == request.service)
                and (self.times is None or self.fired < self.times)
                and (self.match is None or self.match(request)))


def rules_from_spec(spec: str, latency_seconds: float = 0.3) -> list[FaultRule]:
    """Rules from ``[service.]fault=rate`` pairs, comma-separated: ``s3.drop=0.01,throttle=0.02``."""
    rules = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, rate = part.partition("=")
        service, _, kind = name.rpartition(".")
        if service and service not in SERVICES:
            raise ValueError(f"fault spec {part!r}: service must be one of {', '.join(SERVICES)}")
        try:
            rules.append(FaultRule(Fault(kind), float(rate), service or None, latency_seconds=latency_seconds))
        except ValueError:
            raise ValueError(f"fault spec {part!r}: expected [service.]<{'|'.join(f.value for f in Fault)}>=<rate>") from None
    return rules


def error_answer(service: str, fault: Fault) -> tuple[int, str, bytes]:
    """The status, content type and body a service answers for an injected error."""
    throttled = fault is Fault.THROTTLE
    if service == "s3":
        code, status = ("SlowDown", 503) if throttled else ("InternalError", 500)
        body = f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>injected by the fault proxy</Message></Error>'
        return status, "application/xml", body.encode()
    prefix = "com.amazonaws.dynamodb.v20120810" if service == "dynamodb" else "com.amazonaws.sqs"
    code, status = ("ThrottlingException", 400) if throttled else ("InternalServerError", 500)
    body = json.dumps({"__type": f"{prefix}#{code}", "message": "injected by the fault proxy"})
    return status, "application/x-amz-json-1.0", body.encode()
