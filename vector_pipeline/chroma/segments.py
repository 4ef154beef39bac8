"""Opening a version's segments with chroma: one client per segment, top-k merged across
them with masked ids dropped (the segment model and its invariant: ``format/segments.py``)."""

from __future__ import annotations

import functools
import heapq
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from .client import ChromaDBClient
from ..config import Settings
from .embeddings import EmbeddingProvider
from ..format.segments import Segment, read_masks
from ..format.version_manifest import VersionManifest, segments_of


def open_version(version_dir: Path, manifest: VersionManifest, settings: Settings,
                 embedding_provider: EmbeddingProvider | None = None) -> ChromaDBClient:
    """A read-mode client over a local copy of a version, whatever its segments."""
    segments = segments_of(manifest)
    masks = read_masks(version_dir)
    inside = manifest.inner_collection
    if len(segments) == 1 and not masks and inside == manifest.collection:  # the common, cheapest case
        return ChromaDBClient(version_dir / segments[0].path, mode="read", settings=settings,
                              embedding_provider=embedding_provider)
    return SegmentedClient(version_dir, segments, masks, settings, embedding_provider,
                           aliases={manifest.collection: inside})


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

    @property
    def alive(self) -> bool:
        return all(part.alive for part in self.parts)

    def close(self) -> None:
        if self._owns_parts:
            for part in self.parts:
                part.close()
