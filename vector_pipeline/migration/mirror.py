"""Dual-write, phase 1: every delta the published snapshot applied reaches Pinecone too.

Invariant: the mirror never touches the S3 path — producers, compaction and readers do not
wait for Pinecone or fail with it. It reads what the published version applied (its merge
state: applied delta ids and the winning delta of each id) and replays the deltas it has
not mirrored yet, in delta-id order, from ``delta/`` or ``archive/``; only the winning
write of each id is sent (an id's live upsert, or its delete), so a delta that arrived late
cannot overwrite a newer value. ``migration/<collection>/mirror.json`` records the
mirrored delta ids and the watermark (the highest one) after each delta; a Pinecone outage
stops the run with the rest still pending — nothing is lost, the next run catches up.
"""

from __future__ import annotations

import enum
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ..format.version_manifest import VersionManifest
from ..io.aws import client
from ..config import Settings
from ..format.keys import DeltaRef, InvalidDeltaError, delta_id_time
from ..delta.reader import fetch_delta
from ..io.lock import CompactionLock, LockBusyError
from .pinecone_client import PineconeIndex, PineconeIndexError, PineconeRecord
from ..table.snapshot_store import SnapshotStore
from ..format.merge_state import MergeState
from .state import MigrationState, migration_key

log = logging.getLogger(__name__)


class MirrorOutcome(enum.Enum):
    CAUGHT_UP = "caught up"
    UP_TO_DATE = "up to date"  # nothing was pending
    BEHIND = "behind"  # Pinecone failed; the rest waits for the next run
    BUSY = "busy"  # another mirror of this collection is running
    NOTHING_PUBLISHED = "nothing published"


@dataclass
class MirrorResult:
    outcome: MirrorOutcome
    collection: str
    namespace: str
    version: str | None
    deltas_mirrored: int = 0
    upserts: int = 0
    deletes: int = 0
    lag_deltas: int = 0
    lag_seconds: float = 0.0
    watermark: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "outcome": self.outcome.value}


def mirror_key(collection: str) -> str:
    return migration_key(collection, "mirror.json")


def read_merge_state(settings: Settings, collection: str, manifest: VersionManifest) -> MergeState:
    """The version's merge state, read straight from S3 (no local copy of the version)."""
    return SnapshotStore(settings).read_merge_state(replace(manifest, collection=collection))


def live_winner(state: MergeState, record_id: str) -> str | None:
    """The delta whose upsert is the id's live value; None when the id is deleted or absent."""
    upsert, delete = state.upsert_winner.get(record_id, ""), state.delete_winner.get(record_id, "")
    return upsert if upsert and upsert > delete else None


def mirror(settings: Settings, collection: str, *, say: Callable[[str], None] = print,
           index: PineconeIndex | None = None) -> MirrorResult:
    """Replay the published version's unmirrored deltas into the collection's namespace.

    One mirror per collection at a time (a DynamoDB lock, like compaction's): two runs from
    different versions could otherwise send an older winner after a newer one."""
    try:
        with CompactionLock(f"pinecone-mirror-{collection}", settings=settings):
            return _mirror(settings, collection, say, index)
    except LockBusyError:
        say(f"mirror {collection}: another mirror holds the lock; nothing sent")
        return MirrorResult(MirrorOutcome.BUSY, collection, settings.pinecone_namespace(collection), None)


def _mirror(settings: Settings, collection: str, say: Callable[[str], None],
            index: PineconeIndex | None) -> MirrorResult:
    namespace = settings.pinecone_namespace(collection)
    store = SnapshotStore(settings)
    pointer = store.read_pointer(collection)
    if pointer is None:
        return MirrorResult(MirrorOutcome.NOTHING_PUBLISHED, collection, namespace, None)
    manifest = store.read_manifest(collection, pointer.version)
    merge_state = read_merge_state(settings, collection, manifest)
    documents = MigrationState(settings)
    key = mirror_key(collection)
    doc = documents.read(key) or {"namespace": namespace, "mirrored_delta_ids": [], "watermark": None}
    # Deltas the backfill wrote came from Pinecone: nothing to send back.
    backfilled = (documents.read(migration_key(collection, "backfill.json")) or {}).get("delta_ids", [])
    mirrored = set(doc["mirrored_delta_ids"]) | set(backfilled)
    pending = sorted(merge_state.applied_delta_ids - mirrored)
    result = MirrorResult(MirrorOutcome.UP_TO_DATE, collection, namespace, pointer.version,
                          watermark=doc.get("watermark"))
    if pending:
        result.outcome = MirrorOutcome.CAUGHT_UP
        index = index or PineconeIndex(settings)
        say(f"mirror {collection} → {index.host} namespace {namespace!r}: {len(pending)} deltas pending")
        try:
            index.check_dimension(manifest.dimension, collection)
            _replay(settings, index, namespace, merge_state, pending, mirrored, doc, result, documents, key, say)
        except (PineconeIndexError, FileNotFoundError, InvalidDeltaError) as exc:
            # Pinecone down, or an applied delta gone from delta/ and archive/: stop, loudly.
            result.outcome, result.error = MirrorOutcome.BEHIND, str(exc)
            log.warning("mirror of %s is behind: %s", collection, exc)
    rest = sorted(merge_state.applied_delta_ids - mirrored)
    result.lag_deltas = len(rest)
    result.lag_seconds = round(time.time() - delta_id_time(rest[0]).timestamp(), 1) if rest else 0.0
    doc.update(version=pointer.version, lag_deltas=result.lag_deltas, last_error=result.error,
               last_run_at=datetime.now(timezone.utc).isoformat(), mirrored_delta_ids=sorted(mirrored))
    documents.write(key, doc)
    say(f"mirror {collection}: {result.outcome.value}; {result.deltas_mirrored} deltas ({result.upserts} upserts, "
        f"{result.deletes} deletes) sent; lag {result.lag_deltas} deltas"
        + (f" ({result.error})" if result.error else ""))
    return result


def _replay(settings: Settings, index: PineconeIndex, namespace: str, merge_state: MergeState, pending: list[str],
            mirrored: set[str], doc: dict[str, Any], result: MirrorResult, documents: MigrationState, key: str,
            say: Callable[[str], None]) -> None:
    s3 = client("s3", settings)
    scratch = Path(tempfile.mkdtemp(prefix="vp-mirror-", dir=settings.scratch_dir))
    try:
        for delta_id in pending:
            loaded = fetch_delta(s3, settings.vectors_bucket, DeltaRef(result.collection, delta_id), scratch / delta_id)
            upserts = []
            for position, record_id in enumerate(loaded.ids):
                if live_winner(merge_state, record_id) != delta_id:
                    continue  # a later delta wrote this id: its value (or delete) is the one to send
                metadata = dict(loaded.metadatas[position] or {})
                if loaded.documents[position] is not None:
                    metadata[settings.pinecone_document_field] = loaded.documents[position]
                upserts.append(PineconeRecord(record_id, loaded.embeddings[position].tolist(), metadata))
            deletes = [i for i in loaded.delete_ids if (live_winner(merge_state, i) or "") < delta_id]
            index.upsert(namespace, upserts)
            index.delete(namespace, deletes)
            shutil.rmtree(scratch / delta_id, ignore_errors=True)
            mirrored.add(delta_id)
            doc["watermark"] = result.watermark = max(doc.get("watermark") or "", delta_id)
            doc["mirrored_delta_ids"] = sorted(mirrored)
            documents.write(key, doc)
            result.deltas_mirrored += 1
            result.upserts += len(upserts)
            result.deletes += len(deletes)
            say(f"  {delta_id}: {len(upserts)} upserts, {len(deletes)} deletes")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def mirror_lag(settings: Settings, collection: str, published_version: str | None) -> dict[str, Any] | None:
    """What ``status`` shows of the mirror: None when the collection was never mirrored."""
    doc = MigrationState(settings).read(mirror_key(collection))
    if doc is None:
        return None
    return {"watermark": doc.get("watermark"), "mirrored_version": doc.get("version"),
            "lag_deltas": doc.get("lag_deltas", 0), "behind_published": doc.get("version") != published_version,
            "last_run_at": doc.get("last_run_at"), "last_error": doc.get("last_error")}
