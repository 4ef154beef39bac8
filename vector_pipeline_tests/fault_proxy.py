"""A fault-injecting HTTP proxy between boto3 and the test AWS servers (moto, dynalite, ...).

boto3 is pointed at it through the settings' endpoint (``FaultProxy.settings``); it forwards
every request to the real server behind it and, per service (``s3``, ``sqs``, ``dynamodb``:
read from the request's SigV4 credential scope), applies the first of its rules
(``fault_rules.py``: which fault, to which requests, at what rate) that fires.

It counts what it injected per service and kind, and the gap before botocore resent each
faulted call (the same ``amz-sdk-invocation-id`` coming back): the backoff it applied.

Why a proxy of our own rather than mitmproxy: the tests need the rules, counts and gaps in
the test's own process (a rule per test, read back after the workload), which mitmproxy
gives only through an addon script in another process and an IPC of our own; the traffic
is plain HTTP on loopback, so mitmproxy's TLS interception and HTTP/2 are of no use; and it
brings some thirty packages (cryptography, h2, aioquic, ...) with pins of their own into the
project's one lock file. This is the standard library's ``http.server`` and ``http.client``,
some 240 lines (and 110 of rules). It speaks HTTP/1.1 with Content-Length or chunked bodies,
which is what botocore sends.
"""

from __future__ import annotations

import http.client
import random
import re
import socket
import struct
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, Mapping
from urllib.parse import urlsplit

from vector_pipeline.config import Settings

from .fault_rules import Fault, FaultRule, ProxiedRequest, error_answer

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "te", "upgrade"}
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")


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
            status, content_type, payload = error_answer(service, fault)
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
