"""Every configuration key of vector_pipeline, read in this one place.

No other module reads the environment. Callers build a ``Settings`` once
(``Settings.from_env()``) and pass it down; explicit constructor arguments
(``ChromaCompactor(bucket_name=...)``) win over the environment, which wins over the
defaults below.

| key                          | meaning                                                   | default |
|------------------------------|-----------------------------------------------------------|---------|
| VECTORS_BUCKET               | the one bucket holding delta/, archive/, snapshot/, ...   | vector-pipeline |
| DELTA_QUEUE_URL              | SQS queue announcing deltas (wins over the name)          | from the name |
| DELTA_QUEUE_NAME             | its name, resolved to a URL with GetQueueUrl              | vector-pipeline-deltas |
| DYNAMODB_TABLE_NAME          | lock table (hash key ``lock_id``, TTL on ``expires``)      | vector-pipeline-locks |
| COMPACTION_LOCK_TTL_SECONDS  | lock lifetime; the heartbeat runs at a third of it        | 900 |
| AWS_ENDPOINT_URL             | boto3's own: unset means real AWS                         | unset |
| AWS_DEFAULT_REGION           | boto3's own                                               | us-east-1 |
| AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY | boto3's own (the embedded moto takes any)    | boto3's chain |
| VECTOR_PIPELINE_CACHE_DIR    | local copies: compactor/ (its warm version), snapshots/ (readers' default) | <tmp>/vector_pipeline_cache |
| EMBEDDING_PROVIDER           | ``minilm`` (offline) or ``openai``                        | minilm |
| OPENAI_API_KEY / OPENAI_EMBEDDING_MODEL | for the ``openai`` provider                    | - / text-embedding-3-small |
| HNSW_SEARCH_EF / HNSW_CONSTRUCTION_EF / HNSW_M | HNSW settings of new collections        | 100 / 200 / 16 |
| VECTOR_COLLECTIONS           | collections the Dagster layer builds assets and jobs for  | words,lines |
| READER_POINTER_TTL_SECONDS   | how stale a reader's view of the pointer may be           | 1.0 |
| VECTOR_PIPELINE_FAULT        | reliability tests only: crash:<step> / pause:<step>       | unset |
| READER_PENDING_LOOKBACK_SECONDS | fresh reads re-list deltas minted this long before their last look | 30 |
| READER_FOLLOW_POINTER        | readers follow the pointer in a background thread (0: in the query) | 1 |
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from typing import Mapping

DEFAULT_BUCKET = "vector-pipeline"
DEFAULT_QUEUE_NAME = "vector-pipeline-deltas"
DEFAULT_TABLE_NAME = "vector-pipeline-locks"
DEFAULT_REGION = "us-east-1"
DEFAULT_LOCK_TTL_SECONDS = 900


def _memory_backed_tmp(min_free_bytes: int = 1 << 30) -> str | None:
    """/dev/shm when this machine has a writable one with room (a container's default 64 MB
    is not: several large deltas are read at once); None: the system's temp dir."""
    try:
        stats = os.statvfs("/dev/shm")
    except OSError:
        return None
    roomy = stats.f_bavail * stats.f_frsize >= min_free_bytes
    return "/dev/shm" if roomy and os.access("/dev/shm", os.W_OK) else None


@dataclass(frozen=True)
class HnswSettings:
    """HNSW parameters a collection is created with; recorded in every version manifest."""

    space: str = "cosine"
    search_ef: int = 100
    construction_ef: int = 200
    max_neighbors: int = 16

    def as_dict(self) -> dict[str, object]:
        return {
            "space": self.space,
            "search_ef": self.search_ef,
            "construction_ef": self.construction_ef,
            "max_neighbors": self.max_neighbors,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> "HnswSettings":
        return cls(
            space=str(values.get("space", cls.space)),
            search_ef=int(values.get("search_ef", cls.search_ef)),  # type: ignore[arg-type]
            construction_ef=int(values.get("construction_ef", cls.construction_ef)),  # type: ignore[arg-type]
            max_neighbors=int(values.get("max_neighbors", cls.max_neighbors)),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class Settings:
    vectors_bucket: str = DEFAULT_BUCKET
    delta_queue_name: str = DEFAULT_QUEUE_NAME
    delta_queue_url: str | None = None
    dynamodb_table_name: str = DEFAULT_TABLE_NAME
    lock_ttl_seconds: int = DEFAULT_LOCK_TTL_SECONDS
    aws_endpoint_url: str | None = None
    aws_region: str = DEFAULT_REGION
    # Explicit credentials (the embedded moto server takes any); unset = boto3's own chain.
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    cache_dir: str = os.path.join(tempfile.gettempdir(), "vector_pipeline_cache")
    # Where producers build a delta and the compactor reads one. Scratch only (S3 keeps it),
    # so memory-backed by default: chroma's fsyncs are most of a small delta's write time.
    scratch_dir: str | None = _memory_backed_tmp()
    embedding_provider: str = "minilm"
    openai_api_key: str | None = None
    openai_embedding_model: str = "text-embedding-3-small"
    hnsw: HnswSettings = HnswSettings()
    # Collections the Dagster layer builds snapshot assets and jobs for.
    collections: tuple[str, ...] = ("words", "lines")
    # Readers re-read the pointer at most this often (0: before every query).
    reader_pointer_ttl_seconds: float = 1.0
    # Segmented versions (segments.py): at most this many segments per version, and the
    # recent ones fold back into the base once they (and its masked ids) pass this share of it.
    segment_max_count: int = 4
    segment_fold_ratio: float = 0.25
    # Reliability tests only: "crash:<step>" or "pause:<step>" (see faults.py).
    fault: str | None = None
    # Readers (reader.py, pending.py): fresh reads (include_pending) list deltas minted since
    # their last look, less this much, for producers that finish uploading after a later one.
    reader_pending_lookback_seconds: float = 30.0
    # A thread per reader re-reads the pointer once per TTL while queries come, and switches
    # versions beside them, so a bounded query never waits for a download.
    reader_follow_pointer: bool = True

    @property
    def heartbeat_seconds(self) -> float:
        return self.lock_ttl_seconds / 3

    @property
    def dead_letter_queue_name(self) -> str:
        return f"{self.delta_queue_name}-dlq"

    def with_overrides(self, **overrides: object) -> "Settings":
        """A copy with the given fields replaced; ``None`` values are ignored."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        defaults = cls()
        hnsw = HnswSettings(
            search_ef=int(env.get("HNSW_SEARCH_EF", defaults.hnsw.search_ef)),
            construction_ef=int(env.get("HNSW_CONSTRUCTION_EF", defaults.hnsw.construction_ef)),
            max_neighbors=int(env.get("HNSW_M", defaults.hnsw.max_neighbors)),
        )
        return cls(
            vectors_bucket=env.get("VECTORS_BUCKET", defaults.vectors_bucket),
            delta_queue_name=env.get("DELTA_QUEUE_NAME", defaults.delta_queue_name),
            delta_queue_url=env.get("DELTA_QUEUE_URL") or None,
            dynamodb_table_name=env.get("DYNAMODB_TABLE_NAME", defaults.dynamodb_table_name),
            lock_ttl_seconds=int(env.get("COMPACTION_LOCK_TTL_SECONDS", defaults.lock_ttl_seconds)),
            aws_endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            aws_region=env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or DEFAULT_REGION,
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            cache_dir=env.get("VECTOR_PIPELINE_CACHE_DIR", defaults.cache_dir),
            scratch_dir=env.get("VECTOR_PIPELINE_SCRATCH_DIR") or defaults.scratch_dir,
            embedding_provider=env.get("EMBEDDING_PROVIDER", defaults.embedding_provider),
            openai_api_key=env.get("OPENAI_API_KEY") or None,
            openai_embedding_model=env.get("OPENAI_EMBEDDING_MODEL", defaults.openai_embedding_model),
            hnsw=hnsw,
            fault=env.get("VECTOR_PIPELINE_FAULT") or None,
            reader_pointer_ttl_seconds=float(env.get("READER_POINTER_TTL_SECONDS", defaults.reader_pointer_ttl_seconds)),
            segment_max_count=int(env.get("SEGMENT_MAX_COUNT", defaults.segment_max_count)),
            segment_fold_ratio=float(env.get("SEGMENT_FOLD_RATIO", defaults.segment_fold_ratio)),
            collections=tuple(c.strip() for c in env.get("VECTOR_COLLECTIONS", "words,lines").split(",") if c.strip()),
            # readers
            reader_pending_lookback_seconds=float(env.get("READER_PENDING_LOOKBACK_SECONDS",
                                                          defaults.reader_pending_lookback_seconds)),
            reader_follow_pointer=env.get("READER_FOLLOW_POINTER", "1").strip().lower() not in ("0", "false", "no"),
        )

    def local_aws_environment(self) -> dict[str, str]:
        """The environment a shell needs to reach the same endpoint and resources."""
        env = {
            "VECTOR_COLLECTIONS": ",".join(self.collections),
            "VECTORS_BUCKET": self.vectors_bucket,
            "DELTA_QUEUE_NAME": self.delta_queue_name,
            "DYNAMODB_TABLE_NAME": self.dynamodb_table_name,
            "AWS_DEFAULT_REGION": self.aws_region,
        }
        if self.aws_endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.aws_endpoint_url
        if self.aws_access_key_id and self.aws_secret_access_key:
            env["AWS_ACCESS_KEY_ID"] = self.aws_access_key_id
            env["AWS_SECRET_ACCESS_KEY"] = self.aws_secret_access_key
        return env
