"""Recall of a version, measured exactly: what its HNSW search finds against exact search.

Invariant: both searches see the same records — the version's live records, every segment
searched and masks applied, as readers search it — and the same queries: the query sample
the user stored for the collection (``collections/<c>/recall_queries.npy``), or else
``queries`` records of the version drawn with a fixed seed (so two measures of one version
agree), their own vectors as query vectors. The approximate answer is the version's ``query``; the exact
one is a numpy scan of every live record (``exact_search.ExactTopK``), a page at a time, so
memory stays bounded by a page, the queries and k candidates each. recall@k counts ties as
right (see ``exact_search``). A version is judged against its collection's
``recall_target`` (below: warn) and ``recall_floor`` (below: not published).
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from ..format.version_manifest import VersionManifest
from ..format.keys import check_collection_name
from ..io.aws import get_object_or_none, sse_args
from ..table.catalog import CATALOG_PREFIX, CollectionCatalog, CollectionConfig
from ..chroma.client import ChromaDBClient
from ..config import Settings
from ..format.exact_search import ExactTopK, recall_at_k
from .local_versions import LocalVersions
from ..chroma.segments import open_version
from ..table.snapshot_store import SnapshotStore

DEFAULT_K = 10
DEFAULT_QUERIES = 100
DEFAULT_SEED = 0
PAGE_ROWS = 5000  # records read and scanned at a time
QUERY_BATCH = 100  # queries per approximate search call
RECALL_ROOT = "recall"  # local copies measured (under VECTOR_PIPELINE_CACHE_DIR)
QUERY_SAMPLE_NAME = "recall_queries.npy"  # collections/<c>/: a query sample the user stored


class RecallVerdict(str, Enum):
    MEETS_TARGET = "meets_target"
    BELOW_TARGET = "below_target"  # warn
    BELOW_FLOOR = "below_floor"  # block the publish

    def __str__(self) -> str:
        return self.value


@dataclass
class RecallReport:
    collection: str
    version: str
    k: int
    queries: int
    recall_at_k: float
    records: int  # live records the exact search scanned
    space: str
    search_ef: int
    seed: int
    exact_seconds: float  # the cost of exhaustive search over every live record
    exact_bytes_scanned: int
    approximate_seconds: float
    queries_source: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(recall: float, config: CollectionConfig) -> RecallVerdict:
    """Where ``recall`` stands against the collection's floor and target."""
    if config.recall_floor is not None and recall < config.recall_floor:
        return RecallVerdict.BELOW_FLOOR
    return RecallVerdict.MEETS_TARGET if recall >= config.recall_target else RecallVerdict.BELOW_TARGET


def measure_recall(settings: Settings, collection: str, version: str | None = None, *, k: int = DEFAULT_K,
                   queries: int = DEFAULT_QUERIES, seed: int = DEFAULT_SEED) -> RecallReport:
    """recall@k of ``version`` (default: the published one) of ``collection``, from a local
    copy under ``<cache>/recall`` (only the files not held are downloaded)."""
    store = SnapshotStore(settings)
    manifest = store.manifest_of(collection, version)
    local = LocalVersions(store, Path(settings.cache_dir) / RECALL_ROOT, collection)
    version_dir = local.materialize(manifest)
    try:
        return recall_of_local_copy(settings, version_dir, manifest, k=k, queries=queries, seed=seed)
    finally:
        local.prune(keep=[manifest])


def recall_of_local_copy(settings: Settings, version_dir: Path, manifest: VersionManifest, *, k: int = DEFAULT_K,
                         queries: int = DEFAULT_QUERIES, seed: int = DEFAULT_SEED) -> RecallReport:
    """recall@k of a version already copied whole to ``version_dir`` (the audit's copy),
    with the collection's stored query sample when it has one."""
    sample = stored_query_sample(settings, manifest.collection)
    with open_version(version_dir, manifest, settings) as client:
        return recall_of_version(client, manifest, k=k, queries=queries, seed=seed, sample=sample)


def recall_of_version(client: ChromaDBClient, manifest: VersionManifest, *, k: int = DEFAULT_K,
                      queries: int = DEFAULT_QUERIES, seed: int = DEFAULT_SEED,
                      sample: np.ndarray | None = None) -> RecallReport:
    """recall@k of an open version (``open_version``: every segment, masks applied), for the
    first ``queries`` vectors of ``sample`` or, without one, ``queries`` of its own records."""
    if k < 1 or queries < 1:
        raise ValueError(f"recall needs k ≥ 1 and at least one query (k={k}, queries={queries})")
    collection, hnsw = manifest.collection, dict(manifest.hnsw or {})
    space = str(hnsw.get("space", "cosine"))
    if sample is not None:
        vectors = np.asarray(sample[:queries], dtype=np.float32)
        dimension = manifest.dimension
        if dimension and vectors.shape[1] != dimension:
            raise ValueError(f"the stored query sample of {collection} has dimension {vectors.shape[1]}, "
                             f"the collection {dimension}")
        source = f"{len(vectors)} of the {len(sample)} queries stored for {collection}"
    else:
        live_ids = client.get_vectors(collection, include=[])["ids"]
        picked = sorted(np.random.default_rng(seed).choice(len(live_ids), size=min(queries, len(live_ids)),
                                                           replace=False).tolist()) if live_ids else []
        query_rows = client.get_vectors(collection, ids=[live_ids[n] for n in picked], include=["embeddings"])
        vectors = np.asarray(query_rows["embeddings"], dtype=np.float32).reshape(len(query_rows["ids"]), -1)
        source = f"{len(picked)} of the version's {len(live_ids)} records (seed {seed})"
    report = RecallReport(collection, manifest.version, k, len(vectors), 1.0, 0, space,
                          int(hnsw.get("search_ef", 0)), seed, 0.0, 0, 0.0, source)
    if not len(vectors) or not manifest.vector_count:
        return report
    started = time.perf_counter()
    found_ids: list[list[str]] = []
    found_distances: list[list[float]] = []
    for start in range(0, len(vectors), QUERY_BATCH):
        found = client.query(collection, query_embeddings=vectors[start:start + QUERY_BATCH].tolist(), n_results=k,
                             include=["distances"])
        found_ids.extend(found["ids"])
        found_distances.extend(found["distances"])
    report.approximate_seconds = time.perf_counter() - started
    started = time.perf_counter()
    exact = ExactTopK(vectors, k, space)
    for ids, rows in client.embedding_pages(collection, PAGE_ROWS):
        exact.feed(ids, rows)
        report.exact_bytes_scanned += int(rows.nbytes)
    exact_ids, exact_distances = exact.result()
    report.exact_seconds = time.perf_counter() - started
    report.records = exact.rows_seen
    report.recall_at_k = round(recall_at_k(found_ids, found_distances, exact_ids, exact_distances, k), 4)
    return report


def query_sample_key(collection: str) -> str:
    return f"{CATALOG_PREFIX}{check_collection_name(collection)}/{QUERY_SAMPLE_NAME}"


def store_query_sample(settings: Settings, collection: str, vectors: np.ndarray) -> int:
    """Keep ``vectors`` (real queries, one a row) as the collection's recall sample: every
    later measure of it (the command, the Dagster check) answers them. Returns the count."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or not len(matrix) or not np.isfinite(matrix).all():
        raise ValueError("a query sample is a non-empty matrix of finite numbers, one query a row")
    store = SnapshotStore(settings)
    config = CollectionCatalog(settings).get(collection)
    pointer = store.read_pointer(collection)
    dimension = (config.dimension if config else 0) or (
        store.read_manifest(collection, pointer.version).dimension if pointer else 0)
    if dimension and matrix.shape[1] != dimension:  # refused before anything is written
        raise ValueError(f"the query sample has dimension {matrix.shape[1]}, collection {collection} {dimension}")
    body = io.BytesIO()
    np.save(body, matrix, allow_pickle=False)
    store.s3.put_object(Bucket=store.bucket, Key=query_sample_key(collection), Body=body.getvalue(),
                        ContentType="application/octet-stream", **sse_args(settings))
    return len(matrix)


def stored_query_sample(settings: Settings, collection: str) -> np.ndarray | None:
    """The collection's stored recall sample (None: it has none: its own records are used)."""
    store = SnapshotStore(settings)
    response = get_object_or_none(store.s3, store.bucket, query_sample_key(collection))
    if response is None:
        return None
    return np.load(io.BytesIO(response["Body"].read()), allow_pickle=False)


def collection_config(settings: Settings, collection: str) -> CollectionConfig:
    """The collection's settings (its recall target and floor); defaults when unrecorded."""
    return CollectionCatalog(settings).get_or_defaults(collection)

