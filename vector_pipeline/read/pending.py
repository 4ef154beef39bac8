"""Fresh reads: deltas not compacted yet, searched beside the published version.

Invariant: an answer with pending deltas is the one the version applying them would give,
searched exactly over the pending records instead of through HNSW: for every id the
greatest ``delta_id`` wins — among the pending deltas, and against the version's merge
state (each id's winning delta) — inside one delta a delete wins over its own upsert, and
a delta the version already applied is ignored. Distances are on the collection's scale
(chroma's cosine distance, ``1 - cos``, by default).

Cost per look follows what is new, not the backlog: one LIST of ``delta/<collection>/``
starting after the time prefix of (previous look − ``reader_pending_lookback_seconds``)
— delta ids sort by the time they were minted, and the lookback covers producers that
finish uploading after a later delta did —, one fetch per delta not seen before (kept in
memory), and cached deltas are dropped once the version holds them. A delta whose
manifest appears more than the lookback after its id was minted is seen once compacted.
"""

from __future__ import annotations

import heapq
import logging
import math
import shutil
import tempfile
import threading
import time
from collections import ChainMap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..config import Settings
from ..delta.reader import fetch_delta, list_deltas
from ..format.keys import DELTA_PREFIX, DeltaRef, InvalidDeltaError, new_delta_id
from ..format.loaded_delta import LoadedDelta
from ..format.merge import net_effect
from ..format.merge_state import MergeState

log = logging.getLogger(__name__)

_FETCH_WORKERS = 8
_TIME_PREFIX = 10  # the first 10 characters of a ULID are its 48-bit millisecond time


@dataclass
class Overlay:
    """What the pending deltas change in one version: ids whose snapshot answer is
    replaced (upserted again or deleted), and the upserts that win."""

    hidden: frozenset[str] = frozenset()
    hidden_in_version: int = 0  # of them, ids the version holds (the others are new)
    ids: list[str] = field(default_factory=list)
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    documents: list[str | None] = field(default_factory=list)
    metadatas: list[dict[str, Any] | None] = field(default_factory=list)
    delta_ids: tuple[str, ...] = ()  # the pending deltas it was built from

    def values(self, row: int, distance: float, include: Sequence[str]) -> dict[str, Any]:
        """One upsert's fields as a query returns them."""
        fields = {"distances": lambda: distance, "documents": lambda: self.documents[row],
                  "metadatas": lambda: self.metadatas[row],
                  "embeddings": lambda: [float(x) for x in self.embeddings[row]]}
        return {f: fields[f]() for f in include}

    def search(self, query: Sequence[float], n_results: int, where: Mapping[str, Any] | None,
               space: str) -> list[tuple[float, int]]:
        """Exact nearest upserts: (distance, row), best first."""
        if not self.ids:
            return []
        rows = np.arange(len(self.ids))
        if where:
            rows = np.array([r for r in rows if matches_where(where, self.metadatas[r] or {})], dtype=int)
            if not len(rows):
                return []
        distances = distances_to(np.asarray(query, dtype=np.float32), self.embeddings[rows], space)
        best = np.argsort(distances, kind="stable")[:n_results]
        return [(float(distances[i]), int(rows[i])) for i in best]


def distances_to(query: np.ndarray, matrix: np.ndarray, space: str) -> np.ndarray:
    """chroma's distances: cosine ``1 - cos``, ``ip`` ``1 - dot``, ``l2`` squared euclidean."""
    if space == "l2":
        return ((matrix - query) ** 2).sum(axis=1)
    if space == "ip":
        return 1.0 - matrix @ query
    norms = np.linalg.norm(matrix, axis=1) * max(float(np.linalg.norm(query)), 1e-30)
    return 1.0 - (matrix @ query) / np.maximum(norms, 1e-30)


class PendingDeltas:
    """The deltas of one collection under ``delta/`` as this reader last saw them."""

    def __init__(self, s3: Any, bucket: str, collection: str, settings: Settings) -> None:
        self.s3, self.bucket, self.collection, self.settings = s3, bucket, collection, settings
        self._deltas: dict[str, LoadedDelta] = {}
        self._refused: dict[str, str] = {}  # poison deltas: never fetched again
        self._last_look_ms: int | None = None
        self._looked_at = float("-inf")
        self._lock = threading.Lock()
        self._overlay: tuple[tuple[str, tuple[str, ...]], Overlay] | None = None
        self.lists = 0  # LIST requests made (for the benchmark and tests)
        self.fetched = 0  # deltas fetched

    def look(self, applied: set[str], force: bool = False) -> None:
        """List what is new since the last look and fetch it (at most once per
        ``reader_pointer_ttl_seconds`` unless ``force``); drop what ``applied`` holds."""
        with self._lock:
            for delta_id in [d for d in self._deltas if d in applied]:
                del self._deltas[delta_id]
            if not force and time.monotonic() - self._looked_at < self.settings.reader_pointer_ttl_seconds:
                return
            now_ms = int(time.time() * 1000)
            refs = self._list_since(self._last_look_ms)
            self._looked_at, self._last_look_ms = time.monotonic(), now_ms
            new = [r for r in refs if r.delta_id not in self._deltas and r.delta_id not in self._refused
                   and r.delta_id not in applied]
            for ref, loaded in zip(new, self._fetch(new)):
                if isinstance(loaded, LoadedDelta):
                    self._deltas[ref.delta_id] = loaded
                elif loaded is not None:
                    self._refused[ref.delta_id] = loaded

    def overlay(self, version: str, state: MergeState) -> Overlay:
        """The pending deltas applied over ``version`` (whose merge state is ``state``)."""
        with self._lock:
            deltas = [self._deltas[d] for d in sorted(self._deltas) if d not in state.applied_delta_ids]
            key = (version, tuple(d.ref.delta_id for d in deltas))
            if self._overlay is not None and self._overlay[0] == key:
                return self._overlay[1]
            overlay = build_overlay(deltas, state)
            self._overlay = (key, overlay)
            return overlay

    def held(self) -> list[str]:
        with self._lock:
            return sorted(self._deltas)

    def _list_since(self, last_look_ms: int | None) -> list[DeltaRef]:
        prefix = f"{DELTA_PREFIX}{self.collection}/"
        start_after = None
        if last_look_ms is not None:
            floor_ms = max(0, last_look_ms - int(1000 * self.settings.reader_pending_lookback_seconds))
            start_after = prefix + new_delta_id(floor_ms)[:_TIME_PREFIX]
        return list_deltas(self.s3, self.bucket, prefix, start_after, on_page=self._count_list)

    def _count_list(self) -> None:
        self.lists += 1

    def _fetch(self, refs: list[DeltaRef]) -> list[LoadedDelta | str | None]:
        """Each delta loaded, or the reason it is poison, or None (gone: compacted since)."""
        if not refs:
            return []
        scratch = Path(tempfile.mkdtemp(prefix="vp-pending-", dir=self.settings.scratch_dir))

        def one(ref: DeltaRef) -> LoadedDelta | str | None:
            try:
                return fetch_delta(self.s3, self.bucket, ref, scratch / ref.delta_id)
            except FileNotFoundError:
                return None
            except InvalidDeltaError as exc:
                log.warning("fresh reads skip %s: %s", ref.key, exc.reason)
                return exc.reason
            finally:
                shutil.rmtree(scratch / ref.delta_id, ignore_errors=True)

        try:
            with ThreadPoolExecutor(max_workers=min(_FETCH_WORKERS, len(refs))) as pool:
                loaded = list(pool.map(one, refs))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self.fetched += sum(isinstance(d, LoadedDelta) for d in loaded)
        return loaded


def query_with_overlay(client: Any, collection: str, overlay: Overlay, query_embeddings: Sequence[Sequence[float]],
                       n_results: int, where: dict[str, Any] | None, include: list[str], space: str) -> dict[str, Any]:
    """The version's answer (``client``) with ``overlay`` applied: replaced and deleted ids
    dropped, the pending upserts' exact nearest merged in by distance."""
    fields = list(dict.fromkeys([*include, "distances"]))
    # Ask for more: ids of the version the deltas replace or delete may crowd its answer.
    found = client.query(collection, query_embeddings=query_embeddings,
                         n_results=n_results + overlay.hidden_in_version, where=where, include=fields)
    result: dict[str, Any] = {"ids": [], **{f: [] for f in include}}
    for row, query in enumerate(query_embeddings):
        hits = [(found["distances"][row][j], 1, record_id, {f: found[f][row][j] for f in fields})
                for j, record_id in enumerate(found["ids"][row]) if record_id not in overlay.hidden]
        for distance, at in overlay.search(query, n_results, where, space):
            hits.append((distance, 0, overlay.ids[at], overlay.values(at, distance, include)))
        best = heapq.nsmallest(n_results, hits, key=lambda hit: (hit[0], hit[1]))
        result["ids"].append([record_id for _, _, record_id, _ in best])
        for f in include:
            result[f].append([values[f] for _, _, _, values in best])
    result["included"] = include
    return result


def build_overlay(deltas: Sequence[LoadedDelta], state: MergeState) -> Overlay:
    """Last-writer-wins over ``deltas`` (any order) and the version's ``state``: the
    compactor's own rule (``merge.net_effect``), on a view of the state it cannot change."""
    ordered = sorted(deltas, key=lambda d: d.ref.delta_id)
    scratch = MergeState(applied_delta_ids=state.applied_delta_ids, location=state.location,
                         upsert_winner=ChainMap({}, state.upsert_winner),  # type: ignore[arg-type]
                         delete_winner=ChainMap({}, state.delete_winner))  # type: ignore[arg-type]
    effect = net_effect(ordered, scratch)
    held = state.location or state.upsert_winner  # the version's live ids (all it wrote, if unlocated)
    overlay = Overlay(hidden=frozenset(effect.touched), hidden_in_version=sum(1 for i in effect.touched if i in held),
                      delta_ids=tuple(d.ref.delta_id for d in ordered))
    if effect.upserts:
        rows = list(effect.upserts.items())
        overlay.ids = [i for i, _ in rows]
        overlay.embeddings = np.asarray([d.embeddings[r] for _, (d, r) in rows], dtype=np.float32)
        overlay.documents = [d.documents[r] for _, (d, r) in rows]
        overlay.metadatas = [d.metadatas[r] for _, (d, r) in rows]
    return overlay


_COMPARE = {
    "$eq": lambda a, b: a == b, "$ne": lambda a, b: a != b,
    "$gt": lambda a, b: _ordered(a, b) and a > b, "$gte": lambda a, b: _ordered(a, b) and a >= b,
    "$lt": lambda a, b: _ordered(a, b) and a < b, "$lte": lambda a, b: _ordered(a, b) and a <= b,
    "$in": lambda a, b: a in b, "$nin": lambda a, b: a not in b,
}


def _ordered(a: Any, b: Any) -> bool:
    numbers = (int, float)
    return isinstance(a, numbers) and isinstance(b, numbers) and not isinstance(a, bool) and math.isfinite(a)


def matches_where(where: Mapping[str, Any], metadata: Mapping[str, Any]) -> bool:
    """chroma's ``where`` on one record's metadata ($and/$or, $eq/$ne/$gt/$gte/$lt/$lte/$in/$nin)."""
    for key, condition in where.items():
        if key == "$and":
            if not all(matches_where(c, metadata) for c in condition):
                return False
        elif key == "$or":
            if not any(matches_where(c, metadata) for c in condition):
                return False
        elif isinstance(condition, Mapping):
            for operator, operand in condition.items():
                if operator not in _COMPARE:
                    raise ValueError(f"where: unsupported operator {operator!r}")
                if key not in metadata:
                    if operator in ("$ne", "$nin"):
                        continue
                    return False
                if not _COMPARE[operator](metadata[key], operand):
                    return False
        elif key not in metadata or metadata[key] != condition:
            return False
    return True
