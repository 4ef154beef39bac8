"""The collection catalog: each collection's settings, kept as data in the bucket.

Invariant: a collection is compacted only once ``collections/<name>.json`` exists for it
(written by ``vector-pipeline collections create``, or on its first delta when
auto-creation is on) and the allow-list (``VECTOR_COLLECTIONS``, when set) names it. A
name is checked before anything is written: a valid chroma collection name and a safe key
segment. Records are created with ``If-None-Match: *`` and changed with ``If-Match``, so
two writers never silently overwrite each other; a write refused because botocore resent it
after its first attempt landed is recognised by its write id, not reported as a conflict.
A version's manifest records the HNSW settings and embedding it was built with: a published
version never changes, and a change of the settings reaches the next version the collection
publishes (its compaction or fold builds with them, ``compaction/version_writer.py``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any

from ..format import manifest as mf
from ..io.aws import client, get_object_or_none, sse_args
from ..io.conditional_writes import CREATE_ONLY, WriteOutcome, checked_bucket, put_document_resolving_ambiguity
from ..config import HnswSettings, Settings
from ..format.keys import check_collection_name
from ..format.quiet_window import QuietWindow
from ..chroma.embeddings import provider_name

log = logging.getLogger(__name__)

CATALOG_PREFIX = "collections/"


class UnknownCollectionError(ValueError):
    """The collection is not in the catalog (and auto-creation is off), or not allowed."""


class CatalogConflictError(RuntimeError):
    """Another writer created or changed the record first: read it again and retry."""


@dataclass(frozen=True)
class Retention:
    """How long a collection's history is kept (GC, ``archive/`` and ``quarantine/`` expiry)."""

    versions_kept: int = 5  # the newest published versions kept, the current one among them
    grace_hours: float = 1.0  # a version replaced less than this ago is kept (readers may download it)
    archive_days: float | None = None  # None: applied deltas are kept forever (rebuilds need them)
    quarantine_days: float | None = 30.0


@dataclass(frozen=True)
class CollectionConfig:
    name: str
    # The embedding the collection takes; "" / 0: the first delta with vectors decides.
    embedding_provider: str = ""
    dimension: int = 0
    hnsw: HnswSettings = HnswSettings()
    segment_max_count: int = 10
    segment_fan_in: int = 4
    segment_fold_ratio: float = 0.25  # the base's masked share past which a base fold runs at once
    retention: Retention = field(default_factory=Retention)
    created_at: str = ""
    # Cadence (compaction/cadence.py): compact once the oldest pending delta nears this age,
    # or once this many deltas are pending; base folds in the quiet window (quiet_window.py).
    freshness_target_seconds: float = 30.0
    backlog_max_deltas: int = 500
    fold_window: str = "0 2 * * *"
    fold_window_minutes: int = 120
    # Recall@k of a new version against exact search (recall.py): below the target the
    # Dagster check warns; below the floor (None: no floor) it blocks the publish.
    recall_target: float = 0.95
    recall_floor: float | None = None
    forked_from: str = ""  # "<collection>@<version>" a fork started from (forks.py)

    @property
    def embedding(self) -> tuple[str, int] | None:
        return (self.embedding_provider, self.dimension) if self.embedding_provider and self.dimension else None

    def apply_to(self, settings: Settings) -> Settings:
        """``settings`` with this collection's HNSW and segment policy."""
        return settings.replace(hnsw=self.hnsw, segment_max_count=self.segment_max_count,
                                segment_fan_in=self.segment_fan_in, segment_fold_ratio=self.segment_fold_ratio)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "hnsw": self.hnsw.as_dict(), "format": "vector_pipeline.collection/1"}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "CollectionConfig":
        retention = Retention(**{f.name: values.get("retention", {}).get(f.name, f.default) for f in fields(Retention)})
        return cls(name=str(values["name"]), embedding_provider=str(values.get("embedding_provider", "")),
                   dimension=int(values.get("dimension", 0)), hnsw=HnswSettings.from_dict(values.get("hnsw", {})),
                   segment_max_count=int(values.get("segment_max_count", cls.segment_max_count)),
                   segment_fan_in=int(values.get("segment_fan_in", cls.segment_fan_in)),
                   segment_fold_ratio=float(values.get("segment_fold_ratio", cls.segment_fold_ratio)),
                   retention=retention, created_at=str(values.get("created_at", "")),
                   freshness_target_seconds=float(values.get("freshness_target_seconds", cls.freshness_target_seconds)),
                   backlog_max_deltas=int(values.get("backlog_max_deltas", cls.backlog_max_deltas)),
                   fold_window=str(values.get("fold_window", cls.fold_window)),
                   fold_window_minutes=int(values.get("fold_window_minutes", cls.fold_window_minutes)),
                   recall_target=float(values.get("recall_target", cls.recall_target)),
                   recall_floor=None if values.get("recall_floor") is None else float(values["recall_floor"]),
                   forked_from=str(values.get("forked_from", "")))

    @classmethod
    def defaults_for(cls, name: str, settings: Settings) -> "CollectionConfig":
        """A new collection with the deployment's defaults (``Settings``)."""
        return cls(name=name, hnsw=settings.hnsw, segment_max_count=settings.segment_max_count,
                   segment_fan_in=settings.segment_fan_in, segment_fold_ratio=settings.segment_fold_ratio,
                   created_at=datetime.now(timezone.utc).isoformat())

    def changed(self, **changes: Any) -> "CollectionConfig":
        """A copy with top-level fields, ``hnsw_<field>`` or ``retention_<field>`` replaced."""
        hnsw = {k[len("hnsw_"):]: v for k, v in changes.items() if k.startswith("hnsw_")}
        retention = {k[len("retention_"):]: v for k, v in changes.items() if k.startswith("retention_")}
        plain = {k: v for k, v in changes.items() if not k.startswith(("hnsw_", "retention_"))}
        unknown = set(plain) - {f.name for f in fields(self)} | set(hnsw) - {f.name for f in fields(HnswSettings)} \
            | set(retention) - {f.name for f in fields(Retention)}
        if unknown:
            raise ValueError(f"unknown collection setting(s): {', '.join(sorted(unknown))}")
        updated = replace(self, **plain, hnsw=replace(self.hnsw, **hnsw), retention=replace(self.retention, **retention))
        updated.check()
        return updated

    def check(self) -> None:
        check_collection_name(self.name)
        if self.dimension < 0 or (self.dimension and not self.embedding_provider):
            raise ValueError(f"collection {self.name}: a dimension needs an embedding provider")
        if self.segment_max_count < 1 or self.segment_fan_in < 2 or not 0 < self.segment_fold_ratio:
            raise ValueError(f"collection {self.name}: segment_max_count ≥ 1, segment_fan_in ≥ 2 and "
                             "segment_fold_ratio > 0")
        if self.freshness_target_seconds <= 0 or self.backlog_max_deltas < 1:
            raise ValueError(f"collection {self.name}: freshness_target_seconds > 0 and backlog_max_deltas ≥ 1")
        QuietWindow.parse(self.fold_window, self.fold_window_minutes)  # refused naming the field
        if self.hnsw.space not in ("cosine", "l2", "ip"):
            raise ValueError(f"collection {self.name}: hnsw space {self.hnsw.space!r} (cosine, l2 or ip)")
        if not 0 <= self.recall_target <= 1 or not (self.recall_floor is None or 0 <= self.recall_floor <= 1):
            raise ValueError(f"collection {self.name}: recall_target and recall_floor lie in [0, 1]")
        if self.retention.versions_kept < 1 or self.retention.grace_hours < 0:
            raise ValueError(f"collection {self.name}: retention keeps ≥ 1 version and a grace ≥ 0")


class CollectionCatalog:
    """``collections/<name>.json`` records of one bucket."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bucket = settings.vectors_bucket
        self.s3 = client("s3", settings)

    def key(self, name: str) -> str:
        return f"{CATALOG_PREFIX}{check_collection_name(name)}.json"

    def get(self, name: str) -> CollectionConfig | None:
        found = self._read(name)
        return None if found is None else found[0]

    def get_or_defaults(self, name: str) -> CollectionConfig:
        """The collection's settings, or the deployment's defaults before its record exists
        (nothing is written: ``require`` is the one that creates)."""
        return self.get(name) or CollectionConfig.defaults_for(name, self.settings)

    def names(self) -> list[str]:
        paginator = self.s3.get_paginator("list_objects_v2")
        return sorted(o["Key"][len(CATALOG_PREFIX):-len(".json")]
                      for page in paginator.paginate(Bucket=self.bucket, Prefix=CATALOG_PREFIX, Delimiter="/")
                      for o in page.get("Contents", []) if o["Key"].endswith(".json"))

    def hnsw_with_search_ef(self, name: str, search_ef: int) -> HnswSettings:
        """The collection's HNSW settings with another search breadth (a rebuild's option)."""
        return replace(self.get_or_defaults(name).hnsw, search_ef=int(search_ef))

    def forks(self) -> list[str]:
        """Collections made by ``collections fork`` (their versions share another's objects)."""
        return [name for name in self.names() if (config := self.get(name)) is not None and config.forked_from]

    def allowed(self, name: str) -> bool:
        return not self.settings.collections or name in self.settings.collections

    def create(self, config: CollectionConfig) -> CollectionConfig:
        """Write a new record; ``CatalogConflictError`` when the collection exists."""
        config = self._normalized(config)
        if not self.allowed(config.name):
            raise UnknownCollectionError(self._not_allowed(config.name))
        config = replace(config, created_at=config.created_at or datetime.now(timezone.utc).isoformat())
        self._write(config, CREATE_ONLY, f"collection {config.name!r} exists already")
        log.info("created collection %s", config.name)
        return config

    def update(self, name: str, **changes: Any) -> CollectionConfig:
        found = self._read(name)
        if found is None:
            raise UnknownCollectionError(f"collection {name!r} does not exist (vector-pipeline collections create)")
        updated = self._normalized(found[0].changed(**changes))
        if_match = checked_bucket(self.s3, self.settings).if_match(found[1])  # the ETag form the store compares
        self._write(updated, if_match, f"collection {name!r} changed meanwhile: try again")
        return updated

    def admits(self, name: str) -> None:
        """Raise ``UnknownCollectionError`` unless ``require`` would succeed; writes nothing
        (a run checks this before its lock, and creates the record under it)."""
        check_collection_name(name)
        if not self.allowed(name):
            raise UnknownCollectionError(self._not_allowed(name))
        if not self.settings.auto_create_collections and self.get(name) is None:
            raise UnknownCollectionError(f"collection {name!r} does not exist and VECTOR_COLLECTIONS_AUTO_CREATE "
                                         "is off (vector-pipeline collections create)")

    def require(self, name: str) -> CollectionConfig:
        """The collection's settings; created with the defaults on first use when
        auto-creation is on. ``UnknownCollectionError`` names why it cannot be used."""
        self.admits(name)
        config = self.get(name)
        if config is not None:
            return config
        try:
            return self.create(CollectionConfig.defaults_for(name, self.settings))
        except CatalogConflictError:  # another process created it first: theirs stands
            return self.get_or_defaults(name)

    def _normalized(self, config: CollectionConfig) -> CollectionConfig:
        """The provider as manifests record it (``minilm`` → its model's name), checked."""
        if config.embedding_provider:
            config = replace(config, embedding_provider=provider_name(
                self.settings.replace(embedding_provider=config.embedding_provider)))
        config.check()
        return config

    def _not_allowed(self, name: str) -> str:
        return f"collection {name!r} is not in VECTOR_COLLECTIONS ({','.join(self.settings.collections)})"

    def _read(self, name: str) -> tuple[CollectionConfig, str] | None:
        key = self.key(name)
        response = get_object_or_none(self.s3, self.bucket, key)
        if response is None:
            return None
        return CollectionConfig.from_dict(mf.loads(response["Body"].read(), key)), str(response["ETag"])

    def _write(self, config: CollectionConfig, condition: dict[str, str], conflict: str) -> None:
        checked_bucket(self.s3, self.settings)  # a store that ignores the condition is refused first
        put = put_document_resolving_ambiguity(self.s3, self.bucket, self.key(config.name), config.as_dict(),
                                               condition, sse_args(self.settings))
        if put.outcome is WriteOutcome.CONFLICT:
            raise CatalogConflictError(conflict)
