"""What a delta-mode directory holds, as chroma wrote it: the one description the delta
layer turns into a manifest. Data flows one way: the producer writes through the client,
the client describes what it wrote (``ChromaDBClient.close_and_describe``), the delta layer
uploads; nothing reads fields back from the client.

Keeps: a delta holds one collection (a write to another is refused, naming both); each
tombstone is recorded once, in the order deleted (inside one delta it wins over that delta's
own upsert, in either order: chroma deleted the record too); an empty delta is never
described.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable


@dataclass(frozen=True)
class WrittenDelta:
    """What a closed delta-mode directory holds, as chroma wrote it."""

    directory: Path
    collection: str
    upsert_count: int
    delete_ids: tuple[str, ...]
    dimension: int
    hnsw: dict[str, Any]
    chromadb_version: str


class DeltaLedger:
    """What a delta-mode client wrote so far besides its upserts' records."""

    def __init__(self) -> None:
        self.collection: str | None = None
        self.delete_ids: list[str] = []
        self.dimension = 0

    def admit(self, collection_name: str) -> None:
        """Take a write to ``collection_name``; ``ValueError`` if the delta holds another."""
        if self.collection not in (None, collection_name):
            raise ValueError(f"a delta holds one collection: {self.collection!r}, not {collection_name!r}")
        self.collection = collection_name

    def record_deletes(self, ids: Iterable[str]) -> None:
        """Record tombstones, each once, in the order first deleted."""
        known = set(self.delete_ids)
        for record_id in ids:
            if record_id not in known:
                known.add(record_id)
                self.delete_ids.append(record_id)

    def written_collection(self) -> str:
        """The delta's collection; ``ValueError`` if nothing was upserted or deleted."""
        if self.collection is None:
            raise ValueError("the delta is empty: nothing was upserted or deleted")
        return self.collection

    def describe(self, directory: Path, upsert_count: int, hnsw: dict[str, Any],
                 chromadb_version: str) -> WrittenDelta:
        return WrittenDelta(directory, self.written_collection(), upsert_count, tuple(self.delete_ids),
                            self.dimension, hnsw, chromadb_version)
