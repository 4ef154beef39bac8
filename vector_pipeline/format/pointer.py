"""The collection pointer as a typed document: what ``snapshot/<c>/latest.json`` says.

Invariant: a stored pointer reads into a ``PointerDocument`` or raises ``IntegrityError``
naming the document and the field at fault; it names a well-formed version, and its
history lists, newest last, the versions it named before with when each was published and
replaced (at most ``HISTORY_LENGTH``; a pointer written before the history was kept has none,
which is not the same as an empty one). Fields this build does not know (the write id of
``io/conditional_writes.py``) are carried in ``extra``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from .manifest import dumps, loads
from .version_manifest import FieldReader, VersionManifest, manifest_key, version_number

POINTER_NAME = "latest.json"
HISTORY_LENGTH = 500  # publishes the pointer remembers (GC, rollback --as-of)


@dataclass(frozen=True)
class PublishSpan:
    """A version the pointer named before: when it was published (if known) and replaced."""

    version: str
    published_at: str | None
    replaced_at: str

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "published_at": self.published_at, "replaced_at": self.replaced_at}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "PublishSpan":
        published = values.get("published_at")
        return cls(str(values["version"]), None if published is None else str(published), str(values["replaced_at"]))


@dataclass(frozen=True)
class PointerDocument:
    collection: str
    version: str
    manifest_key: str
    vector_count: int = 0
    parent_version: str | None = None
    fence: int | None = None
    published_at: str | None = None
    history: tuple[PublishSpan, ...] | None = None  # None: written before the history was kept
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def publishing(cls, manifest: VersionManifest, now: datetime,
                   previous: "PointerDocument | None") -> "PointerDocument":
        """The pointer that names ``manifest``'s version from ``now``, remembering ``previous``."""
        return cls(manifest.collection, manifest.version, manifest_key(manifest.collection, manifest.version),
                   manifest.vector_count, manifest.parent_version, manifest.fence, now.isoformat(),
                   pointer_history(previous, now))

    def to_dict(self) -> dict[str, Any]:
        document = {**self.extra, "collection": self.collection, "version": self.version,
                    "manifest_key": self.manifest_key, "vector_count": self.vector_count,
                    "parent_version": self.parent_version, "fence": self.fence, "published_at": self.published_at}
        if self.history is not None:
            document["history"] = [span.to_dict() for span in self.history]
        return document

    def to_json(self) -> bytes:
        return dumps(self.to_dict())

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], what: str = "pointer") -> "PointerDocument":
        reader = FieldReader(document, what)
        version = reader.text("version")
        try:
            version_number(version)
        except ValueError as exc:
            raise reader.fail("version", str(exc)) from None
        known = {"collection", "version", "manifest_key", "vector_count", "parent_version", "fence",
                 "published_at", "history"}
        return cls(reader.text("collection"), version, reader.text("manifest_key"), reader.number("vector_count"),
                   reader.optional_text("parent_version"), reader.optional_number("fence"),
                   reader.optional_text("published_at"),
                   reader.items("history", PublishSpan.from_dict) if "history" in document else None,
                   {k: v for k, v in document.items() if k not in known})

    @classmethod
    def from_json(cls, body: bytes, what: str) -> "PointerDocument":
        return cls.from_dict(loads(body, what), what)


def pointer_history(previous: PointerDocument | None, replaced_at: datetime) -> tuple[PublishSpan, ...]:
    """The versions the pointer named before, newest last, each with when it was published
    and when it stopped being current; the last ``HISTORY_LENGTH`` publishes."""
    if previous is None:
        return ()
    entry = PublishSpan(previous.version, previous.published_at, replaced_at.isoformat())
    return (*(previous.history or ()), entry)[-HISTORY_LENGTH:]
