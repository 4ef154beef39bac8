"""A fault-injecting HTTP proxy between boto3 and the test AWS servers (moto, dynalite, ...).

boto3 is pointed at it through the settings' endpoint (``FaultProxy.settings``); it forwards
every request to the real server behind it, and can be told, per service (``s3``, ``sqs``,
``dynamodb``: read from the request's SigV4 credential scope) and per request matcher, at a
rate, to:

- ``LATENCY``: forward after a delay;
- ``RESET``: reset the connection (TCP RST) before forwarding: nothing applied;
- ``ERROR_500``: answer 500 InternalError without forwarding;
- ``THROTTLE``: answer S3's 503 SlowDown, or DynamoDB's / SQS's ThrottlingException;
- ``TIMEOUT``: forward (the server applies it), then hold the answer past the client's read
  timeout and close: the ambiguous case botocore resends;
- ``DROP``: forward, then close the connection without the answer: the lost answer.

It counts what it injected per service and kind, and the gap before botocore resent each
faulted call (the same ``amz-sdk-invocation-id`` coming back): the backoff it applied.

Why a proxy of our own rather than mitmproxy: the tests need the rules, counts and gaps in
the test's own process (a rule per test, read back after the workload), which mitmproxy
gives only through an addon script in another process and an IPC of our own; the traffic
is plain HTTP on loopback, so mitmproxy's TLS interception and HTTP/2 are of no use; and it
brings some thirty packages (cryptography, h2, aioquic, ...) with pins of their own into the
project's one lock file. This is the standard library's ``http.server`` and ``http.client``,
some 330 lines. It speaks HTTP/1.1 with Content-Length or chunked bodies, which is what
botocore sends.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import socket
import struct
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator, Mapping
from urllib.parse import urlsplit

from vector_pipeline.config import Settings

SERVICES = ("s3", "sqs", "dynamodb")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "te", "upgrade"}
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")


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


def _error(service: str, fault: Fault) -> tuple[int, str, bytes]:
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


@dataclass
class _Tally:
    forwarded: Counter = field(default_factory=Counter)  # service -> requests the server received
    injected: Counter = field(default_factory=Counter)  # (service, fault) -> injections
    retry_gaps: defaultdict = field(default_factory=lambda: defaultdict(list))  # fault -> seconds before the resend
    pending: dict = field(default_factory=dict)  # invocation id -> (fault, when)
    # Conditional PUT calls (botocore invocation id -> path) with an attempt applied and its answer lost.
    lost_conditional_answers: dict = field(default_factory=dict)


class FaultProxy:
    """The proxy on 127.0.0.1; ``upstream`` is one URL, or a URL per service (``default`` for the rest)."""

    def __init__(self, upstream: str | Mapping[str, str], seed: int = 1234, hold_seconds: float = 6.0) -> None:
        self.upstreams = {"default": upstream} if isinstance(upstream, str) else dict(upstream)
        self.hold_seconds = hold_seconds  # TIMEOUT holds the answer this long (past the client's read timeout)
        self.rules: list[FaultRule] = []
        self.tally = _Tally()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self.endpoint_url = ""

    # -- control ------------------------------------------------------------------------

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def settings(self, base: Settings) -> Settings:
        """``base`` with every service's endpoint at this proxy (credentials kept)."""
        return base.replace(aws_endpoint_url=self.endpoint_url, aws_service_endpoints=())

    def add(self, *rules: FaultRule) -> "FaultProxy":
        with self._lock:
            self.rules.extend(rules)
        return self

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def injected(self, fault: Fault | None = None, service: str | None = None) -> int:
        with self._lock:
            return sum(n for (s, f), n in self.tally.injected.items()
                       if (fault is None or f is fault) and (service is None or s == service))

    def retry_gaps(self, fault: Fault) -> list[float]:
        with self._lock:
            return list(self.tally.retry_gaps[fault])

    def table(self) -> Iterator[tuple[str, str, int]]:
        """(service, fault, injections) for every pair injected, and (service, "forwarded", n)."""
        with self._lock:
            for service in sorted(self.tally.forwarded):
                yield service, "forwarded", self.tally.forwarded[service]
            for (service, fault), count in sorted(self.tally.injected.items(), key=lambda i: (i[0][0], i[0][1].value)):
                yield service, fault.value, count

    # -- one request ----------------------------------------------------------------------

    def choose(self, request: ProxiedRequest) -> FaultRule | None:
        with self._lock:
            invocation = request.headers.get("amz-sdk-invocation-id")
            if invocation in self.tally.pending:  # botocore resent a call we faulted
                fault, when = self.tally.pending.pop(invocation)
                self.tally.retry_gaps[fault].append(time.monotonic() - when)
            for rule in self.rules:
                if rule.applies_to(request) and self._random.random() < rule.rate:
                    rule.fired += 1
                    self.tally.injected[(request.service, rule.fault)] += 1
                    if rule.fault in (Fault.DROP, Fault.TIMEOUT) and request.is_conditional_put:
                        self.tally.lost_conditional_answers[invocation] = request.path.split("?")[0]
                    if invocation and rule.fault is not Fault.LATENCY:
                        self.tally.pending[invocation] = (rule.fault, time.monotonic())
                    return rule
            return None

    def upstream_for(self, service: str) -> str:
        return self.upstreams.get(service) or self.upstreams["default"]

    def count_forwarded(self, service: str) -> None:
        with self._lock:
            self.tally.forwarded[service] += 1

    def hold(self) -> None:
        self._stopping.wait(self.hold_seconds)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FaultProxy

    def log_message(self, format: str, *args: object) -> None:  # quiet: the tally says what happened
        pass

    def do_GET(self) -> None:
        self._proxy()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                chunk = self.rfile.read(size + 2)[:size]
                if not size:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(chunk)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _proxy(self) -> None:
        body = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        scope = _SCOPE.search(headers.get("authorization", ""))
        target = headers.get("x-amz-target", "")
        service = scope.group(1) if scope else ("dynamodb" if target.startswith("DynamoDB") else
                                                "sqs" if target.startswith("AmazonSQS") else "s3")
        request = ProxiedRequest(service, self.command, self.path, headers, body)
        rule = self.owner.choose(request)
        fault = rule.fault if rule else None
        if fault is Fault.RESET:
            return self._abort(reset=True)
        if fault in (Fault.ERROR_500, Fault.THROTTLE):
            status, content_type, payload = _error(service, fault)
            return self._answer(status, [("Content-Type", content_type)], payload)
        if fault is Fault.LATENCY:
            time.sleep(rule.latency_seconds)
        status, reason, response_headers, payload = self._forward(request)
        if fault is Fault.DROP:
            return self._abort(reset=False)
        if fault is Fault.TIMEOUT:
            self.owner.hold()
            return self._abort(reset=False)
        self._answer(status, response_headers, payload, reason)

    def _forward(self, request: ProxiedRequest) -> tuple[int, str, list[tuple[str, str]], bytes]:
        upstream = urlsplit(self.owner.upstream_for(request.service))
        connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=120)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            if request.body or request.method in ("PUT", "POST"):
                headers["Content-Length"] = str(len(request.body))
            connection.request(request.method, request.path, body=request.body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            self.owner.count_forwarded(request.service)
            return response.status, response.reason, response.getheaders(), payload
        finally:
            connection.close()

    def _answer(self, status: int, headers: list[tuple[str, str]], payload: bytes, reason: str | None = None) -> None:
        self.send_response_only(status, reason)
        for name, value in headers:
            if name.lower() not in _HOP_BY_HOP and not (name.lower() == "content-length" and self.command != "HEAD"):
                self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD" and payload:
            self.wfile.write(payload)

    def _abort(self, reset: bool) -> None:
        """Close the client's connection without an answer (an RST when ``reset``)."""
        self.close_connection = True
        try:
            if reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
            self.connection.close()
        except OSError:
            pass
