"""Gradual cutover, phase 2: a ``query_snapshot``-compatible call over Chroma and Pinecone.

Invariant: a routing key always lands on the same backend for a given share (sha256 of the
key, as a fraction in [0, 1), below ``chroma_share`` → Chroma), so one user sees one
backend, and raising the share only moves users from Pinecone to Chroma, never back. Both
backends answer in Chroma's result shape with distances d = 1 − s, and with the same
filter (translated whole, or refused). A shadow query of the other backend never changes
the answer and never fails the call: its overlap@k and latency go to the log
(``vector_pipeline.cutover``) and to ``counters``.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..config import Settings
from ..chroma.embeddings import EmbeddingProvider, provider_from_settings
from .pinecone_client import PineconeIndex
from .pinecone_filters import to_pinecone_filter
from ..read.reader import query_snapshot

log = logging.getLogger("vector_pipeline.cutover")


class Backend(enum.Enum):
    CHROMA = "chroma"
    PINECONE = "pinecone"


def routing_fraction(routing_key: str) -> float:
    return int.from_bytes(hashlib.sha256(routing_key.encode()).digest()[:8], "big") / 2 ** 64


@dataclass
class CutoverCounters:
    """Running totals a dashboard can read (``as_dict``); safe across threads."""

    queries: dict[str, int] = field(default_factory=lambda: {b.value: 0 for b in Backend})
    shadowed: int = 0
    shadow_failures: int = 0
    overlap_sum: float = 0.0
    latency_ms_sum: dict[str, float] = field(default_factory=lambda: {b.value: 0.0 for b in Backend})
    latency_ms_count: dict[str, int] = field(default_factory=lambda: {b.value: 0 for b in Backend})
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, backend: Backend, milliseconds: float, served: bool) -> None:
        with self._lock:
            if served:
                self.queries[backend.value] += 1
            self.latency_ms_sum[backend.value] += milliseconds
            self.latency_ms_count[backend.value] += 1

    def record_shadow_failure(self) -> None:
        with self._lock:
            self.shadow_failures += 1

    def record_overlap(self, overlap: float) -> None:
        with self._lock:
            self.shadowed += 1
            self.overlap_sum += overlap

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {"queries": dict(self.queries), "shadowed": self.shadowed, "shadow_failures": self.shadow_failures,
                    "mean_overlap_at_k": self.overlap_sum / self.shadowed if self.shadowed else None,
                    "mean_latency_ms": {b: self.latency_ms_sum[b] / n if n else None
                                        for b, n in self.latency_ms_count.items()}}


class CutoverRouter:
    """Send ``chroma_share`` of routing keys to Chroma, the rest to Pinecone."""

    def __init__(self, settings: Settings, collection: str = "words", *, chroma_share: float | None = None,
                 shadow: bool | None = None, index: PineconeIndex | None = None) -> None:
        share = settings.pinecone_cutover_chroma_share if chroma_share is None else chroma_share
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"the Chroma share must be between 0 and 1, not {share}")
        self.settings, self.collection, self.chroma_share = settings, collection, share
        self.shadow = settings.pinecone_cutover_shadow if shadow is None else shadow
        self.namespace = settings.pinecone_namespace(collection)
        self._index = index
        self._provider: EmbeddingProvider | None = None
        self.counters = CutoverCounters()

    @property
    def index(self) -> PineconeIndex:
        if self._index is None:
            self._index = PineconeIndex(self.settings)
        return self._index

    def route(self, routing_key: str) -> Backend:
        return Backend.CHROMA if routing_fraction(routing_key) < self.chroma_share else Backend.PINECONE

    def query(self, query_texts: Sequence[str] | None = None, query_embeddings: Sequence[Sequence[float]] | None = None,
              n_results: int = 10, where: dict[str, Any] | None = None, *, routing_key: str | None = None) -> dict[str, Any]:
        """Chroma-style result of the routed backend (``query_snapshot``'s arguments + ``routing_key``)."""
        if query_embeddings is None:
            if not query_texts:
                raise ValueError("query needs query_texts or query_embeddings")
            if self._provider is None:
                self._provider = provider_from_settings(self.settings)
            query_embeddings = self._provider.embed(list(query_texts))
        pinecone_filter = to_pinecone_filter(where)  # refuse an untranslatable filter on either route
        key = routing_key if routing_key is not None else (query_texts[0] if query_texts else json.dumps(
            [round(float(x), 6) for x in query_embeddings[0]]))
        backend = self.route(key)
        answer, served_ms = self._ask(backend, query_embeddings, n_results, where, pinecone_filter)
        self.counters.record(backend, served_ms, served=True)
        if self.shadow:
            other = Backend.PINECONE if backend is Backend.CHROMA else Backend.CHROMA
            try:
                shadow_answer, shadow_ms = self._ask(other, query_embeddings, n_results, where, pinecone_filter)
            except Exception as exc:  # a shadow never fails the served query
                self.counters.record_shadow_failure()
                log.warning("shadow query on %s failed: %s", other.value, exc)
            else:
                self.counters.record(other, shadow_ms, served=False)
                overlaps = [len(set(a) & set(b)) / n_results for a, b in zip(answer["ids"], shadow_answer["ids"])]
                overlap = sum(overlaps) / len(overlaps) if overlaps else 1.0
                self.counters.record_overlap(overlap)
                log.info(json.dumps({"event": "cutover_shadow", "collection": self.collection, "routing_key": key,
                                     "served": backend.value, "shadow": other.value, "k": n_results,
                                     "overlap_at_k": round(overlap, 4), "served_ms": round(served_ms, 3),
                                     "shadow_ms": round(shadow_ms, 3)}))
        return answer

    def _ask(self, backend: Backend, embeddings: Sequence[Sequence[float]], n_results: int,
             where: dict[str, Any] | None, pinecone_filter: dict[str, Any] | None) -> tuple[dict[str, Any], float]:
        started = time.perf_counter()
        if backend is Backend.CHROMA:
            answer = query_snapshot(query_embeddings=embeddings, n_results=n_results, where=where,
                                    collection_name=self.collection, settings=self.settings)
        else:
            answer = {"ids": [], "distances": [], "documents": [], "metadatas": []}
            field_name = self.settings.pinecone_document_field
            for vector in embeddings:
                matches = self.index.query(self.namespace, vector, n_results, pinecone_filter)
                answer["ids"].append([m.id for m in matches])
                answer["distances"].append([m.distance for m in matches])
                answer["documents"].append([m.metadata.get(field_name) for m in matches])
                answer["metadatas"].append([{k: v for k, v in m.metadata.items() if k != field_name} or None
                                            for m in matches])
        return answer, (time.perf_counter() - started) * 1000
