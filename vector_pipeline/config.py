"""Every configuration key of vector_pipeline, read in this one place.

No other module reads the environment. The faces (CLI, Dagster resource, Lambda handlers)
build a ``Settings`` once (``Settings.from_env()``) and pass it down; the library below them
takes it from its caller. Only the public entry points of the Python contract
(``ChromaDBClient``, ``ChromaCompactor``, ``CompactionLock``, ``produce_embedding_delta``,
``query_snapshot``, ``open_snapshot``), which users call with no settings, fall back to the
environment, through ``Settings.resolve``. Explicit constructor arguments
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
| AWS_ENDPOINT_URL_<SERVICE>   | boto3's own, per service (``_S3``, ``_SQS``, ``_DYNAMODB``, ...): wins over AWS_ENDPOINT_URL | unset |
| AWS_DEFAULT_REGION           | boto3's own                                               | us-east-1 |
| AWS_READ_TIMEOUT_SECONDS     | this project's: how long a call waits for an answer before botocore resends it (above COMPACT_WATCH_WAIT_SECONDS) | 60 |
| AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY | boto3's own (the embedded moto takes any)    | boto3's chain |
| VECTOR_PIPELINE_CACHE_DIR    | local copies: compactor/ (its warm version), snapshots/ (readers' default) | <tmp>/vector_pipeline_cache |
| EMBEDDING_PROVIDER           | ``minilm`` (offline) or ``openai``                        | minilm |
| OPENAI_API_KEY / OPENAI_EMBEDDING_MODEL | for the ``openai`` provider                    | - / text-embedding-3-small |
| HNSW_SPACE / HNSW_SEARCH_EF / HNSW_CONSTRUCTION_EF / HNSW_M | HNSW settings of new collections | cosine / 100 / 200 / 16 |
| VECTOR_COLLECTIONS           | optional allow-list of collections (unset: any; settings per collection live in collections/<name>.json) | unset |
| VECTOR_COLLECTIONS_AUTO_CREATE | a delta for a collection not in the catalog creates it with the defaults below | true |
| READER_POINTER_TTL_SECONDS   | how stale a reader's view of the pointer may be           | 1.0 |
| SEGMENT_MAX_COUNT / SEGMENT_FAN_IN / SEGMENT_FOLD_RATIO | segmented versions of new collections: most segments a reader searches, segments per size tier before they merge up, the base's masked share past which a base fold runs outside its quiet window | 10 / 4 / 0.25 |
| VECTOR_PIPELINE_SCRATCH_DIR  | where deltas are built and read (scratch only)            | /dev/shm if roomy, else tmp |
| VECTORS_SSE                  | encryption of every object written: ``none``, ``AES256`` (SSE-S3) or ``aws:kms`` | AES256 |
| VECTORS_SSE_KMS_KEY_ID       | the KMS key for ``aws:kms`` (unset: the account's aws/s3 key) | unset |
| VECTOR_PIPELINE_FAULT        | reliability tests only: crash:<step> / pause:<step>       | unset |
| PINECONE_API_KEY             | the Pinecone project's API key (migration only; a secret) | unset |
| PINECONE_INDEX_HOST          | the index's data-plane URL (``http://`` for a local one)  | unset = no Pinecone |
| PINECONE_NAMESPACES          | per-collection namespace overrides: ``words=ns1,lines=ns2`` | the collection's name |
| PINECONE_DOCUMENT_FIELD      | metadata key carrying a vector's document text            | text |
| PINECONE_MAX_ATTEMPTS        | tries per Pinecone call on 429/5xx/unreachable            | 5 |
| PINECONE_RETRY_BASE_SECONDS  | first backoff (doubles per try, with jitter)              | 0.5 |
| PINECONE_MIN_RECALL          | recall@k bar of the Chroma snapshot (compare, asset check) | 0.95 |
| PINECONE_COMPARE_SAMPLE      | stored vectors sampled as queries by the Dagster comparison | 50 |
| PINECONE_COMPARE_QUERIES     | a file of query texts (one per line) for it instead        | unset |
| PINECONE_CUTOVER_CHROMA_SHARE | share of routed queries sent to Chroma (0..1)            | 0.0 |
| PINECONE_CUTOVER_SHADOW      | also query the other backend and record overlap (1/0)     | 0 |
| COMPACTION_HEARTBEAT_SECONDS | the lock's heartbeat interval (refused unless the lifetime is at least twice it) | a third of the lifetime |
| METRICS_SINK                 | ``none``, ``emf`` (embedded metric format on stdout: Lambda) or ``cloudwatch`` (PutMetricData) | none |
| METRICS_NAMESPACE            | the CloudWatch namespace of every metric (handlers and Dagster runs) | VectorPipeline |
| READER_PENDING_LOOKBACK_SECONDS | fresh reads re-list deltas minted this long before their last look | 30 |
| READER_FOLLOW_POINTER        | readers follow the pointer in a background thread (false: in the query) | true |
| READER_RECALL_SAMPLE_RATE    | share of a reader's queries re-answered exhaustively in the background, for the ReaderRecallAtK metric (0: off) | 0.01 |
| COMPACT_WATCH_WAIT_SECONDS   | `compact --watch`: longest SQS long poll per cycle (1-20); also how long a stop may wait | 10 |
| COMPACT_WATCH_RECONCILE_SECONDS | `compact --watch`: list all of delta/ at most this often (messages lost) | 60 |

``Settings.to_env()`` is the inverse of ``from_env``: it is how the settings reach a
subprocess (the CLI's children, ``dagster dev``) and the Dagster resource, so every field
travels the same way (a test enumerates the fields).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

DEFAULT_BUCKET = "vector-pipeline"
DEFAULT_QUEUE_NAME = "vector-pipeline-deltas"
DEFAULT_TABLE_NAME = "vector-pipeline-locks"
DEFAULT_REGION = "us-east-1"
DEFAULT_LOCK_TTL_SECONDS = 900
SSE_MODES = ("none", "AES256", "aws:kms")
METRICS_SINKS = ("none", "emf", "cloudwatch")
_SERVICE_ENDPOINT_PREFIX = "AWS_ENDPOINT_URL_"


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
    # Per-service endpoints (service name as boto3 spells it → URL), over aws_endpoint_url.
    aws_service_endpoints: tuple[tuple[str, str], ...] = ()
    aws_region: str = DEFAULT_REGION
    # How long one AWS call waits for its answer before botocore resends it (standard retry
    # mode, io/aws.py). Longer than the queue's long poll, which waits on purpose.
    aws_read_timeout_seconds: float = 60.0
    # Explicit credentials (the embedded moto server takes any); unset = boto3's own chain.
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_max_attempts: int = 8  # per AWS call, the first included (standard retry mode)
    cache_dir: str = os.path.join(tempfile.gettempdir(), "vector_pipeline_cache")
    # Where producers build a delta and the compactor reads one. Scratch only (S3 keeps it),
    # so memory-backed by default: chroma's fsyncs are most of a small delta's write time.
    scratch_dir: str | None = _memory_backed_tmp()
    embedding_provider: str = "minilm"
    openai_api_key: str | None = None
    openai_embedding_model: str = "text-embedding-3-small"
    hnsw: HnswSettings = HnswSettings()
    # Optional allow-list of collections (empty: any). A collection's own settings are data:
    # collections/<name>.json (table/catalog.py); the HNSW and segment settings here are the
    # defaults new collections take.
    collections: tuple[str, ...] = ()
    auto_create_collections: bool = True
    # Readers re-read the pointer at most this often (0: before every query).
    reader_pointer_ttl_seconds: float = 1.0
    # Segmented versions (format/segments.py): at most this many segments per version; a size
    # tier merges up once it would hold ``segment_fan_in`` segments; a base fold (off the
    # ingest path) runs outside the quiet window once the base's masked ids pass this share.
    segment_max_count: int = 10
    segment_fan_in: int = 4
    segment_fold_ratio: float = 0.25
    # Server-side encryption of every object written (SSE_MODES), and the KMS key for aws:kms.
    sse: str = "AES256"
    sse_kms_key_id: str | None = None
    # Reliability tests only: "crash:<step>" or "pause:<step>" (see faults.py).
    fault: str | None = None
    # -- Pinecone migration (pinecone_client.py, migration/) --
    pinecone_api_key: str | None = None
    pinecone_index_host: str | None = None
    # (collection, namespace) pairs overriding the default namespace (the collection's name).
    pinecone_namespaces: tuple[tuple[str, str], ...] = ()
    pinecone_document_field: str = "text"
    pinecone_max_attempts: int = 5
    pinecone_retry_base_seconds: float = 0.5
    pinecone_min_recall: float = 0.95
    pinecone_compare_sample: int = 50
    pinecone_compare_queries: str | None = None
    pinecone_cutover_chroma_share: float = 0.0
    pinecone_cutover_shadow: bool = False
    # Deployment (issue 11): the lock's heartbeat interval (None: a third of the lifetime),
    # and where metrics go — "none", "emf" (stdout, which CloudWatch Logs extracts on
    # Lambda) or "cloudwatch" (PutMetricData: Dagster runs, the CLI) — in which namespace.
    lock_heartbeat_seconds: float | None = None
    metrics_sink: str = "none"
    metrics_namespace: str = "VectorPipeline"
    # Readers (reader.py, pending.py): fresh reads (include_pending) list deltas minted since
    # their last look, less this much, for producers that finish uploading after a later one.
    reader_pending_lookback_seconds: float = 30.0
    # A thread per reader re-reads the pointer once per TTL while queries come, and switches
    # versions beside them, so a bounded query never waits for a download.
    reader_follow_pointer: bool = True
    # A reader re-answers this share of its queries by exact search in a background thread
    # (read/live_recall.py) and reports the recall@k it finds (0: off).
    reader_recall_sample_rate: float = 0.01
    # Compaction loop (watch.py, `compact --watch`): the SQS long poll of a cycle (how long an
    # idle loop waits for a message, and so the longest a stop waits), and how often a cycle
    # also lists all of delta/ for collections whose messages were lost.
    compact_watch_wait_seconds: int = 10
    compact_watch_reconcile_seconds: float = 60.0
    # Chroma runs in a child process (chroma/host.py): a call with no answer within its bound
    # is taken as hung (issue 19: chromadb's close can spin forever), the child is killed and
    # the call fails. A close takes milliseconds; other calls scale with the batch.
    chroma_call_timeout_seconds: float = 900.0
    chroma_close_timeout_seconds: float = 60.0

    def pinecone_namespace(self, collection: str) -> str:
        """The Pinecone namespace mirroring ``collection``: its override, else its own name."""
        return dict(self.pinecone_namespaces).get(collection, collection)

    def __post_init__(self) -> None:
        if self.sse not in SSE_MODES:
            raise ValueError(f"VECTORS_SSE={self.sse!r}: expected one of {', '.join(SSE_MODES)}")
        if self.sse_kms_key_id and self.sse != "aws:kms":
            raise ValueError("VECTORS_SSE_KMS_KEY_ID is set but VECTORS_SSE is not aws:kms")
        if self.aws_read_timeout_seconds <= self.compact_watch_wait_seconds:
            raise ValueError(f"AWS_READ_TIMEOUT_SECONDS={self.aws_read_timeout_seconds:g} must exceed "
                             f"COMPACT_WATCH_WAIT_SECONDS={self.compact_watch_wait_seconds} (the queue's long poll)")

    @property
    def heartbeat_seconds(self) -> float:
        return self.lock_heartbeat_seconds or self.lock_ttl_seconds / 3

    @property
    def dead_letter_queue_name(self) -> str:
        return f"{self.delta_queue_name}-dlq"

    def endpoint_url_for(self, service: str) -> str | None:
        """The endpoint boto3 should use for ``service`` (None: real AWS)."""
        return dict(self.aws_service_endpoints).get(service, self.aws_endpoint_url)

    @property
    def uses_custom_endpoints(self) -> bool:
        return bool(self.aws_endpoint_url or self.aws_service_endpoints)

    def describe_endpoints(self) -> str:
        """One line for people: which endpoint each service goes to."""
        if not self.uses_custom_endpoints:
            return "real AWS"
        services = dict(self.aws_service_endpoints)
        if not services:
            return str(self.aws_endpoint_url)
        parts = [f"{name} {url}" for name, url in sorted(services.items())]
        if self.aws_endpoint_url:
            parts.append(f"others {self.aws_endpoint_url}")
        return ", ".join(parts)

    def with_overrides(self, **overrides: object) -> "Settings":
        """A copy with the given fields replaced; ``None`` values are ignored."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def resolve(cls, settings: "Settings | None") -> "Settings":
        """The caller's settings, or (for the public entry points alone) the environment's."""
        return settings if settings is not None else cls.from_env()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        hnsw: dict[str, Any] = {}
        for key, (field_name, parse, _render) in _ENV_KEYS.items():
            raw = env.get(key)
            if raw is None or raw == "":
                continue
            try:
                value = parse(raw)
            except ValueError as exc:
                raise ValueError(f"{key}={raw!r}: {exc}") from None
            if field_name.startswith("hnsw."):
                hnsw[field_name[len("hnsw."):]] = value
            else:
                values[field_name] = value
        if "aws_region" not in values and env.get("AWS_REGION"):
            values["aws_region"] = env["AWS_REGION"]
        services = {k[len(_SERVICE_ENDPOINT_PREFIX):].lower(): v for k, v in env.items()
                    if k.startswith(_SERVICE_ENDPOINT_PREFIX) and v}
        if services:
            values["aws_service_endpoints"] = tuple(sorted(services.items()))
        if hnsw:
            values["hnsw"] = replace(cls.hnsw, **hnsw)
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The environment ``from_env`` turns back into these settings (defaults left out)."""
        defaults = Settings()
        env: dict[str, str] = {}
        for key, (field_name, _parse, render) in _ENV_KEYS.items():
            value, default = _field(self, field_name), _field(defaults, field_name)
            if value != default and value is not None:
                env[key] = render(value)
        for service, url in self.aws_service_endpoints:
            env[_SERVICE_ENDPOINT_PREFIX + service.upper()] = url
        return env

    def local_aws_environment(self) -> dict[str, str]:
        """The environment a shell needs to reach the same endpoint and resources."""
        return {"VECTORS_BUCKET": self.vectors_bucket,
                "DELTA_QUEUE_NAME": self.delta_queue_name, "DYNAMODB_TABLE_NAME": self.dynamodb_table_name,
                "AWS_DEFAULT_REGION": self.aws_region, **self.to_env()}


def _field(settings: Settings, name: str) -> Any:
    value: Any = settings
    for part in name.split("."):
        value = getattr(value, part)
    return value


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _pairs(raw: str) -> tuple[tuple[str, str], ...]:
    """``a=x,b=y`` as ((a, x), (b, y))."""
    pairs = []
    for entry in _csv(raw):
        name, sep, value = entry.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValueError(f"expected collection=namespace, got {entry!r}")
        pairs.append((name.strip(), value.strip()))
    return tuple(pairs)


def _bool(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _sse(raw: str) -> str:
    if raw not in SSE_MODES:
        raise ValueError(f"expected one of {', '.join(SSE_MODES)}")
    return raw


def _share(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("expected a share between 0 and 1")
    return value


def _metrics_sink(raw: str) -> str:
    if raw not in METRICS_SINKS:
        raise ValueError(f"expected one of {', '.join(METRICS_SINKS)}")
    return raw


# Environment key → (Settings field, parse, render). The one table both directions use.
_ENV_KEYS: dict[str, tuple[str, Callable[[str], Any], Callable[[Any], str]]] = {
    "VECTORS_BUCKET": ("vectors_bucket", str, str),
    "DELTA_QUEUE_NAME": ("delta_queue_name", str, str),
    "DELTA_QUEUE_URL": ("delta_queue_url", str, str),
    "DYNAMODB_TABLE_NAME": ("dynamodb_table_name", str, str),
    "COMPACTION_LOCK_TTL_SECONDS": ("lock_ttl_seconds", int, str),
    "AWS_ENDPOINT_URL": ("aws_endpoint_url", str, str),
    "AWS_DEFAULT_REGION": ("aws_region", str, str),
    "AWS_READ_TIMEOUT_SECONDS": ("aws_read_timeout_seconds", float, repr),
    "AWS_ACCESS_KEY_ID": ("aws_access_key_id", str, str),
    "AWS_SECRET_ACCESS_KEY": ("aws_secret_access_key", str, str),
    "AWS_MAX_ATTEMPTS": ("aws_max_attempts", int, str),
    "VECTOR_PIPELINE_CACHE_DIR": ("cache_dir", str, str),
    "VECTOR_PIPELINE_SCRATCH_DIR": ("scratch_dir", str, str),
    "EMBEDDING_PROVIDER": ("embedding_provider", str, str),
    "OPENAI_API_KEY": ("openai_api_key", str, str),
    "OPENAI_EMBEDDING_MODEL": ("openai_embedding_model", str, str),
    "HNSW_SPACE": ("hnsw.space", str, str),
    "HNSW_SEARCH_EF": ("hnsw.search_ef", int, str),
    "HNSW_CONSTRUCTION_EF": ("hnsw.construction_ef", int, str),
    "HNSW_M": ("hnsw.max_neighbors", int, str),
    "VECTOR_COLLECTIONS": ("collections", _csv, ",".join),
    "VECTOR_COLLECTIONS_AUTO_CREATE": ("auto_create_collections", _bool, lambda v: "true" if v else "false"),
    "READER_POINTER_TTL_SECONDS": ("reader_pointer_ttl_seconds", float, repr),
    "SEGMENT_MAX_COUNT": ("segment_max_count", int, str),
    "SEGMENT_FAN_IN": ("segment_fan_in", int, str),
    "SEGMENT_FOLD_RATIO": ("segment_fold_ratio", float, repr),
    "VECTORS_SSE": ("sse", _sse, str),
    "VECTORS_SSE_KMS_KEY_ID": ("sse_kms_key_id", str, str),
    "VECTOR_PIPELINE_FAULT": ("fault", str, str),
    # -- Pinecone migration --
    "PINECONE_API_KEY": ("pinecone_api_key", str, str),
    "PINECONE_INDEX_HOST": ("pinecone_index_host", str, str),
    "PINECONE_NAMESPACES": ("pinecone_namespaces", _pairs, lambda pairs: ",".join(f"{c}={n}" for c, n in pairs)),
    "PINECONE_DOCUMENT_FIELD": ("pinecone_document_field", str, str),
    "PINECONE_MAX_ATTEMPTS": ("pinecone_max_attempts", int, str),
    "PINECONE_RETRY_BASE_SECONDS": ("pinecone_retry_base_seconds", float, repr),
    "PINECONE_MIN_RECALL": ("pinecone_min_recall", float, repr),
    "PINECONE_COMPARE_SAMPLE": ("pinecone_compare_sample", int, str),
    "PINECONE_COMPARE_QUERIES": ("pinecone_compare_queries", str, str),
    "PINECONE_CUTOVER_CHROMA_SHARE": ("pinecone_cutover_chroma_share", float, repr),
    "PINECONE_CUTOVER_SHADOW": ("pinecone_cutover_shadow", _bool, lambda flag: "true" if flag else "false"),
    # Deployment (issue 11)
    "COMPACTION_HEARTBEAT_SECONDS": ("lock_heartbeat_seconds", float, repr),
    "METRICS_SINK": ("metrics_sink", _metrics_sink, str),
    "METRICS_NAMESPACE": ("metrics_namespace", str, str),
    # Readers (reader.py, pending.py)
    "READER_PENDING_LOOKBACK_SECONDS": ("reader_pending_lookback_seconds", float, repr),
    "READER_FOLLOW_POINTER": ("reader_follow_pointer", _bool, lambda flag: "true" if flag else "false"),
    "READER_RECALL_SAMPLE_RATE": ("reader_recall_sample_rate", _share, repr),
    # Compaction loop (watch.py)
    "COMPACT_WATCH_WAIT_SECONDS": ("compact_watch_wait_seconds", int, str),
    "COMPACT_WATCH_RECONCILE_SECONDS": ("compact_watch_reconcile_seconds", float, repr),
    # Chroma host (chroma/host.py)
    "CHROMA_CALL_TIMEOUT_SECONDS": ("chroma_call_timeout_seconds", float, repr),
    "CHROMA_CLOSE_TIMEOUT_SECONDS": ("chroma_close_timeout_seconds", float, repr),
}
# Keys whose values are secrets: kept out of anything shown in a UI.
SECRET_ENV_KEYS = frozenset({"AWS_SECRET_ACCESS_KEY", "OPENAI_API_KEY", "PINECONE_API_KEY"})
