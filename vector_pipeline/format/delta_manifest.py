"""A delta's own manifest as a typed document: what ``manifest.json`` inside a delta says.

Invariant: a stored delta manifest reads into a ``DeltaManifest`` only if it is in the
format its layout implies, names the delta it was found as, lists its files at safe relative
paths with size and sha256, and lists its tombstones as non-empty strings; otherwise it
raises ``InvalidDeltaError`` naming the delta and the problem (the delta layer quarantines
it), never a bare ``KeyError`` later. ``to_dict`` writes back every field with the same names
and JSON kinds (fields this build does not know are carried in ``extra``; a field an older
producer did not write takes its default), so the bytes a producer stores are unchanged.

Two layouts are read: format 2, one packed object (``format/pack.py``), and format 1, a file
per chroma file beside a ``manifest.json`` written last (read, no longer written).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from .keys import DeltaRef, InvalidDeltaError
from .manifest import FileEntry, IntegrityError, UnsafePathError, check_relative_path, dumps, loads
from .version_manifest import FieldReader, document_of

DELTA_FORMAT = "vector_pipeline.delta/2"  # one packed object (format/pack.py)
DELTA_FORMAT_FILES = "vector_pipeline.delta/1"  # a file per chroma file, manifest last: read, not written


@dataclass(frozen=True)
class DeltaManifest:
    format: str
    delta_id: str
    collection: str
    created_at: str = ""
    upsert_count: int = 0
    delete_ids: tuple[str, ...] = ()
    delete_count: int = 0
    dimension: int = 0
    embedding_provider: str = ""
    chromadb_version: str = ""
    hnsw: Mapping[str, Any] = field(default_factory=dict)
    files: tuple[FileEntry, ...] = ()
    total_bytes: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)  # fields this build does not know

    @property
    def ref(self) -> DeltaRef:
        return DeltaRef(self.collection, self.delta_id)

    @property
    def file_bytes(self) -> int:
        """The bytes its files hold (what reading a format-1 delta downloads besides this)."""
        return sum(entry.size for entry in self.files)

    def to_dict(self) -> dict[str, Any]:
        return document_of(self)

    def to_json(self) -> bytes:
        return dumps(self.to_dict())

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], ref: DeltaRef, layout: str = DELTA_FORMAT) -> "DeltaManifest":
        """The manifest of the delta ``ref`` found in ``layout``; ``InvalidDeltaError`` naming
        ``ref``'s key and the problem otherwise (checked in this order: format, names, files,
        file paths, file entries, tombstones, then every other field's kind)."""
        what = ref.key
        if document.get("format") != layout:
            raise InvalidDeltaError(f"unknown manifest format {document.get('format')!r} "
                                    f"(expected {layout!r} in this layout)", what)
        if document.get("delta_id") != ref.delta_id or document.get("collection") != ref.collection:
            raise InvalidDeltaError("manifest names another delta or collection", what)
        files = _file_entries(document, what)
        deletes = document.get("delete_ids", [])
        if not isinstance(deletes, list) or not all(isinstance(i, str) and i for i in deletes):
            raise InvalidDeltaError("delete_ids is not a list of non-empty strings", what)
        reader = FieldReader(document, "manifest")
        try:
            hnsw = reader.mapping("hnsw") or {}
            return cls(
                format=layout, delta_id=ref.delta_id, collection=ref.collection,
                created_at=reader.text("created_at", ""), upsert_count=reader.number("upsert_count"),
                delete_ids=tuple(deletes), delete_count=reader.number("delete_count"),
                dimension=reader.number("dimension"), embedding_provider=reader.text("embedding_provider", ""),
                chromadb_version=reader.text("chromadb_version", ""), hnsw=hnsw, files=files,
                total_bytes=reader.number("total_bytes"),
                extra={k: v for k, v in document.items() if k not in _KNOWN})
        except IntegrityError as exc:
            raise InvalidDeltaError(str(exc), what) from None

    @classmethod
    def from_json(cls, body: bytes, ref: DeltaRef, layout: str, source: str) -> "DeltaManifest":
        """The manifest in ``body``, read from the object ``source`` (named if it is no JSON object)."""
        try:
            document = loads(body, source)
        except IntegrityError as exc:
            raise InvalidDeltaError(str(exc), ref.key) from None
        return cls.from_dict(document, ref, layout)


_KNOWN = frozenset(spec.name for spec in fields(DeltaManifest)) - {"extra"}


def _file_entries(document: Mapping[str, Any], what: str) -> tuple[FileEntry, ...]:
    """The listed files: every path safe first, then every entry well formed."""
    entries = document.get("files")
    if not isinstance(entries, list) or (not entries and document.get("upsert_count", 0)):
        raise InvalidDeltaError("manifest lists no files", what)
    for entry in entries:
        if isinstance(entry, dict):
            try:
                check_relative_path(str(entry.get("path", "")))
            except UnsafePathError as exc:
                raise InvalidDeltaError(str(exc), what) from None
    checked = []
    for entry in entries:
        try:
            checked.append(FileEntry.from_dict(entry))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise InvalidDeltaError(f"malformed file entry in manifest: {entry!r}", what) from None
    return tuple(checked)
