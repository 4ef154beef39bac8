"""Retention: garbage collection of versions, and expiry of archived and quarantined deltas.

Invariant: GC never deletes the version the pointer names, nor a tagged version
(``table/tags``), nor an object a kept version's manifest references — nor one a stored
version of any other collection references (a fork shares its source's objects,
``forks``) —, nor a version that stopped being current less than the grace ago (a reader
that read the pointer before it moved may still be downloading it), nor an orphan (never
published) younger than the grace. It never expires an archived delta that a
rebuild still needs: only deltas every kept published version already holds, and only
after recording ``archive/<collection>/expired.json``, so a rebuild knows to start from the
oldest kept version plus the archive after it.

When a version stopped being current comes from the pointer's own history (written by
the same conditional PUT that moved it, ``snapshot_store.pointer_history``); versions the
history does not name were never published (orphans) or were replaced before its window.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from ..format import manifest as mf
from ..io.aws import get_object_or_none, sse_args
from ..table.catalog import CollectionCatalog, Retention
from ..config import Settings
from ..delta.archive import delete_keys
from ..format.keys import ARCHIVE_PREFIX, QUARANTINE_PREFIX, delta_id_time
from ..delta.reader import list_deltas
from ..io.lock import CompactionLock, lock_id_for
from ..table.snapshot_store import SNAPSHOT_PREFIX, SnapshotStore, version_prefix
from .stored import files_by_version
from ..table.tags import TagStore

log = logging.getLogger(__name__)

EXPIRED_MARKER = "expired.json"


@dataclass
class GcReport:
    collection: str
    kept_versions: list[str] = field(default_factory=list)
    deleted_versions: list[str] = field(default_factory=list)
    deleted_objects: int = 0
    expired_archived_deltas: int = 0
    expired_quarantined_deltas: int = 0


@dataclass
class Timeline:
    """What the pointer says of a collection's versions: the current one, and each span of
    time an earlier one was current (a version rolled back to has several)."""

    current: str | None
    spans: list[tuple[str, datetime | None, datetime | None]]  # (version, published, replaced; None = now)
    has_history: bool

    @classmethod
    def of(cls, pointer_document: dict[str, Any] | None) -> "Timeline":
        if pointer_document is None:
            return cls(None, [], False)
        history = pointer_document.get("history")
        spans = [(str(e["version"]), _time(e.get("published_at")), _time(e["replaced_at"])) for e in history or []]
        current = str(pointer_document["version"])
        spans.append((current, _time(pointer_document.get("published_at")), None))
        return cls(current, spans, history is not None)

    @property
    def published(self) -> set[str]:
        return {version for version, _start, _end in self.spans}

    def replaced_at(self, version: str) -> datetime | None:
        """When ``version`` last stopped being current (None: current, or never published)."""
        ends = [end for v, _start, end in self.spans if v == version and end is not None]
        return max(ends, default=None) if version != self.current else None

    def window_start(self) -> datetime | None:
        """Before this, the history does not know what was published."""
        starts = [start for _v, start, _end in self.spans if start is not None]
        return min(starts, default=None) if self.has_history else None

    def version_current_at(self, at: datetime) -> str | None:
        """The version the pointer named at ``at`` (None: before the first publish, or
        earlier than the history remembers)."""
        for version, start, end in reversed(self.spans):
            if start is not None and start <= at and (end is None or at < end):
                return version
        return None


def collect_garbage(settings: Settings, collection: str, *, retain_versions: int | None = None,
                    grace: timedelta | None = None, now: datetime | None = None) -> GcReport:
    """Delete unreferenced versions past the collection's retention (``collections/<name>.json``,
    or the arguments), then expire archived and quarantined deltas past theirs."""
    store = SnapshotStore(settings)
    retention = _retention(settings, collection)
    keep_count = retention.versions_kept if retain_versions is None else retain_versions
    grace = timedelta(hours=retention.grace_hours) if grace is None else grace
    now = now or datetime.now(timezone.utc)
    report = GcReport(collection)
    lock = CompactionLock(lock_id_for(collection), settings=settings)
    if not lock.acquire():
        log.info("gc of %s skipped: a compaction holds the lock", collection)
        return report
    lock.start_heartbeat()
    try:
        pointer = store.read_pointer(collection)
        timeline = Timeline.of(None if pointer is None else pointer.document)
        versions = store.list_versions(collection)
        tagged = TagStore(settings).tagged_versions(collection)  # kept until untagged
        doomed = [v for v in versions if v not in tagged and _collectable(v, versions, timeline, keep_count, grace, now)]
        report.kept_versions = sorted(set(versions) - set(doomed))
        referenced = _referenced_keys(store, collection, report.kept_versions) | _referenced_by_forks(settings, store,
                                                                                                    collection)
        for version in doomed:
            deleted, had_manifest = _delete_prefix(store, version_prefix(collection, version), referenced)
            report.deleted_objects += deleted
            if had_manifest:  # else: what an earlier GC left because a kept version shares it
                report.deleted_versions.append(version)
        kept_published = [v for v in report.kept_versions if v in timeline.published]
        report.expired_archived_deltas = _expire_archive(store, collection, kept_published, retention, now)
        report.expired_quarantined_deltas = _expire_quarantine(store, collection, retention, now)
    finally:
        lock.release()
    log.info("gc of %s: deleted %d versions (%d objects), kept %s; expired %d archived, %d quarantined deltas",
             collection, len(report.deleted_versions), report.deleted_objects, report.kept_versions,
             report.expired_archived_deltas, report.expired_quarantined_deltas)
    return report


def _collectable(version: str, versions: list[str], timeline: Timeline, keep_count: int, grace: timedelta,
                 now: datetime) -> bool:
    if version == timeline.current:
        return False
    if not timeline.has_history:  # a pointer written before histories: newest by name, age from creation
        newest = versions[-keep_count:] if keep_count > 0 else []
        return version not in newest and created_at(version) < now - grace
    others = sorted(timeline.published - {timeline.current}, key=created_at, reverse=True)
    if version in others[:max(keep_count - 1, 0)]:  # orphans never count toward the versions kept
        return False
    replaced = timeline.replaced_at(version)
    if replaced is not None:  # the grace counts from when it stopped being current
        return replaced < now - grace
    window = timeline.window_start()
    if window is not None and created_at(version) < window:
        return window < now - grace  # replaced before the history's window, if ever published
    return created_at(version) < now - grace  # an orphan: the pointer never named it


def _expire_archive(store: SnapshotStore, collection: str, kept_published: list[str], retention: Retention,
                    now: datetime) -> int:
    if retention.archive_days is None or not kept_published:
        return 0
    held_everywhere = set.intersection(*(applied_delta_ids(store, collection, v) for v in kept_published))
    horizon = now - timedelta(days=retention.archive_days)
    expired = [ref for ref in _archived_refs(store, collection)
               if ref.delta_id in held_everywhere and delta_id_time(ref.delta_id) < horizon]
    if not expired:
        return 0
    marker = f"{ARCHIVE_PREFIX}{collection}/{EXPIRED_MARKER}"
    store.s3.put_object(Bucket=store.bucket, Key=marker, ContentType="application/json", **sse_args(store.settings),
                        Body=mf.dumps({"through_delta_id": max(r.delta_id for r in expired), "at": now.isoformat(),
                                       "held_by": kept_published}))
    for ref in expired:
        _delete_prefix(store, ref.archive_key, set())
    return len(expired)


def _expire_quarantine(store: SnapshotStore, collection: str, retention: Retention, now: datetime) -> int:
    if retention.quarantine_days is None:
        return 0
    horizon = now - timedelta(days=retention.quarantine_days)
    prefix = f"{QUARANTINE_PREFIX}{collection}/"
    old = {o["Key"][len(prefix):].split("/", 1)[0] for page in store.s3.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix=prefix) for o in page.get("Contents", [])
        if o["Key"].endswith("/reason.json") and o["LastModified"] < horizon}
    for delta_id in old:
        _delete_prefix(store, f"{prefix}{delta_id}/", set())
    return len(old)


def archive_expired(store: SnapshotStore, collection: str) -> dict[str, Any] | None:
    """The expiry record of the collection's archive (None: the archive is whole)."""
    key = f"{ARCHIVE_PREFIX}{collection}/{EXPIRED_MARKER}"
    response = get_object_or_none(store.s3, store.bucket, key)
    return None if response is None else mf.loads(response["Body"].read(), key)


def applied_delta_ids(store: SnapshotStore, collection: str, version: str) -> set[str]:
    """Every delta a version holds (its merge state: a small GET per part)."""
    return store.read_merge_state(store.read_manifest(collection, version)).applied_delta_ids


def created_at(version: str) -> datetime:
    stamp = version.split("-", 1)[1]
    return datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=timezone.utc)


def _archived_refs(store: SnapshotStore, collection: str) -> list[Any]:
    return list_deltas(store.s3, store.bucket, f"{ARCHIVE_PREFIX}{collection}/")


def _retention(settings: Settings, collection: str) -> Retention:
    config = CollectionCatalog(settings).get(collection)
    return config.retention if config is not None else Retention()


def _referenced_keys(store: SnapshotStore, collection: str, versions: list[str]) -> set[str]:
    # an orphan without manifest references nothing
    return set().union(*files_by_version(store, collection, versions).values())


def _referenced_by_forks(settings: Settings, store: SnapshotStore, collection: str) -> set[str]:
    """Objects of ``collection`` that a stored version of a fork refers to (``forks.py``):
    whichever collection's GC runs, they stay while any version refers to them."""
    own = f"{SNAPSHOT_PREFIX}{collection}/"
    keys: set[str] = set()
    for fork in CollectionCatalog(settings).forks():
        if fork != collection:
            keys.update(k for k in _referenced_keys(store, fork, store.list_versions(fork)) if k.startswith(own))
    return keys


def _delete_prefix(store: SnapshotStore, prefix: str, referenced: set[str]) -> tuple[int, bool]:
    """Delete the prefix's unreferenced objects; (how many, whether its manifest was one)."""
    keys = [o["Key"] for page in store.s3.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=prefix)
            for o in page.get("Contents", []) if o["Key"] not in referenced]
    # The manifest first: from then on the version (or delta) no longer exists for anyone.
    keys.sort(key=lambda key: not key.endswith(mf.MANIFEST_NAME))
    delete_keys(store.s3, store.bucket, keys)
    return len(keys), any(key.endswith(mf.MANIFEST_NAME) for key in keys)


def parse_time(value: str) -> datetime:
    """An ISO 8601 time as users write it (``2026-11-25T10:00:00Z``; no zone = UTC)."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 time (e.g. 2026-11-25T10:00:00Z)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
