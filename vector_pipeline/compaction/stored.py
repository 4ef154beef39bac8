"""What a collection stores: its versions, and the version prefixes that are no longer versions.

Invariant (read only): a version exists while its manifest does — GC deletes a version's
manifest first (``retention``), and a compaction uploads it last. A prefix under
``snapshot/<collection>/`` without a manifest is therefore one of two things, told apart by
the stored versions' manifests: a deleted version whose objects a stored version (of this
collection, or of a fork) still reads, kept by GC until nothing does (``SHARED``); or objects
nothing references, a write not finished yet or a crash's leftovers, which GC removes once
they are older than the grace (``UNREFERENCED``). Neither is counted as a version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from ..format import manifest as mf
from ..table.catalog import CollectionCatalog
from ..table.snapshot_store import SnapshotNotFoundError, SnapshotStore, version_prefix


class Leftover(str, Enum):
    SHARED = "shared"  # a deleted version's objects that a stored version reads
    UNREFERENCED = "unreferenced"  # no manifest, nothing reads it: being written, or a crash's


@dataclass
class VersionLeftover:
    """A version prefix without a manifest: what it is, how many objects, who reads them."""

    version: str
    kind: Leftover
    objects: int
    shared_by: list[str] = field(default_factory=list)  # "<version>", or "<fork>/<version>"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind.value}


@dataclass
class StoredVersions:
    versions: list[str]  # versions with a manifest
    leftovers: list[VersionLeftover]


def files_by_version(store: SnapshotStore, collection: str, versions: list[str]) -> dict[str, set[str]]:
    """The object keys each version's manifest lists (any snapshot format); a version whose
    manifest is gone lists nothing."""
    files: dict[str, set[str]] = {}
    for version in versions:
        try:
            manifest = store.read_manifest(collection, version, any_format=True)
        except SnapshotNotFoundError:
            continue
        files[version] = {entry["key"] for entry in manifest["files"]}
    return files


def stored_versions(store: SnapshotStore, catalog: CollectionCatalog, collection: str) -> StoredVersions:
    """The collection's versions (a manifest each) and its version prefixes without one."""
    prefixes = store.list_versions(collection)
    versions = [v for v in prefixes if _has_manifest(store, collection, v)]
    bare = [v for v in prefixes if v not in versions]
    if not bare:  # the usual case: one listing per version, no manifest read
        return StoredVersions(versions, [])
    readers = files_by_version(store, collection, versions)
    for fork in catalog.forks():
        if fork != collection:
            forked = files_by_version(store, fork, store.list_versions(fork))
            readers.update({f"{fork}/{version}": keys for version, keys in forked.items()})
    leftovers = []
    for version in bare:
        keys = set(_keys_under(store, version_prefix(collection, version)))
        shared_by = sorted(reader for reader, read in readers.items() if keys & read)
        leftovers.append(VersionLeftover(version, Leftover.SHARED if shared_by else Leftover.UNREFERENCED,
                                         len(keys), shared_by))
    return StoredVersions(versions, leftovers)


def _has_manifest(store: SnapshotStore, collection: str, version: str) -> bool:
    key = version_prefix(collection, version) + mf.MANIFEST_NAME
    listed = store.s3.list_objects_v2(Bucket=store.bucket, Prefix=key, MaxKeys=1).get("Contents", [])
    return any(o["Key"] == key for o in listed)


def _keys_under(store: SnapshotStore, prefix: str) -> list[str]:
    return [o["Key"] for page in store.s3.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=prefix)
            for o in page.get("Contents", [])]
