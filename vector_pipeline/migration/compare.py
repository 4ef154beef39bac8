"""Comparison: the same queries against the Chroma snapshot and the Pinecone namespace.

Invariant: each store is judged against exact brute-force cosine search over that store's
own vectors (recall@k), the two against each other by overlap@k (|chroma ∩ pinecone| / k),
and their id sets are diffed in full — never by querying for "everything". Distances are on
one scale, d = 1 − s. Recall counts ties: a hit whose exact distance equals the k-th exact
distance is right (duplicate texts have identical vectors; which of them fills the last
slot is arbitrary). The Dagster comparison asset and ``vector-pipeline pinecone compare``
both call ``compare_collection``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..format.version_manifest import VersionManifest
from ..config import Settings
from ..chroma.embeddings import check_same_embedding, provider_from_settings
from .pinecone_client import PineconeIndex
from ..read.reader import open_snapshot, query_snapshot
from ..table.snapshot_store import SnapshotNotFoundError, SnapshotStore

TIE_TOLERANCE = 1e-5
DRIFT_SAMPLE = 20


@dataclass
class QuerySet:
    """Query vectors with a label each (the text, or the stored id sampled)."""

    labels: list[str]
    vectors: np.ndarray
    source: str


@dataclass
class Comparison:
    report: dict[str, Any]
    per_query: pd.DataFrame

    @property
    def chroma_recall(self) -> float:
        return float(self.report["recall_at_k"]["chroma"])

    def passed(self) -> bool:
        return self.chroma_recall >= float(self.report["min_recall"])


class ExactIndex:
    """Brute-force cosine search over one store's vectors."""

    def __init__(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        self.ids = list(ids)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True) if len(vectors) else np.ones((0, 1))
        self.unit = vectors / np.where(norms == 0, 1, norms)
        self.position = {record_id: n for n, record_id in enumerate(self.ids)}

    def distances(self, vector: np.ndarray) -> np.ndarray:
        unit = vector / (np.linalg.norm(vector) or 1.0)
        return 1.0 - self.unit @ unit

    def recall(self, vector: np.ndarray, returned: Sequence[str], k: int) -> float:
        """Share of the k slots filled with an id at most as far as the k-th exact hit."""
        if not self.ids:
            return 1.0
        distances = self.distances(vector)
        slots = min(k, len(self.ids))
        kth = float(np.partition(distances, slots - 1)[slots - 1])
        good = sum(1 for i in returned[:slots] if i in self.position
                   and distances[self.position[i]] <= kth + TIE_TOLERANCE)
        return good / slots

    def top(self, vector: np.ndarray, k: int) -> list[str]:
        distances = self.distances(vector)
        return [self.ids[n] for n in sorted(np.argsort(distances)[:k], key=lambda n: (distances[n], self.ids[n]))]


def chroma_vectors(settings: Settings, collection: str) -> tuple[list[str], np.ndarray, VersionManifest]:
    store = SnapshotStore(settings)
    pointer = store.read_pointer(collection)
    if pointer is None:
        raise SnapshotNotFoundError(f"collection {collection!r} has no published snapshot to compare")
    got = open_snapshot(collection, settings=settings).get_vectors(collection, include=["embeddings"])
    manifest = store.read_manifest(collection, pointer.version)
    return list(got["ids"]), np.asarray(got["embeddings"], dtype=np.float64), manifest


def pinecone_vectors(index: PineconeIndex, namespace: str) -> tuple[list[str], np.ndarray]:
    ids: list[str] = []
    values: list[list[float]] = []
    for page in index.list_ids(namespace):
        for record in index.fetch(namespace, page):
            ids.append(record.id)
            values.append(record.values)
    return ids, np.asarray(values, dtype=np.float64)


def read_query_file(path: str | Path) -> list[str]:
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such query file")
    texts = [line.strip() for line in source.read_text().splitlines() if line.strip()]
    if not texts:
        raise ValueError(f"{source}: no queries (one text per line)")
    return texts


def query_set(settings: Settings, manifest: VersionManifest, ids: list[str], vectors: np.ndarray,
              texts: list[str] | None, sample: int | None, seed: int = 0) -> QuerySet:
    """Texts embedded with the collection's provider, or a seeded sample of stored vectors."""
    if texts:
        provider = provider_from_settings(settings)
        embedded = np.asarray(provider.embed(texts), dtype=np.float64)
        check_same_embedding(f"queries of {manifest.collection}", provider.name, embedded.shape[1],
                             manifest.embedding_provider, manifest.dimension)
        return QuerySet(list(texts), embedded, f"{len(texts)} texts")
    count = min(int(sample or 0), len(ids))
    if count < 1:
        raise ValueError("nothing to compare: pass --queries FILE or --sample N (N ≥ 1) on a non-empty collection")
    picked = sorted(np.random.default_rng(seed).choice(len(ids), size=count, replace=False))
    return QuerySet([ids[n] for n in picked], vectors[picked], f"{count} stored vectors sampled (seed {seed})")


def compare_collection(settings: Settings, collection: str, *, texts: list[str] | None = None,
                       sample: int | None = None, k: int = 10, min_recall: float | None = None,
                       index: PineconeIndex | None = None) -> Comparison:
    """Run the comparison; nothing is written (see ``write_report``)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    namespace = settings.pinecone_namespace(collection)
    index = index or PineconeIndex(settings)
    chroma_ids, chroma_matrix, manifest = chroma_vectors(settings, collection)
    index.check_dimension(manifest.dimension, collection)
    pinecone_ids, pinecone_matrix = pinecone_vectors(index, namespace)
    exact_chroma, exact_pinecone = ExactIndex(chroma_ids, chroma_matrix), ExactIndex(pinecone_ids, pinecone_matrix)
    queries = query_set(settings, manifest, chroma_ids, chroma_matrix, texts, sample)
    rows = []
    for label, vector in zip(queries.labels, queries.vectors):
        started = time.perf_counter()
        chroma = query_snapshot(query_embeddings=[vector.tolist()], n_results=k, collection_name=collection,
                                settings=settings)
        chroma_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        matches = index.query(namespace, vector.tolist(), k)
        pinecone_ms = (time.perf_counter() - started) * 1000
        chroma_top, chroma_distances = chroma["ids"][0], chroma["distances"][0]
        pinecone_top = [m.id for m in matches]
        pinecone_distance = {m.id: m.distance for m in matches}
        gaps = [abs(d - pinecone_distance[i]) for i, d in zip(chroma_top, chroma_distances) if i in pinecone_distance]
        # Equally near counts as shared: identical texts have identical vectors, ties are arbitrary.
        pinecone_kth = max(pinecone_distance.values()) if len(matches) >= k else float("inf")
        tied = sum(1 for i, d in zip(chroma_top, chroma_distances) if i in pinecone_distance
                   or d <= pinecone_kth + TIE_TOLERANCE)
        rows.append({
            "query": label,
            "recall_chroma": exact_chroma.recall(vector, chroma_top, k),
            "recall_pinecone": exact_pinecone.recall(vector, pinecone_top, k),
            "overlap": len(set(chroma_top) & set(pinecone_top)) / k,
            "overlap_ties": min(tied, k) / k,
            "chroma_ms": round(chroma_ms, 3), "pinecone_ms": round(pinecone_ms, 3),
            "max_distance_gap": max(gaps) if gaps else None,
            "chroma_ids": " ".join(chroma_top), "pinecone_ids": " ".join(pinecone_top),
            "exact_ids": " ".join(exact_chroma.top(vector, k)),
        })
    frame = pd.DataFrame(rows)
    only_chroma = sorted(set(chroma_ids) - set(pinecone_ids))
    only_pinecone = sorted(set(pinecone_ids) - set(chroma_ids))
    bar = settings.pinecone_min_recall if min_recall is None else min_recall
    report = {
        "collection": collection, "namespace": namespace, "pinecone_host": index.host,
        "snapshot_version": manifest.version, "queries": len(frame), "query_source": queries.source, "k": k,
        "recall_at_k": {"chroma": round(float(frame["recall_chroma"].mean()), 4),
                        "pinecone": round(float(frame["recall_pinecone"].mean()), 4)},
        "overlap_at_k": round(float(frame["overlap"].mean()), 4),
        "overlap_at_k_counting_ties": round(float(frame["overlap_ties"].mean()), 4),
        "ids_only_in_chroma": len(only_chroma), "ids_only_in_pinecone": len(only_pinecone),
        "ids_only_in_chroma_sample": only_chroma[:DRIFT_SAMPLE],
        "ids_only_in_pinecone_sample": only_pinecone[:DRIFT_SAMPLE],
        "vectors": {"chroma": len(chroma_ids), "pinecone": len(pinecone_ids)},
        "latency_ms": {store: {"p50": round(float(frame[f"{store}_ms"].quantile(0.5)), 3),
                               "p95": round(float(frame[f"{store}_ms"].quantile(0.95)), 3)}
                       for store in ("chroma", "pinecone")},
        "max_distance_gap": float(frame["max_distance_gap"].dropna().max()) if frame["max_distance_gap"].notna().any() else None,
        "min_recall": bar,
        "generated_at": datetime.now(timezone.utc).isoformat(),
    }
    report["passed"] = report["recall_at_k"]["chroma"] >= bar
    return Comparison(report, frame)


def summary_frame(report: dict[str, Any]) -> pd.DataFrame:
    """One row per store: the figures a reader compares at a glance."""
    return pd.DataFrame([
        {"store": store, f"recall@{report['k']}": report["recall_at_k"][store],
         "vectors": report["vectors"][store], "ids only here": report[f"ids_only_in_{store}"],
         "p50 ms": report["latency_ms"][store]["p50"], "p95 ms": report["latency_ms"][store]["p95"]}
        for store in ("chroma", "pinecone")])


def render_markdown(comparison: Comparison) -> str:
    report, frame = comparison.report, comparison.per_query
    verdict = "PASSED" if report["passed"] else "FAILED"
    lines = [
        f"# Pinecone comparison: {report['collection']} (namespace `{report['namespace']}`)", "",
        f"{report['queries']} queries ({report['query_source']}), k = {report['k']}, snapshot {report['snapshot_version']}, "
        f"Pinecone {report['pinecone_host']}.", "",
        summary_frame(report).to_markdown(index=False), "",
        f"overlap@{report['k']} (chroma vs pinecone): **{report['overlap_at_k']}** "
        f"({report['overlap_at_k_counting_ties']} counting a hit as shared when it is as near as Pinecone's "
        f"k-th: duplicate texts tie); "
        f"recall bar {report['min_recall']}: **{verdict}**; largest distance gap on shared hits: "
        f"{report['max_distance_gap']}", "",
        "Recall is each store against exact cosine search over its own vectors (ties at the k-th distance count).", "",
    ]
    for store in ("chroma", "pinecone"):
        sample = report[f"ids_only_in_{store}_sample"]
        if sample:
            lines += [f"Ids only in {store} ({report[f'ids_only_in_{store}']}; first {len(sample)}): "
                      + ", ".join(f"`{i}`" for i in sample), ""]
    worst = frame.sort_values(["recall_chroma", "overlap"]).head(10)
    lines += ["## Lowest-recall queries", "",
              worst[["query", "recall_chroma", "recall_pinecone", "overlap", "overlap_ties", "chroma_ms", "pinecone_ms"]]
              .to_markdown(index=False), ""]
    return "\n".join(lines)


def write_report(comparison: Comparison, out_dir: str | Path) -> dict[str, Path]:
    """``report.json``, ``report.md`` and ``per_query.csv`` under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "md": out / "report.md", "csv": out / "per_query.csv"}
    paths["json"].write_text(json.dumps(comparison.report, indent=2))
    paths["md"].write_text(render_markdown(comparison))
    comparison.per_query.to_csv(paths["csv"], index=False)
    return paths
