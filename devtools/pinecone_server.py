"""A Pinecone-compatible data-plane endpoint on loopback, for tests (not part of the package).

Serves what the official SDK calls on an index host: ``POST /vectors/upsert``, ``POST /query``
(exact cosine search, metadata filters ``$eq $ne $gt $gte $lt $lte $in $nin $and $or``),
``GET /vectors/fetch``, ``POST /vectors/delete``, ``GET /vectors/list`` (sorted ids, prefix,
``limit`` + ``paginationToken``) and ``POST /describe_index_stats``, per namespace. A wrong
``Api-Key`` gets 401, a vector of another dimension 400; ``refuse(n, after=m)`` makes ``n``
requests fail with 503 (or 429) once ``m`` more were served, as an outage would. Run it in a thread (``PineconeServer``)
or as a process: ``python -m devtools.pinecone_server --port 5081``.
"""

from __future__ import annotations

import argparse
import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

DEFAULT_API_KEY = "loopback-test-key"
_OPERATORS = {
    "$eq": lambda a, b: a == b, "$ne": lambda a, b: a != b,
    "$gt": lambda a, b: _number(a) and a > b, "$gte": lambda a, b: _number(a) and a >= b,
    "$lt": lambda a, b: _number(a) and a < b, "$lte": lambda a, b: _number(a) and a <= b,
    "$in": lambda a, b: a in b, "$nin": lambda a, b: a not in b,
}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def matches(metadata: dict[str, Any], condition: dict[str, Any]) -> bool:
    """Pinecone's filter semantics over one vector's metadata (a missing field never matches,
    except under ``$ne`` / ``$nin``)."""
    for key, value in condition.items():
        if key == "$and":
            if not all(matches(metadata, c) for c in value):
                return False
        elif key == "$or":
            if not any(matches(metadata, c) for c in value):
                return False
        elif key.startswith("$"):
            raise ValueError(f"unknown operator {key}")
        else:
            ops = value if isinstance(value, dict) else {"$eq": value}
            for op, operand in ops.items():
                if op not in _OPERATORS:
                    raise ValueError(f"unknown operator {op}")
                if key not in metadata:
                    if op not in ("$ne", "$nin"):
                        return False
                    continue
                if not _OPERATORS[op](metadata[key], operand):
                    return False
    return True


class PineconeState:
    """The index: namespace → id → (unit-normalised copy for search, values, metadata)."""

    def __init__(self, dimension: int | None, api_key: str) -> None:
        self.dimension = dimension
        self.api_key = api_key
        self.namespaces: dict[str, dict[str, tuple[list[float], dict[str, Any]]]] = {}
        self.lock = threading.Lock()
        self.refusals_left = 0
        self.refusal_status = 503
        self.served_before_refusing = 0
        self.breaks_protocol = False  # answer 200 with a body that is not Pinecone's JSON
        self.unlisted: set[str] = set()  # ids /vectors/list leaves out (a listing that breaks the protocol)
        self.unit_cache: dict[str, np.ndarray] = {}  # namespace → unit rows in insertion order
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request served
        self.headers_seen: list[dict[str, str]] = []

    def refuse(self, count: int, status: int = 503, after: int = 0) -> None:
        """Fail ``count`` requests with ``status`` (an outage, or throttling), once ``after``
        more requests were served."""
        with self.lock:
            self.refusals_left, self.refusal_status, self.served_before_refusing = count, status, after


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall

    def log_message(self, *_args: Any) -> None:  # quiet: tests read state, not logs
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def _serve(self, method: str) -> None:
        state = self.server.state
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        with state.lock:
            state.requests.append((method, url.path))
            state.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
            if state.served_before_refusing > 0:
                state.served_before_refusing -= 1
            elif state.refusals_left > 0:
                state.refusals_left -= 1
                self._reply(state.refusal_status, {"error": {"code": "UNAVAILABLE", "message": "loopback outage"}},
                            {"Retry-After": "0"})
                return
        if state.breaks_protocol:
            payload = b"<html>a proxy login page</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        if self.headers.get("Api-Key") != state.api_key:
            self._reply(401, {"error": {"code": "UNAUTHENTICATED", "message": "Invalid API Key"}})
            return
        route = {("POST", "/vectors/upsert"): self._upsert, ("POST", "/query"): self._query,
                 ("GET", "/vectors/fetch"): self._fetch, ("POST", "/vectors/delete"): self._delete,
                 ("GET", "/vectors/list"): self._list, ("POST", "/describe_index_stats"): self._stats}.get((method, url.path))
        if route is None:
            self._reply(404, {"error": {"code": "NOT_FOUND", "message": f"no route {method} {url.path}"}})
            return
        try:
            body = json.loads(raw) if raw else {}
            with state.lock:
                self._reply(200, route(body, parse_qs(url.query)))
        except ValueError as exc:
            self._reply(400, {"error": {"code": "INVALID_ARGUMENT", "message": str(exc)}})

    def _reply(self, status: int, document: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _check_dimension(self, values: list[float]) -> None:
        state = self.server.state
        if state.dimension is None:
            state.dimension = len(values)
        if len(values) != state.dimension:
            raise ValueError(f"Vector dimension {len(values)} does not match the dimension of the index "
                             f"{state.dimension}")

    def _upsert(self, body: dict[str, Any], _query: dict[str, list[str]]) -> dict[str, Any]:
        vectors = body.get("vectors", [])
        for vector in vectors:
            self._check_dimension(vector["values"])
        space = self.server.state.namespaces.setdefault(body.get("namespace", ""), {})
        self.server.state.unit_cache.pop(body.get("namespace", ""), None)
        for vector in vectors:
            space[vector["id"]] = (list(vector["values"]), dict(vector.get("metadata") or {}))
        return {"upsertedCount": len(vectors)}

    def _query(self, body: dict[str, Any], _query: dict[str, list[str]]) -> dict[str, Any]:
        namespace = body.get("namespace", "")
        space = self.server.state.namespaces.get(namespace, {})
        vector = body.get("vector")
        if vector is None:
            raise ValueError("query needs a vector")
        self._check_dimension(vector)
        condition = body.get("filter") or {}
        state = self.server.state
        if namespace not in state.unit_cache:
            matrix = np.asarray([v for v, _ in space.values()], dtype=np.float64).reshape(len(space), -1)
            state.unit_cache[namespace] = matrix / (np.linalg.norm(matrix, axis=1, keepdims=True) + 1e-30)
        rows = [(n, i, v, m) for n, (i, (v, m)) in enumerate(space.items()) if matches(m, condition)]
        if not rows:
            return {"matches": [], "namespace": namespace}
        query = np.asarray(vector, dtype=np.float64)
        scores = state.unit_cache[namespace][[n for n, _, _, _ in rows]] @ (query / (np.linalg.norm(query) + 1e-30))
        order = sorted(range(len(rows)), key=lambda n: (-scores[n], rows[n][1]))[:int(body.get("topK", 10))]
        found = []
        for n in order:
            _, record_id, values, metadata = rows[n]
            match: dict[str, Any] = {"id": record_id, "score": float(scores[n])}
            if body.get("includeValues"):
                match["values"] = values
            if body.get("includeMetadata"):
                match["metadata"] = metadata
            found.append(match)
        return {"matches": found, "namespace": namespace}

    def _fetch(self, _body: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
        namespace = query.get("namespace", [""])[0]
        space = self.server.state.namespaces.get(namespace, {})
        found = {i: {"id": i, "values": space[i][0], "metadata": space[i][1]} for i in query.get("ids", []) if i in space}
        return {"vectors": found, "namespace": namespace}

    def _delete(self, body: dict[str, Any], _query: dict[str, list[str]]) -> dict[str, Any]:
        space = self.server.state.namespaces.get(body.get("namespace", ""), {})
        self.server.state.unit_cache.pop(body.get("namespace", ""), None)
        if body.get("deleteAll"):
            space.clear()
        for record_id in body.get("ids", []):
            space.pop(record_id, None)
        if body.get("filter"):
            for record_id in [i for i, (_, m) in space.items() if matches(m, body["filter"])]:
                del space[record_id]
        return {}

    def _list(self, _body: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
        namespace = query.get("namespace", [""])[0]
        prefix = query.get("prefix", [""])[0]
        limit = int(query.get("limit", ["100"])[0])
        after = base64.urlsafe_b64decode(query["paginationToken"][0]).decode() if "paginationToken" in query else None
        ids = sorted(i for i in self.server.state.namespaces.get(namespace, {}) if i.startswith(prefix)
                     and (after is None or i > after) and i not in self.server.state.unlisted)
        page = ids[:limit]
        response: dict[str, Any] = {"vectors": [{"id": i} for i in page], "namespace": namespace}
        if len(ids) > limit:
            response["pagination"] = {"next": base64.urlsafe_b64encode(page[-1].encode()).decode()}
        return response

    def _stats(self, _body: dict[str, Any], _query: dict[str, list[str]]) -> dict[str, Any]:
        state = self.server.state
        namespaces = {name: {"vectorCount": len(space)} for name, space in state.namespaces.items() if space}
        return {"namespaces": namespaces, "dimension": state.dimension or 0, "indexFullness": 0.0,
                "totalVectorCount": sum(n["vectorCount"] for n in namespaces.values()), "metric": "cosine"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: PineconeState


class PineconeServer:
    """The endpoint in a thread of this process; ``host`` is what ``PINECONE_INDEX_HOST`` takes."""

    def __init__(self, port: int = 0, dimension: int | None = None, api_key: str = DEFAULT_API_KEY) -> None:
        self.state = PineconeState(dimension, api_key)
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.state = self.state
        self._thread = threading.Thread(target=self._server.serve_forever, name="pinecone-loopback", daemon=True)

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "PineconeServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def ids(self, namespace: str) -> set[str]:
        with self.state.lock:
            return set(self.state.namespaces.get(namespace, {}))


@pytest.fixture
def pinecone_server() -> Iterator[PineconeServer]:
    """A fresh loopback index per test, stopped after it."""
    server = PineconeServer().start()
    try:
        yield server
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Pinecone-compatible loopback data plane (tests, demos)")
    parser.add_argument("--port", type=int, default=5081)
    parser.add_argument("--dimension", type=int, default=None, help="fixed dimension (default: the first upsert's)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    args = parser.parse_args()
    server = PineconeServer(args.port, args.dimension, args.api_key)
    print(f"PINECONE_INDEX_HOST={server.host} PINECONE_API_KEY={args.api_key}", flush=True)
    server._server.serve_forever()


if __name__ == "__main__":
    main()
