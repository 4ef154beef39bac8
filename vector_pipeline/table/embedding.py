"""The embedding a collection is bound to: the provider and dimension its published version
records, else what its catalog record names, else none yet (the first delta with vectors
decides). The compactor quarantines a delta of another embedding; the producer asks here
first so it can refuse such rows before anything is written. After a publish the catalog
record takes the embedding the first vectors established (its only write)."""

from __future__ import annotations

import logging
from ..config import Settings
from ..format.version_manifest import VersionManifest
from .catalog import CatalogConflictError, CollectionCatalog, UnknownCollectionError
from .snapshot_store import SnapshotStore


log = logging.getLogger(__name__)


def collection_embedding(manifest: VersionManifest | None) -> tuple[str, int] | None:
    """(provider, dimension) a version fixes for its collection; None while it holds no
    vector yet (never published, or only tombstones), so the first upserting delta decides."""
    if manifest is None or not manifest.dimension:
        return None
    return manifest.embedding_provider, manifest.dimension


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


def record_first_embedding(catalog: CollectionCatalog, collection: str, manifest: VersionManifest) -> None:
    """After a publish: a collection created without an embedding (auto-created, or
    ``collections create`` with none) records the one its first vectors established, so
    ``collections show`` and the producer's check see it. Best effort: the published
    version's manifest stays the authority."""
    established = collection_embedding(manifest)
    config = catalog.get(collection)
    if established is None or config is None or config.embedding is not None:
        return
    try:
        catalog.update(collection, embedding_provider=established[0], dimension=established[1])
    except (CatalogConflictError, UnknownCollectionError, ValueError) as exc:
        log.warning("collection %s: could not record its embedding %s (%d-d): %s", collection, *established, exc)
