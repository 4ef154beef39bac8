"""Forks: a new collection whose first version is one of another's, sharing its objects.

Invariant: a fork copies no segment. Its first version's manifest lists the source
version's files with their keys as they are (objects under ``snapshot/<source>/``), and its
settings start as the source's; from then on the two are independent collections (their
own deltas, pointer, catalog record, tags). What keeps the shared objects alive is GC's
rule (``retention``): an object that any stored version of any collection refers to is
never deleted, whichever collection's GC runs. The fork is made under the source's
``CompactionLock`` (GC of the source holds it too), so GC never deletes the version being
forked while the fork's manifest is written.

The fork's version numbers continue from the source version's (segments are named for the
version that wrote them: the fork's own never collide with those it shares), and its
archive records the source's deltas as expired before the fork, so a rebuild of the fork
starts from its first version plus its own archived deltas.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any

from ..format import manifest as mf
from ..io.aws import sse_args
from ..table.catalog import CollectionCatalog
from ..config import Settings
from ..format.keys import ARCHIVE_PREFIX, check_collection_name
from ..io.lock import CompactionLock, lock_id_for
from .retention import EXPIRED_MARKER
from ..table.snapshot_store import PublishOutcome, SnapshotStore
from ..format.version_manifest import VersionManifest, manifest_key, next_version

log = logging.getLogger(__name__)


class ForkError(ValueError):
    """The fork cannot be made (the target exists, the source version is gone, ...)."""


@dataclass
class ForkResult:
    source: str
    source_version: str
    target: str
    version: str
    vector_count: int
    shared_objects: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fork_collection(settings: Settings, source: str, target: str, version: str | None = None) -> ForkResult:
    """Create ``target`` as a fork of ``source`` at ``version`` (default: its published one)."""
    check_collection_name(source)
    check_collection_name(target)
    if source == target:
        raise ForkError("a collection cannot be forked into itself")
    store = SnapshotStore(settings)
    catalog = CollectionCatalog(settings)
    if store.read_pointer(target) is not None or catalog.get(target) is not None:
        raise ForkError(f"collection {target!r} exists already: a fork makes a new collection")
    with CompactionLock(lock_id_for(source), settings=settings):
        manifest = store.manifest_of(source, version)
        version = manifest.version
        store.require_files(manifest)  # refuse a version GC already took apart
        config = catalog.get_or_defaults(source)
        catalog.create(replace(config, name=target, created_at=datetime.now(timezone.utc).isoformat(),
                               forked_from=f"{source}@{version}"))
        first = fork_manifest(manifest, target)
        store.s3.put_object(Bucket=store.bucket, Key=manifest_key(target, first.version),
                            Body=first.to_json(), ContentType="application/json", **sse_args(settings))
        _mark_archive_start(store, target, first, manifest)
        if store.publish(first, None) is PublishOutcome.CONFLICT:
            raise ForkError(f"collection {target!r} was published by another writer meanwhile")
    log.info("forked %s@%s into %s (%d objects shared)", source, version, target, len(first.files))
    return ForkResult(source, version, target, first.version, first.vector_count, len(first.files))


def fork_manifest(source: VersionManifest, target: str) -> VersionManifest:
    """The fork's first version: the source version's files (their keys unchanged) under a
    version of ``target`` numbered after it."""
    return replace(source, collection=target, version=next_version(source.version),
                   parent_version=None, parent_vector_count=source.vector_count,
                   created_at=datetime.now(timezone.utc).isoformat(), applied_delta_ids=(),
                   delta_upserts=0, delta_deletes=0, fence=None, lock_owner=None,
                   forked_from={"collection": source.collection, "version": source.version},
                   chroma_collection=source.inner_collection,  # the segments it shares hold this one
                   uploaded_bytes=0, reused_files=len(source.files))


def _mark_archive_start(store: SnapshotStore, target: str, first: VersionManifest, source: VersionManifest) -> None:
    """The fork's archive holds none of the deltas its first version holds: recorded as an
    expiry, so a rebuild starts from a kept version that holds them."""
    applied = store.read_merge_state(source).applied_delta_ids
    if not applied:
        return
    store.s3.put_object(Bucket=store.bucket, Key=f"{ARCHIVE_PREFIX}{target}/{EXPIRED_MARKER}",
                        ContentType="application/json", **sse_args(store.settings),
                        Body=mf.dumps({"through_delta_id": max(applied), "at": first.created_at,
                                       "held_by": [first.version], "forked_from": first.forked_from}))
