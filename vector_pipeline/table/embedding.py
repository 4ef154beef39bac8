"""The embedding a collection is bound to: the provider and dimension its published version
records, else what its catalog record names, else none yet (the first delta with vectors
decides). The compactor quarantines a delta of another embedding; the producer asks here
first so it can refuse such rows before anything is written. Reads only."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from .catalog import CollectionCatalog
from .snapshot_store import SnapshotStore


def collection_embedding(manifest: dict[str, Any] | None) -> tuple[str, int] | None:
    """(provider, dimension) a version fixes for its collection; None while it holds no
    vector yet (never published, or only tombstones), so the first upserting delta decides."""
    if manifest is None or not int(manifest.get("dimension", 0)):
        return None
    return str(manifest["embedding_provider"]), int(manifest["dimension"])


def recorded_embedding(settings: Settings, collection: str) -> tuple[str, int] | None:
    """What vectors of ``collection`` must be: the published version's embedding, else the
    catalog's, else None (anything goes until the first vectors are compacted)."""
    store = SnapshotStore(settings)
    pointer = store.read_pointer(collection)
    published = None if pointer is None else collection_embedding(store.read_manifest(collection, pointer.version))
    if published is not None:
        return published
    config = CollectionCatalog(settings).get(collection)
    return None if config is None else config.embedding
