"""Every configuration key of vector_pipeline, declared once: the fields of ``Settings``.

No other module reads the environment. The faces (CLI, Dagster resource, Lambda handlers)
build a ``Settings`` once (``Settings.from_env()``) and pass it down; the library takes it from
its caller. Only the public entry points (``ChromaDBClient``, ``ChromaCompactor``,
``CompactionLock``, ``produce_embedding_delta``, ``query_snapshot``, ``open_snapshot``) fall
back to the environment, through ``Settings.resolve``. Explicit arguments win over the
environment, which wins over the defaults; ``Settings(...)`` alone never reads the environment.

Each field names its environment key and says what it means: docs/configuration.md is the
table rendered from them (a test keeps it equal) and the Dagster resource's fields are built
from them (defs/resources.py). pydantic-settings reads the keys; a bad value is refused naming
its key. Secrets are ``SecretStr`` (a repr, a log or the Dagster UI shows ``**********``): the
code that needs one calls ``get_secret_value()`` where it uses it. ``to_env()`` is the inverse
of ``from_env``: how settings reach a subprocess and the Dagster resource (a test enumerates
the fields).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Annotated, Any, Literal, Mapping, get_args

from pydantic import AliasChoices, BaseModel, Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from . import environment

DEFAULT_BUCKET = "vector-pipeline"
DEFAULT_QUEUE_NAME = "vector-pipeline-deltas"
DEFAULT_TABLE_NAME = "vector-pipeline-locks"
DEFAULT_REGION = "us-east-1"
DEFAULT_LOCK_TTL_SECONDS = 900
SseMode = Literal["none", "AES256", "aws:kms"]
MetricsSink = Literal["none", "emf", "cloudwatch"]
SSE_MODES: tuple[str, ...] = get_args(SseMode)
METRICS_SINKS: tuple[str, ...] = get_args(MetricsSink)
Csv = Annotated[tuple[str, ...], NoDecode]  # a,b in the environment
Pairs = Annotated[tuple[tuple[str, str], ...], NoDecode]  # a=x,b=y in the environment


def _memory_backed_tmp(min_free_bytes: int = 1 << 30) -> str | None:
    """/dev/shm when this machine has a writable one with room (a container's default 64 MB
    is not: several large deltas are read at once); None: the system's temp dir."""
    try:
        stats = os.statvfs("/dev/shm")
    except OSError:
        return None
    roomy = stats.f_bavail * stats.f_frsize >= min_free_bytes
    return "/dev/shm" if roomy and os.access("/dev/shm", os.W_OK) else None


@dataclasses.dataclass(frozen=True)
class HnswSettings:
    """HNSW parameters a collection is created with; recorded in every version manifest."""

    space: str = "cosine"
    search_ef: int = 100
    construction_ef: int = 200
    max_neighbors: int = 16

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, object]) -> "HnswSettings":
        return cls(**{name: type(default)(values.get(name, default)) for name, default in cls().as_dict().items()})


def _key(default: Any, key: str | AliasChoices, about: str, shown: str | None = None, **checks: Any) -> Any:
    """A setting: its default, its environment key, what it means; ``shown``: the default as the
    docs table says it, where the value depends on the machine or on another setting."""
    return Field(default, validation_alias=key, description=about, json_schema_extra={"shown": shown} if shown else None,
                 **checks)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, validate_by_name=True, validate_by_alias=True, extra="forbid",
                                      case_sensitive=True, env_ignore_empty=True)

    vectors_bucket: str = _key(DEFAULT_BUCKET, "VECTORS_BUCKET", "the one bucket holding delta/, archive/, snapshot/, ...")
    delta_queue_name: str = _key(DEFAULT_QUEUE_NAME, "DELTA_QUEUE_NAME", "SQS queue announcing deltas, by name (GetQueueUrl)")
    delta_queue_url: str | None = _key(None, "DELTA_QUEUE_URL", "its URL (wins over the name)", "from the name")
    dynamodb_table_name: str = _key(DEFAULT_TABLE_NAME, "DYNAMODB_TABLE_NAME", "lock table (hash key `lock_id`, TTL `expires`)")
    lock_ttl_seconds: int = _key(DEFAULT_LOCK_TTL_SECONDS, "COMPACTION_LOCK_TTL_SECONDS", "lock lifetime; the heartbeat runs "
                                 "at a third of it")
    lock_heartbeat_seconds: float | None = _key(None, "COMPACTION_HEARTBEAT_SECONDS", "the lock's heartbeat interval (at most "
                                                "half the lifetime)", "a third of the lifetime")
    aws_endpoint_url: str | None = _key(None, "AWS_ENDPOINT_URL", "boto3's own: unset means real AWS")
    aws_service_endpoints: tuple[tuple[str, str], ...] = Field((), description="boto3's own, per service (`_S3`, `_SQS`, "
                                                              "`_DYNAMODB`, ...): wins over AWS_ENDPOINT_URL")
    aws_region: str = _key(DEFAULT_REGION, AliasChoices("AWS_DEFAULT_REGION", "AWS_REGION"), "boto3's own")
    aws_read_timeout_seconds: float = _key(60.0, "AWS_READ_TIMEOUT_SECONDS", "how long an AWS call waits for its answer "
                                           "before botocore resends it (above COMPACT_WATCH_WAIT_SECONDS)")
    aws_max_attempts: int = _key(8, "AWS_MAX_ATTEMPTS", "tries per AWS call, the first included (standard retry mode)")
    aws_access_key_id: str | None = _key(None, "AWS_ACCESS_KEY_ID", "boto3's own (the embedded moto takes any)", "boto3's chain")
    aws_secret_access_key: SecretStr | None = _key(None, "AWS_SECRET_ACCESS_KEY", "boto3's own; a secret", "boto3's chain")
    cache_dir: str = _key(os.path.join(tempfile.gettempdir(), "vector_pipeline_cache"), "VECTOR_PIPELINE_CACHE_DIR",
                          "local copies: compactor/ (its warm version), snapshots/ (readers')", "vector_pipeline_cache in tmp")
    scratch_dir: str | None = _key(_memory_backed_tmp(), "VECTOR_PIPELINE_SCRATCH_DIR", "where deltas are built and read "
                                   "(scratch: memory spares chroma's fsyncs)", "/dev/shm if roomy, else tmp")
    embedding_provider: str = _key("minilm", "EMBEDDING_PROVIDER", "`minilm` (offline) or `openai`")
    openai_api_key: SecretStr | None = _key(None, "OPENAI_API_KEY", "for the `openai` provider; a secret")
    openai_embedding_model: str = _key("text-embedding-3-small", "OPENAI_EMBEDDING_MODEL", "for the `openai` provider")
    # HNSW and segment settings: the defaults new collections take (their own: collections/<name>.json).
    hnsw_space: str = _key("cosine", "HNSW_SPACE", "HNSW distance of new collections: cosine, l2 or ip")
    hnsw_search_ef: int = _key(100, "HNSW_SEARCH_EF", "HNSW ef at query time, of new collections")
    hnsw_construction_ef: int = _key(200, "HNSW_CONSTRUCTION_EF", "HNSW ef at build time, of new collections")
    hnsw_max_neighbors: int = _key(16, "HNSW_M", "HNSW M (neighbours per node), of new collections")
    segment_max_count: int = _key(10, "SEGMENT_MAX_COUNT", "segmented versions: most segments a reader searches")
    segment_fan_in: int = _key(4, "SEGMENT_FAN_IN", "segments per size tier before they merge up")
    segment_fold_ratio: float = _key(0.25, "SEGMENT_FOLD_RATIO", "masked share of the base past which it folds at any hour")
    collections: Csv = _key((), "VECTOR_COLLECTIONS", "optional allow-list of collections: `a,b`", "unset: any")
    auto_create_collections: bool = _key(True, "VECTOR_COLLECTIONS_AUTO_CREATE", "a new collection's delta creates it")
    reader_pointer_ttl_seconds: float = _key(1.0, "READER_POINTER_TTL_SECONDS", "how stale a reader's view of the pointer may be")
    reader_pending_lookback_seconds: float = _key(30.0, "READER_PENDING_LOOKBACK_SECONDS", "fresh reads re-list deltas "
                                                  "minted this long before their last look")
    reader_follow_pointer: bool = _key(True, "READER_FOLLOW_POINTER", "readers follow the pointer in a thread (or in queries)")
    reader_recall_sample_rate: float = _key(0.01, "READER_RECALL_SAMPLE_RATE", "share of a reader's queries re-answered "
                                            "exactly in the background, for ReaderRecallAtK (0: off)", ge=0, le=1)
    sse: SseMode = _key("AES256", "VECTORS_SSE", "encryption of every object written: `none`, `AES256` (SSE-S3) or `aws:kms`")
    sse_kms_key_id: str | None = _key(None, "VECTORS_SSE_KMS_KEY_ID", "the KMS key for `aws:kms`", "the account's aws/s3 key")
    fault: str | None = _key(None, "VECTOR_PIPELINE_FAULT", "reliability tests only: `crash:<step>` / `pause:<step>`")
    pinecone_api_key: SecretStr | None = _key(None, "PINECONE_API_KEY", "the Pinecone project's API key (migration; a secret)")
    pinecone_index_host: str | None = _key(None, "PINECONE_INDEX_HOST", "the index's data-plane URL "
                                           "(`http://` for a local one)", "unset: no Pinecone")
    pinecone_namespaces: Pairs = _key((), "PINECONE_NAMESPACES", "namespaces: `words=ns1,lines=ns2`", "the collection's name")
    pinecone_document_field: str = _key("text", "PINECONE_DOCUMENT_FIELD", "metadata key carrying a vector's document text")
    pinecone_max_attempts: int = _key(5, "PINECONE_MAX_ATTEMPTS", "tries per Pinecone call on 429/5xx/unreachable")
    pinecone_retry_base_seconds: float = _key(0.5, "PINECONE_RETRY_BASE_SECONDS", "first backoff (doubles per try, jittered)")
    pinecone_min_recall: float = _key(0.95, "PINECONE_MIN_RECALL", "recall@k bar of the Chroma snapshot (compare, check)")
    pinecone_compare_sample: int = _key(50, "PINECONE_COMPARE_SAMPLE", "stored vectors sampled as queries by the comparison")
    pinecone_compare_queries: str | None = _key(None, "PINECONE_COMPARE_QUERIES", "a file of query texts for it instead")
    pinecone_cutover_chroma_share: float = _key(0.0, "PINECONE_CUTOVER_CHROMA_SHARE", "share of routed queries for Chroma")
    pinecone_cutover_shadow: bool = _key(False, "PINECONE_CUTOVER_SHADOW", "also query the other backend, record overlap")
    metrics_sink: MetricsSink = _key("none", "METRICS_SINK", "`none`, `emf` (stdout: Lambda) or `cloudwatch` (PutMetricData)")
    metrics_namespace: str = _key("VectorPipeline", "METRICS_NAMESPACE", "the CloudWatch namespace of every metric")
    compact_watch_wait_seconds: int = _key(10, "COMPACT_WATCH_WAIT_SECONDS", "`compact --watch`: longest SQS long poll per "
                                           "cycle (1-20); also how long a stop may wait")
    compact_watch_reconcile_seconds: float = _key(60.0, "COMPACT_WATCH_RECONCILE_SECONDS", "`compact --watch`: list all of "
                                                  "delta/ at most this often (messages lost)")
    chroma_call_timeout_seconds: float = _key(900.0, "CHROMA_CALL_TIMEOUT_SECONDS", "a chroma call (in a child process) "
                                              "unanswered this long is hung: the child is killed")
    chroma_close_timeout_seconds: float = _key(60.0, "CHROMA_CLOSE_TIMEOUT_SECONDS", "the same bound for closing a client")

    def __init__(self, **values: Any) -> None:
        """The arguments, then the defaults: the environment only through ``from_env`` (a copy
        skips BaseSettings' sources: microseconds, not a millisecond)."""
        BaseModel.__init__(self, **values)

    @model_validator(mode="before")
    @classmethod
    def _spread_hnsw(cls, values: Any) -> Any:
        """``hnsw=HnswSettings(...)`` (or its dict) sets the four ``hnsw_*`` fields."""
        if isinstance(values, dict) and "hnsw" in values:
            values = dict(values)
            hnsw = values.pop("hnsw")
            values.update({f"hnsw_{name}": value for name, value in (hnsw.as_dict() if isinstance(hnsw, HnswSettings)
                                                                      else dict(hnsw)).items()})
        return values

    @field_validator("collections", "pinecone_namespaces", mode="before")
    @classmethod
    def _split(cls, value: Any, info: ValidationInfo) -> Any:
        """``a,b`` (and ``a=x,b=y`` for the namespaces) as the environment spells them."""
        if not isinstance(value, str):
            return value
        parts = tuple(part.strip() for part in value.split(",") if part.strip())
        if info.field_name == "collections":
            return parts
        pairs = [tuple(side.strip() for side in part.split("=", 1)) for part in parts]
        if bad := [part for part, pair in zip(parts, pairs) if len(pair) != 2 or not all(pair)]:
            raise ValueError(f"expected collection=namespace, got {bad[0]!r}")
        return tuple(pairs)

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        if self.sse_kms_key_id and self.sse != "aws:kms":
            raise ValueError("VECTORS_SSE_KMS_KEY_ID is set but VECTORS_SSE is not aws:kms")
        if self.aws_read_timeout_seconds <= self.compact_watch_wait_seconds:
            raise ValueError(f"AWS_READ_TIMEOUT_SECONDS={self.aws_read_timeout_seconds:g} must exceed "
                             f"COMPACT_WATCH_WAIT_SECONDS={self.compact_watch_wait_seconds} (the queue's long poll)")
        return self

    @property
    def hnsw(self) -> HnswSettings:
        return HnswSettings(self.hnsw_space, self.hnsw_search_ef, self.hnsw_construction_ef, self.hnsw_max_neighbors)

    def pinecone_namespace(self, collection: str) -> str:
        """The Pinecone namespace mirroring ``collection``: its override, else its own name."""
        return dict(self.pinecone_namespaces).get(collection, collection)

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

    def replace(self, **changes: Any) -> "Settings":
        """A copy with ``changes`` (field names, or ``hnsw=``), checked like the constructor's."""
        return type(self)(**{**{name: getattr(self, name) for name in type(self).model_fields}, **changes})

    def with_overrides(self, **overrides: object) -> "Settings":
        """A copy with the given fields replaced; ``None`` values are ignored."""
        return self.replace(**{k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def resolve(cls, settings: "Settings | None") -> "Settings":
        """The caller's settings, or (for the public entry points alone) the environment's."""
        return settings if settings is not None else cls.from_env()

    @classmethod
    def env_keys(cls) -> dict[str, str]:
        """Every environment key (its first name) → the field it sets."""
        return environment.env_keys(cls)

    @classmethod
    def secret_keys(cls) -> frozenset[str]:
        """The keys whose values are secrets: kept out of anything shown in a UI."""
        return frozenset(key for key, name in cls.env_keys().items() if SecretStr in get_args(cls.model_fields[name].annotation))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """The settings ``environ`` (default: this process's environment) holds; a bad value is a
        ``ValueError`` naming its key."""
        try:
            return cls(**environment.read(cls, os.environ if environ is None else environ, "aws_service_endpoints"))
        except ValidationError as exc:
            raise environment.refusal(exc) from None

    def to_env(self) -> dict[str, str]:
        """The environment ``from_env`` turns back into these settings (defaults left out)."""
        defaults = type(self)()
        env = {key: environment.render(getattr(self, name)) for key, name in self.env_keys().items()
               if getattr(self, name) is not None and getattr(self, name) != getattr(defaults, name)}
        return {**env, **environment.service_endpoint_keys(self.aws_service_endpoints)}

    def local_aws_environment(self) -> dict[str, str]:
        """The environment a shell needs to reach the same endpoint and resources."""
        return {"VECTORS_BUCKET": self.vectors_bucket,
                "DELTA_QUEUE_NAME": self.delta_queue_name, "DYNAMODB_TABLE_NAME": self.dynamodb_table_name,
                "AWS_DEFAULT_REGION": self.aws_region, **self.to_env()}


SECRET_ENV_KEYS = Settings.secret_keys()
