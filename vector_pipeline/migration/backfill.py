"""Backfill: every vector of a Pinecone namespace into deltas of a collection, resumable.

Invariant: each page of the namespace's id listing becomes exactly one delta, whatever
crashes. Before a page's delta is written, the checkpoint names the page (its list token)
and the delta id it will get; after, the checkpoint moves to the next page. A run that
finds a page half-done reuses that delta id: if the delta is complete (manifest present,
in ``delta/`` or ``archive/``) it is not written again, otherwise it is rewritten under the
same id — so a resumed backfill duplicates nothing. Pinecone's listing must not change
meanwhile (backfill before dual-writes start, or re-run ``--restart`` after).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import faults
from ..io.aws import client
from ..config import Settings
from ..delta.produce import produce_embedding_delta
from ..format.keys import ARCHIVE_PREFIX, DELTA_PREFIX, DeltaRef, new_delta_id
from ..delta.reader import read_delta_manifest
from .pinecone_client import PineconeIndex, PineconeRecord
from ..table.snapshot_store import SnapshotStore
from .state import MigrationState, migration_key

log = logging.getLogger(__name__)

DEFAULT_BATCH = 100


class BackfillOutcome(enum.Enum):
    COMPLETE = "complete"
    ALREADY_COMPLETE = "already complete"


@dataclass
class BackfillResult:
    outcome: BackfillOutcome
    collection: str
    namespace: str
    pages: int
    vectors: int
    delta_ids: list[str] = field(default_factory=list)
    resumed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "collection": self.collection, "namespace": self.namespace,
                "pages": self.pages, "vectors": self.vectors, "deltas": len(self.delta_ids), "resumed": self.resumed}


def checkpoint_key(collection: str) -> str:
    return migration_key(collection, "backfill.json")


def snapshot_dimension(settings: Settings, collection: str) -> int:
    """The published snapshot's dimension (0 before the first publish)."""
    store = SnapshotStore(settings)
    pointer = store.read_pointer(collection)
    return store.read_manifest(collection, pointer.version).dimension if pointer else 0


def records_to_delta_input(records: list[PineconeRecord], document_field: str) -> dict[str, Any]:
    """ids, embeddings, documents (popped from the metadata field carrying them), metadatas."""
    documents: list[str | None] = []
    metadatas: list[dict[str, Any] | None] = []
    for record in records:
        metadata = {k: v for k, v in record.metadata.items() if v is not None}
        document = metadata.pop(document_field, None)
        documents.append(document if isinstance(document, str) else None)
        metadatas.append(metadata or None)
    return {"ids": [r.id for r in records], "embeddings": [r.values for r in records],
            "documents": documents if any(d is not None for d in documents) else None, "metadatas": metadatas}


def backfill(settings: Settings, collection: str, batch: int = DEFAULT_BATCH, *, restart: bool = False,
             say: Callable[[str], None] = print, index: PineconeIndex | None = None) -> BackfillResult:
    """Copy the collection's namespace into deltas, continuing from the bucket's checkpoint."""
    if batch < 1 or batch > 1000:
        raise ValueError(f"--batch must be between 1 and 1000 (Pinecone's list page), not {batch}")
    namespace = settings.pinecone_namespace(collection)
    index = index or PineconeIndex(settings)
    state_store = MigrationState(settings)
    key = checkpoint_key(collection)
    state = None if restart else state_store.read(key)
    resumed = state is not None and not state.get("complete")
    if state is not None and state.get("namespace") != namespace:
        raise ValueError(f"s3://{settings.vectors_bucket}/{key} is a backfill of namespace {state.get('namespace')!r}, "
                         f"not {namespace!r}: pass --restart to start over")
    if state is not None and state.get("complete"):
        say(f"backfill of {collection} from namespace {namespace!r} already complete "
            f"({state['vectors']} vectors in {len(state['delta_ids'])} deltas); --restart copies again")
        return BackfillResult(BackfillOutcome.ALREADY_COMPLETE, collection, namespace, state["pages"],
                              state["vectors"], list(state["delta_ids"]))
    state = state or {"namespace": namespace, "next_token": None, "pages": 0, "vectors": 0, "delta_ids": [],
                      "writing": None, "complete": False}
    stats = index.stats()
    index.check_dimension(snapshot_dimension(settings, collection), collection)
    total = int(stats["namespaces"].get(namespace, 0))
    say(f"backfill {namespace!r} ({total} vectors, dimension {stats['dimension']}) → {collection}"
        + (f": resuming after page {state['pages']} ({state['vectors']} vectors)" if resumed else ""))
    s3 = client("s3", settings)
    while True:
        token = state["next_token"]
        ids, next_token = index.list_page(namespace, batch, token)
        if ids:
            writing = state.get("writing")
            if not (writing and writing["token"] == token):
                writing = {"token": token, "delta_id": new_delta_id()}
                state["writing"] = writing
                state_store.write(key, state)  # the page and its delta id, before the delta
            ref = DeltaRef(collection, writing["delta_id"])
            count = _write_page(settings, s3, index, namespace, ids, ref)
            faults.checkpoint(settings, f"backfill_page_{state['pages'] + 1}")
            state.update(pages=state["pages"] + 1, vectors=state["vectors"] + count, writing=None,
                         delta_ids=[*state["delta_ids"], ref.delta_id] if count else state["delta_ids"])
        state["next_token"] = next_token
        state["complete"] = not next_token
        state_store.write(key, state)
        if ids:
            say(f"  page {state['pages']}: {count} vectors → delta {ref.delta_id} "
                f"({state['vectors']}/{total}, {100 * state['vectors'] / max(total, 1):.0f}%)")
        if not next_token:
            break
    say(f"backfill done: {state['vectors']} vectors in {len(state['delta_ids'])} deltas; "
        f"run `vector-pipeline compact --collection {collection}` (or let Dagster) to publish them")
    return BackfillResult(BackfillOutcome.COMPLETE, collection, namespace, state["pages"], state["vectors"],
                          list(state["delta_ids"]), resumed)


def _write_page(settings: Settings, s3: Any, index: PineconeIndex, namespace: str, ids: list[str],
                ref: DeltaRef) -> int:
    """The page's delta under ``ref`` unless a complete one exists; vectors it holds."""
    for prefix in (DELTA_PREFIX, ARCHIVE_PREFIX):
        try:
            manifest = read_delta_manifest(s3, settings.vectors_bucket, ref, prefix)
        except FileNotFoundError:
            continue
        log.info("delta %s of this page is already complete: not written again", ref.delta_id)
        return manifest.upsert_count
    records = index.fetch(namespace, ids)
    if not records:
        return 0
    delta_input = records_to_delta_input(records, settings.pinecone_document_field)
    produce_embedding_delta(**delta_input, collection_name=ref.collection, settings=settings, delta_id=ref.delta_id)
    return len(records)
