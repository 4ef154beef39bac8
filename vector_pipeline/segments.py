"""Segmented versions: a version is a base segment plus a few small recent ones.

Invariant: every live id of a version is held by exactly one of its segments, and there
it is not masked; an id in a segment's mask (replaced by a newer segment, or deleted) is
invisible in that segment. So readers merge the top-k of every segment after dropping
masked ids, and a compaction writes only the one segment it folds into: the other
segments are the parent version's files, reused by reference, so its cost follows the
deltas, not the snapshot.

Why: an HNSW insert rewrites neighbour lists all over ``data_level0.bin``, so merging
into the base rewrites (and re-uploads) the whole index. The fold policy bounds what
readers pay for this: at most ``segment_max_count`` segments, and once the recent ones
(plus the base's masked ids) pass ``segment_fold_ratio`` of the base, the next compaction
folds them back into it (as LSM trees and Lance's fragments compact); ``fold_segments``
does it on demand, off the ingest path.
"""

from __future__ import annotations

import functools
import gzip
import heapq
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .chroma_client import ChromaDBClient
from .config import Settings
from .embeddings import EmbeddingProvider

SEGMENTS_DIR = "segments"
MASKS_FILE = "masks.json.gz"


@dataclass(frozen=True)
class Segment:
    """One chroma persist dir of a version, named for the version number that wrote it."""

    name: str
    stored: int  # records in its chroma collection
    masked: int = 0  # of them, hidden by a newer segment or a delete

    @property
    def path(self) -> str:
        return f"{SEGMENTS_DIR}/{self.name}"

    @property
    def live(self) -> int:
        return self.stored - self.masked

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "stored": self.stored, "masked": self.masked}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "Segment":
        return cls(str(values["name"]), int(values["stored"]), int(values.get("masked", 0)))


class FoldKind(str, Enum):
    APPEND = "append"  # a new small segment; the others are untouched
    FOLD_RECENT = "fold_recent"  # the recent segments and the deltas become one segment
    FOLD_ALL = "fold_all"  # everything folds back into (a copy of) the base

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class FoldPlan:
    kind: FoldKind
    keep: tuple[Segment, ...]  # older segments left as they are (their masks may grow)
    copy_from: Segment | None  # the segment the new one starts as a copy of
    read_from: tuple[Segment, ...]  # segments whose live records move into the new one

    @property
    def folded(self) -> set[str]:
        """Names of the segments the new one replaces."""
        return {s.name for s in (*self.read_from, *([self.copy_from] if self.copy_from else []))}


def chroma_collection(manifest: Mapping[str, Any]) -> str:
    """The chroma collection inside the version's segments: the collection's own name, or
    (a fork, ``forks.py``) the name of the collection whose segments it shares."""
    return str(manifest.get("chroma_collection") or manifest["collection"])


def segments_of(manifest: Mapping[str, Any] | None) -> list[Segment]:
    return [Segment.from_dict(s) for s in (manifest or {}).get("segments", [])]


def plan_fold(segments: Sequence[Segment], incoming: int, settings: Settings, fold_all: bool = False,
              reindex: bool = False) -> FoldPlan:
    """Where ``incoming`` new records go, keeping the reader's cost bounded. ``reindex``:
    every segment is read into a new one (an HNSW setting chroma cannot change in place
    changed), none copied."""
    if not segments:
        return FoldPlan(FoldKind.APPEND, (), None, ())
    if reindex:
        return FoldPlan(FoldKind.FOLD_ALL, (), None, tuple(segments))
    base, recent = segments[0], tuple(segments[1:])
    recent_stored = sum(s.stored for s in recent)
    # The recent tier as it stands decides, not ``incoming``: a large batch becomes one
    # segment now and is folded by the next compaction (or the nightly fold), so no single
    # compaction pays for both its own deltas and a rewrite of the base.
    if fold_all or base.masked + recent_stored > settings.segment_fold_ratio * max(base.stored, 1):
        return FoldPlan(FoldKind.FOLD_ALL, (), base, recent)
    if len(segments) + (1 if incoming else 0) > settings.segment_max_count:
        if not recent or settings.segment_max_count < 2:
            return FoldPlan(FoldKind.FOLD_ALL, (), base, recent)
        return FoldPlan(FoldKind.FOLD_RECENT, (base,), recent[0], recent[1:])
    return FoldPlan(FoldKind.APPEND, tuple(segments), None, ())


def read_masks(version_dir: Path) -> dict[str, set[str]]:
    path = version_dir / MASKS_FILE
    if not path.exists():
        return {}
    return {name: set(ids) for name, ids in json.loads(gzip.decompress(path.read_bytes())).items()}


def write_masks(version_dir: Path, masks: Mapping[str, Iterable[str]]) -> None:
    document = {name: sorted(ids) for name, ids in sorted(masks.items()) if ids}
    (version_dir / MASKS_FILE).write_bytes(
        gzip.compress(json.dumps(document, separators=(",", ":")).encode(), compresslevel=5))


def open_version(version_dir: Path, manifest: Mapping[str, Any], settings: Settings,
                 embedding_provider: EmbeddingProvider | None = None) -> ChromaDBClient:
    """A read-mode client over a local copy of a version, whatever its segments."""
    segments = segments_of(manifest)
    masks = read_masks(version_dir)
    inside = chroma_collection(manifest)
    if len(segments) == 1 and not masks and inside == manifest["collection"]:  # the common, cheapest case
        return ChromaDBClient(version_dir / segments[0].path, mode="read", settings=settings,
                              embedding_provider=embedding_provider)
    return SegmentedClient(version_dir, segments, masks, settings, embedding_provider,
                           aliases={str(manifest["collection"]): inside})


@functools.lru_cache(maxsize=1)
def _query_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="vp-segment-query")


class SegmentedClient(ChromaDBClient):
    """Read mode over several segments: masked ids dropped, top-k merged by distance."""

    def __init__(self, version_dir: Path, segments: Sequence[Segment], masks: Mapping[str, set[str]],
                 settings: Settings, embedding_provider: EmbeddingProvider | None = None,
                 parts: Sequence[ChromaDBClient] | None = None, aliases: Mapping[str, str] | None = None) -> None:
        """``parts``: clients already open on the segments (a reader shares them between
        versions); they stay open when this client closes. ``aliases``: collection name →
        the chroma collection the segments hold (a fork reads its source's segments)."""
        self._init_fields(version_dir, "read", settings, None, embedding_provider)
        self.aliases = dict(aliases or {})
        self.segments = list(segments)
        self.masks = {s.name: frozenset(masks.get(s.name, ())) for s in self.segments}
        self._owns_parts = parts is None
        self.parts = list(parts) if parts is not None else [
            ChromaDBClient(self.persist_directory / s.path, mode="read", settings=settings) for s in self.segments]

    def count(self, collection_name: str) -> int:
        collection_name = self.aliases.get(collection_name, collection_name)
        counts = [(part.count(collection_name), len(self.masks[s.name])) for s, part in zip(self.segments, self.parts)]
        return sum(stored - masked for stored, masked in counts if stored)  # masks are of the snapshot's collection

    def get_vectors(self, collection_name: str, ids: Sequence[str] | None = None,
                    where: dict[str, Any] | None = None, include: Sequence[str] | None = None) -> dict[str, Any]:
        collection_name = self.aliases.get(collection_name, collection_name)
        include = list(include) if include is not None else ["documents", "metadatas"]
        merged: dict[str, Any] = {"ids": [], **{field: [] for field in include}}
        for segment, part in zip(self.segments, self.parts):
            mask = self.masks[segment.name]
            wanted = None if ids is None else [i for i in ids if i not in mask]
            if wanted is not None and not wanted:
                continue
            found = part.get_vectors(collection_name, ids=wanted, where=where, include=include)
            for row, record_id in enumerate(found["ids"]):
                if record_id not in mask:
                    for key in merged:
                        merged[key].append(record_id if key == "ids" else found[key][row])
        merged["included"] = include
        return merged

    def embedding_pages(self, collection_name: str, page_size: int = 5000) -> Iterator[tuple[list[str], np.ndarray]]:
        """Every live record's id and embedding (masked ids dropped), a page at a time."""
        collection_name = self.aliases.get(collection_name, collection_name)
        for segment, part in zip(self.segments, self.parts):
            mask = self.masks[segment.name]
            for ids, rows in part.embedding_pages(collection_name, page_size):
                if mask:
                    keep = [n for n, record_id in enumerate(ids) if record_id not in mask]
                    ids, rows = [ids[n] for n in keep], rows[keep]
                if ids:
                    yield ids, rows

    def query(self, collection_name: str, query_embeddings: Sequence[Sequence[float]] | None = None,
              query_texts: Sequence[str] | None = None, n_results: int = 10,
              where: dict[str, Any] | None = None, include: Sequence[str] | None = None) -> dict[str, Any]:
        collection_name = self.aliases.get(collection_name, collection_name)
        query_embeddings = self._query_embeddings(query_embeddings, query_texts)
        if len(self.parts) == 1 and not self.masks[self.segments[0].name]:  # nothing to merge
            return self.parts[0].query(collection_name, query_embeddings=query_embeddings, n_results=n_results,
                                       where=where, include=include)
        include = list(include) if include is not None else ["documents", "metadatas", "distances"]
        fields = list(dict.fromkeys([*include, "distances"]))
        per_query: list[list[tuple[float, int, str, dict[str, Any]]]] = [[] for _ in query_embeddings]
        # chroma releases the GIL while it searches: the segments are searched side by side.
        searches = _query_pool().map(
            lambda pair: self._segment_hits(pair[1], self.masks[pair[0].name], collection_name, query_embeddings,
                                            n_results, where, fields), zip(self.segments, self.parts))
        for order, hits in enumerate(searches):
            for row, found in enumerate(hits):
                per_query[row].extend((distance, order, record_id, values) for distance, record_id, values in found)
        result: dict[str, Any] = {"ids": [], **{field: [] for field in include}}
        for hits in per_query:
            best = heapq.nsmallest(n_results, hits, key=lambda hit: (hit[0], -hit[1]))
            result["ids"].append([record_id for _, _, record_id, _ in best])
            for field in include:
                result[field].append([values[field] for _, _, _, values in best])
        result["included"] = include
        return result

    @staticmethod
    def _segment_hits(part: ChromaDBClient, mask: frozenset[str], collection_name: str,
                      query_embeddings: Sequence[Sequence[float]], n_results: int,
                      where: dict[str, Any] | None, fields: list[str]) -> list[list[tuple[float, str, dict]]]:
        """Top ``n_results`` unmasked hits of one segment; asks for more only when masked
        ids crowd the first answer (at most ``n_results + len(mask)``, which always suffices)."""
        asked = n_results + min(len(mask), n_results)
        while True:
            found = part.query(collection_name, query_embeddings=query_embeddings, n_results=asked,
                               where=where, include=fields)
            rows = []
            for row, row_ids in enumerate(found["ids"]):
                rows.append([(found["distances"][row][j], record_id,
                              {field: found[field][row][j] for field in fields})
                             for j, record_id in enumerate(row_ids) if record_id not in mask][:n_results])
            exhausted = asked >= n_results + len(mask)
            if exhausted or all(len(r) == n_results or len(found["ids"][i]) < asked for i, r in enumerate(rows)):
                return rows
            asked = n_results + len(mask)

    def collection_names(self) -> list[str]:
        return sorted({name for part in self.parts for name in part.collection_names()})

    def collection_configuration(self, collection_name: str) -> dict[str, Any]:
        collection_name = self.aliases.get(collection_name, collection_name)
        return self.parts[0].collection_configuration(collection_name)

    def close(self) -> None:
        if self._owns_parts:
            for part in self.parts:
                part.close()
