"""Tags: names for versions, kept in ``collections/<c>/tags.json``; GC keeps a tagged version.

Invariant: ``tags.json`` changes only by a conditional PUT (``If-None-Match: *`` for the
first tag, then ``If-Match`` the ETag read), so two writers never silently overwrite each
other: a writer whose condition fails reads the document again and re-applies its one
change (a tag or an untag is idempotent), up to ``_ATTEMPTS`` times. A tag is written under
the collection's ``CompactionLock``, as GC runs: GC, which reads the tags under that lock,
never deletes a version tagged before it started, and a tag never names a version GC has
begun to delete (the tag checks its manifest first).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Callable

from ..format import manifest as mf
from ..io.aws import get_object_or_none, sse_args
from .catalog import CATALOG_PREFIX
from ..io.conditional_writes import WriteOutcome, checked_bucket, put_document_resolving_ambiguity
from ..config import Settings
from ..format.keys import check_collection_name
from ..io.lock import CompactionLock, lock_id_for
from ..table.snapshot_store import SnapshotNotFoundError, SnapshotStore
from ..format.version_manifest import version_number

TAGS_NAME = "tags.json"
TAGS_FORMAT = "vector_pipeline.tags/1"
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ATTEMPTS = 5


class TagConflictError(RuntimeError):
    """The tags document kept changing under this writer: try again."""


def check_tag_name(name: str) -> str:
    if not _TAG_RE.match(name or ""):
        raise ValueError(f"tag {name!r}: 1-100 characters of letters, digits, '.', '_' or '-', starting with a "
                         "letter or digit")
    return name


class TagStore:
    """The tags of every collection of one bucket."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = SnapshotStore(settings)
        self.s3, self.bucket = self.store.s3, self.store.bucket

    def key(self, collection: str) -> str:
        return f"{CATALOG_PREFIX}{check_collection_name(collection)}/{TAGS_NAME}"

    def tags(self, collection: str) -> dict[str, str]:
        """tag → version."""
        return self._read(collection)[0]

    def tagged_versions(self, collection: str) -> set[str]:
        return set(self.tags(collection).values())

    def version_of(self, collection: str, name: str) -> str:
        version = self.tags(collection).get(check_tag_name(name))
        if version is None:
            raise ValueError(f"{collection} has no tag {name!r} (vector-pipeline versions list {collection})")
        return version

    def tag(self, collection: str, version: str, name: str) -> None:
        """Name ``version``; refused when the tag names another version (untag it first)."""
        check_tag_name(name)
        with CompactionLock(lock_id_for(collection), settings=self.settings):
            self.store.read_manifest(collection, version, any_format=True)  # it exists (GC waits for the lock)

            def change(tags: dict[str, str]) -> dict[str, str]:
                held = tags.get(name)
                if held not in (None, version):
                    raise ValueError(f"tag {name!r} of {collection} names {held}: untag it first")
                return {**tags, name: version}

            self._update(collection, change)

    def untag(self, collection: str, name: str) -> str:
        """Remove a tag; returns the version it named."""
        removed: list[str] = []

        def change(tags: dict[str, str]) -> dict[str, str]:
            if name not in tags:
                raise ValueError(f"{collection} has no tag {name!r}")
            removed[:] = [tags[name]]
            return {k: v for k, v in tags.items() if k != name}

        self._update(collection, change)
        return removed[0]

    def _read(self, collection: str) -> tuple[dict[str, str], str | None]:
        key = self.key(collection)
        response = get_object_or_none(self.s3, self.bucket, key)
        if response is None:
            return {}, None
        document = mf.loads(response["Body"].read(), key)
        return {str(k): str(v) for k, v in document.get("tags", {}).items()}, str(response["ETag"])

    def _update(self, collection: str, change: Callable[[dict[str, str]], dict[str, str]]) -> None:
        """Read, change, write conditionally (a write whose answer was lost is recognised as
        ours, ``put_document_resolving_ambiguity``); on a real conflict read again and retry."""
        checked = checked_bucket(self.s3, self.settings)  # a store that ignores conditions is refused
        for _attempt in range(_ATTEMPTS):
            tags, etag = self._read(collection)
            updated = change(dict(tags))
            if updated == tags:
                return
            document = {"format": TAGS_FORMAT, "collection": collection, "tags": dict(sorted(updated.items()))}
            put = put_document_resolving_ambiguity(self.s3, self.bucket, self.key(collection), document,
                                                   checked.condition(etag), sse_args(self.settings))
            if put.outcome is not WriteOutcome.CONFLICT:
                return
        raise TagConflictError(f"the tags of {collection} kept changing during {_ATTEMPTS} attempts: try again")


def version_named(settings: Settings, collection: str, name_or_number: str) -> str:
    """A stored version of ``collection`` by its full name or its number (``3``)."""
    store = SnapshotStore(settings)
    versions = store.list_versions(collection)
    if name_or_number in versions:
        return name_or_number
    if name_or_number.isdigit():
        matching = [v for v in versions if version_number(v) == int(name_or_number)]
        if len(matching) == 1:
            return matching[0]
    raise SnapshotNotFoundError(f"{collection} has no stored version {name_or_number!r} "
                                f"(vector-pipeline versions list {collection})")


@dataclass
class VersionRow:
    number: int
    version: str
    created_at: str
    vector_count: int | None
    segments: int | None
    tags: list[str]
    current: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def list_versions(settings: Settings, collection: str) -> list[VersionRow]:
    """Every stored version with a manifest, oldest first (orphans without one are left out)."""
    store = SnapshotStore(settings)
    pointer = store.read_pointer(collection)
    names: dict[str, list[str]] = {}
    for tag, version in TagStore(settings).tags(collection).items():
        names.setdefault(version, []).append(tag)
    rows = []
    for version in store.list_versions(collection):
        try:
            manifest = store.read_manifest(collection, version, any_format=True)
        except SnapshotNotFoundError:
            continue
        rows.append(VersionRow(version_number(version), version, manifest.created_at,
                               manifest.vector_count, len(manifest.segments), sorted(names.get(version, [])),
                               pointer is not None and pointer.version == version))
    return rows


def newest_delta_of_tag(settings: Settings, collection: str, name: str) -> str:
    """The greatest delta id the tagged version holds (a rebuild ``--tag`` goes up to it)."""
    store = SnapshotStore(settings)
    version = TagStore(settings).version_of(collection, name)
    applied = store.read_merge_state(store.read_manifest(collection, version)).applied_delta_ids
    if not applied:
        raise ValueError(f"tag {name!r} of {collection} names {version}, which holds no delta")
    return max(applied)
