"""A version's manifest as a typed document: what ``snapshot/<c>/<version>/manifest.json`` says.

Invariant: a stored manifest reads into a ``VersionManifest`` or raises ``IntegrityError``
naming the document and the field at fault, never a bare ``KeyError`` later; and
``to_dict`` writes back every field ``from_dict`` read, with the same names and JSON kinds
(fields this build does not know are carried in ``extra``; a field an older format lacks
takes its default), so a version one build writes, another build reads.

The manifest lists the version's files (``FileEntry``: path, size, sha256 and the S3 key
holding the bytes, which may belong to an older version or another collection's), its
segments (``format/segments.py``) and the parts of its merge state (``format/merge_state.py``).
Version names (an 8-digit number, one more than the parent's, and a UTC stamp) and the keys
under ``snapshot/`` they give are here too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from .manifest import MANIFEST_NAME, FileEntry, IntegrityError, dumps, loads
from .segments import MASKS_FILE, Segment

SNAPSHOT_PREFIX = "snapshot/"
_VERSION_RE = re.compile(r"^(\d{8})-(\d{8}T\d{6}\d{3}Z)$")

SNAPSHOT_FORMAT = "vector_pipeline.snapshot/3"  # 3: the merge state as a log of parts (format/merge_state.py)
# 2: segmented (format/segments.py), one whole state.json.gz per version: read as a log of one part.
READABLE_FORMATS = ("vector_pipeline.snapshot/2", SNAPSHOT_FORMAT)
_FORMAT_FAMILY = "vector_pipeline.snapshot/"
# Written only when set: format 2 has no state parts; only forks and rebased folds say whence.
_WHEN_SET = ("state_parts", "forked_from", "rebased_fold")


def is_version_name(name: str) -> bool:
    return _VERSION_RE.match(name) is not None


def version_number(version: str) -> int:
    match = _VERSION_RE.match(version)
    if not match:
        raise ValueError(f"not a snapshot version: {version!r}")
    return int(match.group(1))


def next_version(previous: str | None, now: datetime | None = None) -> str:
    number = 0 if previous is None else version_number(previous)
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%S%f")[:-3] + "Z"
    return f"{number + 1:08d}-{stamp}"


def version_prefix(collection: str, version: str) -> str:
    return f"{SNAPSHOT_PREFIX}{collection}/{version}/"


def manifest_key(collection: str, version: str) -> str:
    return version_prefix(collection, version) + MANIFEST_NAME


class UnsupportedFormatError(IntegrityError):
    """A version written in another snapshot format (format 1 had one ``chroma/`` dir)."""


@dataclass(frozen=True)
class VersionManifest:
    format: str
    collection: str
    version: str
    files: tuple[FileEntry, ...] = ()
    parent_version: str | None = None
    created_at: str = ""
    vector_count: int = 0
    parent_vector_count: int = 0
    applied_delta_ids: tuple[str, ...] = ()
    delta_upserts: int = 0
    delta_deletes: int = 0
    chromadb_version: str = ""
    hnsw: Mapping[str, Any] = field(default_factory=dict)
    embedding_provider: str = ""
    dimension: int = 0
    fence: int | None = None
    lock_owner: str | None = None
    segments: tuple[Segment, ...] = ()
    chroma_collection: str = ""  # a fork's segments hold its source's chroma collection
    fold: str = ""
    masks_file: str = MASKS_FILE
    rebuilt_from_scratch: bool = False
    rebuilt_over: str | None = None
    total_bytes: int = 0
    uploaded_bytes: int = 0
    reused_files: int = 0
    state_parts: tuple[str, ...] | None = None  # None: format 2 (one whole state file)
    forked_from: Mapping[str, Any] | None = None
    rebased_fold: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # fields this build does not know

    @property
    def inner_collection(self) -> str:
        """The chroma collection inside the version's segments: the collection's own name, or
        (a fork, ``compaction/forks.py``) the name of the collection whose segments it shares."""
        return self.chroma_collection or self.collection

    @property
    def space(self) -> str:
        return str(self.hnsw.get("space", "cosine"))

    def file(self, path: str) -> FileEntry | None:
        return next((e for e in self.files if e.path == path), None)

    def has_file(self, path: str) -> bool:
        return self.file(path) is not None

    def files_under(self, prefix: str) -> list[FileEntry]:
        return [e for e in self.files if e.path.startswith(prefix)]

    def check_readable(self, key: str, version: str, any_format: bool = False) -> "VersionManifest":
        """This manifest, if it is ``version``'s and (unless ``any_format``) in a format this
        build reads."""
        if self.version != version or not self.format.startswith(_FORMAT_FAMILY):
            raise IntegrityError(f"{key}: not the manifest of version {version}")
        if self.format not in READABLE_FORMATS and not any_format:
            raise UnsupportedFormatError(
                f"{key}: written in {self.format}, this build reads {SNAPSHOT_FORMAT}; rebuild the collection "
                "from archive/ (the Dagster compaction job with rebuild_from_archive, or maintenance.rebuild_from_archive)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return document_of(self, _WHEN_SET)

    def to_json(self) -> bytes:
        return dumps(self.to_dict())

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], what: str = "manifest") -> "VersionManifest":
        """The manifest ``document`` holds; ``IntegrityError`` naming ``what`` and the field
        when a field is missing or of the wrong kind."""
        reader = FieldReader(document, what)
        known = {spec.name for spec in fields(cls)}
        return cls(
            format=reader.text("format"), collection=reader.text("collection"), version=reader.text("version"),
            files=reader.items("files", FileEntry.from_dict, required=True),
            parent_version=reader.optional_text("parent_version"), created_at=reader.text("created_at", ""),
            vector_count=reader.number("vector_count"), parent_vector_count=reader.number("parent_vector_count"),
            applied_delta_ids=reader.items("applied_delta_ids", str), delta_upserts=reader.number("delta_upserts"),
            delta_deletes=reader.number("delta_deletes"), chromadb_version=reader.text("chromadb_version", ""),
            hnsw=reader.mapping("hnsw") or {}, embedding_provider=reader.text("embedding_provider", ""),
            dimension=reader.number("dimension"), fence=reader.optional_number("fence"),
            lock_owner=reader.optional_text("lock_owner"), segments=reader.items("segments", Segment.from_dict),
            chroma_collection=reader.text("chroma_collection", ""), fold=reader.text("fold", ""),
            masks_file=reader.text("masks_file", MASKS_FILE),
            rebuilt_from_scratch=bool(document.get("rebuilt_from_scratch", False)),
            rebuilt_over=reader.optional_text("rebuilt_over"), total_bytes=reader.number("total_bytes"),
            uploaded_bytes=reader.number("uploaded_bytes"), reused_files=reader.number("reused_files"),
            state_parts=reader.items("state_parts", str) if "state_parts" in document else None,
            forked_from=reader.mapping("forked_from"), rebased_fold=reader.optional_text("rebased_fold"),
            extra={k: v for k, v in document.items() if k not in known})

    @classmethod
    def from_json(cls, body: bytes, what: str) -> "VersionManifest":
        return cls.from_dict(loads(body, what), what)


def segments_of(manifest: VersionManifest | None) -> list[Segment]:
    """The version's segments, base first (none before the first version)."""
    return [] if manifest is None else list(manifest.segments)


def document_of(typed: Any, when_set: tuple[str, ...] = ()) -> dict[str, Any]:
    """A typed document's JSON object: its ``extra`` fields, then every field by name (those
    in ``when_set`` only when not None); tuples become lists, their entries' ``as_dict``."""
    document: dict[str, Any] = dict(typed.extra)
    for spec in fields(typed):
        value = getattr(typed, spec.name)
        if spec.name == "extra" or (spec.name in when_set and value is None):
            continue
        if isinstance(value, tuple):
            value = [v.as_dict() if hasattr(v, "as_dict") else v for v in value]
        elif isinstance(value, Mapping):
            value = dict(value)
        document[spec.name] = value
    return document


class FieldReader:
    """Typed reads of one JSON object's fields, each failure an ``IntegrityError`` naming it."""

    def __init__(self, document: Mapping[str, Any], what: str) -> None:
        self.document, self.what = document, what

    def fail(self, name: str, problem: str) -> IntegrityError:
        return IntegrityError(f"{self.what}: field {name!r} {problem}")

    def text(self, name: str, default: str | None = None) -> str:
        value = self.document.get(name, default)
        if value is None:
            raise self.fail(name, "is missing")
        if not isinstance(value, str):
            raise self.fail(name, f"is not a string: {value!r}")
        return value

    def optional_text(self, name: str) -> str | None:
        return None if self.document.get(name) is None else self.text(name)

    def number(self, name: str) -> int:
        value = self.document.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"is not a whole number: {value!r}")
        return value

    def optional_number(self, name: str) -> int | None:
        return None if self.document.get(name) is None else self.number(name)

    def mapping(self, name: str) -> Mapping[str, Any] | None:
        value = self.document.get(name)
        if value is not None and not isinstance(value, dict):
            raise self.fail(name, f"is not an object: {value!r}")
        return value

    def items(self, name: str, read: Callable[[Any], Any], required: bool = False) -> tuple[Any, ...]:
        values = self.document.get(name)
        if values is None and not required:
            return ()
        if not isinstance(values, list):
            raise self.fail(name, "is missing" if values is None else "is not a list")
        try:
            return tuple(read(value) for value in values)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self.fail(name, f"holds a malformed entry ({type(exc).__name__}: {exc})") from None
