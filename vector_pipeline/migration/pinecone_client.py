"""The Pinecone index of a migration, through the official SDK, built from ``Settings``.

Invariant: every call either returns the index's answer or raises ``PineconeIndexError``
naming the host and the problem (unreachable, wrong API key, dimension differing from the
collection's, still failing after retries) — never a half-answer. 429 and 5xx answers and
refused connections are retried with exponential backoff and jitter up to
``pinecone_max_attempts`` tries (on top of the SDK's own short retries), so a brief outage
costs time, not data. Scores: Pinecone's cosine similarity ``s`` is turned into Chroma's
cosine distance ``d = 1 - s`` here, once, so callers compare and merge on one scale.
"""

from __future__ import annotations

import enum
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence, TypeVar

from ..config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_FETCH_IDS = 100  # ids per fetch request (a GET: the ids travel in the URL)
MAX_UPSERT_VECTORS = 100


class PineconeProblem(enum.Enum):
    NOT_CONFIGURED = "not configured"
    UNREACHABLE = "unreachable"
    UNAUTHORIZED = "wrong API key"
    DIMENSION_MISMATCH = "dimension mismatch"
    UNAVAILABLE = "still failing after retries"
    REJECTED = "request rejected"


class PineconeIndexError(RuntimeError):
    """A Pinecone call that cannot succeed; ``problem`` says why, ``host`` where."""

    def __init__(self, problem: PineconeProblem, host: str, detail: str) -> None:
        super().__init__(f"Pinecone index {host or '(no host)'}: {problem.value}: {detail}")
        self.problem, self.host, self.detail = problem, host, detail


@dataclass
class PineconeMatch:
    """One query hit, on Chroma's scale: ``distance = 1 - score``."""

    id: str
    distance: float
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class PineconeRecord:
    id: str
    values: list[float]
    metadata: dict[str, Any] = field(default_factory=dict)


def _sdk_errors() -> dict[str, Any]:
    from pinecone import errors

    return {name: getattr(errors, name) for name in (
        "UnauthorizedError", "ForbiddenError", "RateLimitError", "ServiceError", "ApiError",
        "PineconeConnectionError", "PineconeTimeoutError", "PineconeError")}


class PineconeIndex:
    """One index host; namespaces are passed per call."""

    def __init__(self, settings: Settings) -> None:
        if not settings.pinecone_index_host:
            raise PineconeIndexError(PineconeProblem.NOT_CONFIGURED, "", "set PINECONE_INDEX_HOST to the index's "
                                     "data-plane URL (from the Pinecone console, or http://127.0.0.1:PORT locally)")
        if not settings.pinecone_api_key:
            raise PineconeIndexError(PineconeProblem.NOT_CONFIGURED, settings.pinecone_index_host,
                                     "set PINECONE_API_KEY")
        from pinecone import Pinecone

        self.settings = settings
        self.host = settings.pinecone_index_host
        self._errors = _sdk_errors()
        self._index = Pinecone(api_key=settings.pinecone_api_key.get_secret_value()).Index(host=self.host)

    # -- the one place calls go through -----------------------------------------------------

    def _call(self, what: str, call: Callable[[], T]) -> T:
        e = self._errors
        attempts = max(1, self.settings.pinecone_max_attempts)
        for attempt in range(1, attempts + 1):
            try:
                return call()
            except (e["UnauthorizedError"], e["ForbiddenError"]) as exc:
                raise PineconeIndexError(PineconeProblem.UNAUTHORIZED, self.host,
                                         f"{what} refused ({exc}); check PINECONE_API_KEY") from None
            except (e["RateLimitError"], e["ServiceError"], e["PineconeConnectionError"],
                    e["PineconeTimeoutError"]) as exc:
                unreachable = isinstance(exc, (e["PineconeConnectionError"], e["PineconeTimeoutError"]))
                if attempt == attempts:
                    problem = PineconeProblem.UNREACHABLE if unreachable else PineconeProblem.UNAVAILABLE
                    raise PineconeIndexError(problem, self.host, f"{what} failed {attempts} times, last: {exc}") from None
                delay = self.settings.pinecone_retry_base_seconds * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
                log.warning("Pinecone %s at %s failed (%s); retry %d/%d in %.1fs", what, self.host, exc,
                            attempt, attempts - 1, delay)
                time.sleep(delay)
            except e["ApiError"] as exc:
                problem = PineconeProblem.DIMENSION_MISMATCH if "dimension" in str(exc).lower() else PineconeProblem.REJECTED
                raise PineconeIndexError(problem, self.host, f"{what}: {exc}") from None
            except e["PineconeError"] as exc:  # e.g. an answer that is not Pinecone's protocol
                raise PineconeIndexError(PineconeProblem.REJECTED, self.host,
                                         f"{what}: {type(exc).__name__}: {exc}") from None
        raise AssertionError("unreachable")

    # -- data plane ---------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """``{"dimension": int, "namespaces": {name: count}, "total": int}``."""
        answer = self._call("describe_index_stats", lambda: self._index.describe_index_stats())
        return {"dimension": answer.dimension or 0, "total": answer.total_vector_count,
                "namespaces": {name: summary.vector_count for name, summary in answer.namespaces.items()}}

    def namespace_count(self, namespace: str) -> int:
        return int(self.stats()["namespaces"].get(namespace, 0))

    def check_dimension(self, dimension: int, collection: str) -> None:
        """Raise DIMENSION_MISMATCH when the index holds vectors of another dimension."""
        held = self.stats()["dimension"]
        if held and dimension and held != dimension:
            raise PineconeIndexError(PineconeProblem.DIMENSION_MISMATCH, self.host,
                                     f"the index has dimension {held}, collection {collection!r} has {dimension}")

    def list_page(self, namespace: str, limit: int, token: str | None) -> tuple[list[str], str | None]:
        """One page of ids (sorted as the index lists them) and the token of the next, if any."""
        page = self._call("list", lambda: self._index.list_paginated(
            namespace=namespace, limit=limit, pagination_token=token))
        ids = [item.id for item in page.vectors if item.id]
        return ids, page.pagination.next if page.pagination is not None else None

    def list_ids(self, namespace: str, limit: int = 100) -> Iterator[list[str]]:
        token: str | None = None
        while True:
            ids, token = self.list_page(namespace, limit, token)
            if ids:
                yield ids
            if not token:
                return

    def fetch(self, namespace: str, ids: Sequence[str]) -> list[PineconeRecord]:
        """The records of ``ids`` that exist, in the order asked."""
        found: dict[str, Any] = {}
        for start in range(0, len(ids), MAX_FETCH_IDS):
            chunk = list(ids[start:start + MAX_FETCH_IDS])
            answer = self._call("fetch", lambda chunk=chunk: self._index.fetch(ids=chunk, namespace=namespace))
            found.update(answer.vectors)
        return [PineconeRecord(i, list(found[i].values), dict(found[i].metadata or {})) for i in ids if i in found]

    def upsert(self, namespace: str, records: Sequence[PineconeRecord]) -> int:
        for start in range(0, len(records), MAX_UPSERT_VECTORS):
            chunk = [{"id": r.id, "values": list(map(float, r.values)), **({"metadata": r.metadata} if r.metadata else {})}
                     for r in records[start:start + MAX_UPSERT_VECTORS]]
            self._call("upsert", lambda chunk=chunk: self._index.upsert(vectors=chunk, namespace=namespace))
        return len(records)

    def delete(self, namespace: str, ids: Sequence[str]) -> int:
        for start in range(0, len(ids), MAX_UPSERT_VECTORS):
            chunk = list(ids[start:start + MAX_UPSERT_VECTORS])
            self._call("delete", lambda chunk=chunk: self._index.delete(ids=chunk, namespace=namespace))
        return len(ids)

    def query(self, namespace: str, vector: Sequence[float], top_k: int,
              pinecone_filter: dict[str, Any] | None = None) -> list[PineconeMatch]:
        answer = self._call("query", lambda: self._index.query(
            vector=list(map(float, vector)), top_k=top_k, namespace=namespace, filter=pinecone_filter,
            include_metadata=True))
        return [PineconeMatch(m.id, 1.0 - float(m.score), dict(m.metadata or {})) for m in answer.matches]

    def close(self) -> None:
        self._index.close()
