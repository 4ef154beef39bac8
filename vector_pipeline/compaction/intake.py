"""Pending-delta intake: which deltas a compaction applies, read and checked.

Invariant: a delta reaches the merge only when it is complete (its packed object, or a
format-1 manifest, exists), verified
(checksums, records), of the run's collection and of the collection's embedding (provider
and dimension), and not applied yet. Every other delta is classified, never dropped:
already applied (acknowledged and archived after publish), missing (left for a later run
until it is older than the grace, then poison), or poison (quarantined with its reason after
publish) — so a bad delta never blocks the good ones.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .. import progress
from ..table.catalog import CollectionCatalog, UnknownCollectionError
from ..config import Settings
from ..delta.archive import quarantine_delta
from ..format.keys import ARCHIVE_PREFIX, DELTA_PREFIX, DeltaRef, InvalidDeltaError, delta_id_time, parse_delta_key
from ..delta.reader import fetch_delta, list_deltas
from ..format.loaded_delta import LoadedDelta
from ..chroma.embeddings import EmbeddingMismatchError, check_same_embedding
from ..table.embedding import collection_embedding
from ..faults import checkpoint
from ..table.snapshot_store import SnapshotStore
from ..format.merge_state import MergeState
from ..format.version_manifest import VersionManifest

log = logging.getLogger(__name__)

FETCH_WORKERS = 6


@dataclass
class Intake:
    """The deltas one run was given, sorted into what the merge applies and what it does not."""

    loaded: list[LoadedDelta] = field(default_factory=list)
    already_applied: list[DeltaRef] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)
    bytes_downloaded: int = 0


class DeltaIntake:
    """Lists, reads and checks the deltas of one bucket."""

    def __init__(self, settings: Settings, store: SnapshotStore, catalog: CollectionCatalog) -> None:
        self.settings = settings
        self.store = store
        self.catalog = catalog
        self.s3 = store.s3
        # Past this age a delta without manifest is poison, not an upload in progress.
        self.missing_manifest_grace_seconds = 4 * settings.lock_ttl_seconds

    def pending_keys(self, collection: str | None = None) -> list[str]:
        """Complete deltas under ``delta/`` (``list_deltas``): what reconciliation finds."""
        prefix = DELTA_PREFIX + (f"{collection}/" if collection else "")
        return sorted({ref.key for ref in list_deltas(self.s3, self.store.bucket, prefix)})

    def take(self, collection: str, delta_keys: Sequence[str], state: MergeState,
             base_manifest: VersionManifest | None, configured: tuple[str, int] | None = None) -> Intake:
        """Read the deltas of ``delta_keys`` not yet in ``state``, in ``delta_id`` order;
        ``configured`` is the catalog's embedding, for a collection with no vector yet."""
        intake = Intake()
        refs = self._sorted_refs(intake, collection, delta_keys)
        intake.already_applied = [r for r in refs if r.delta_id in state.applied_delta_ids]
        pending = [r for r in refs if r.delta_id not in state.applied_delta_ids]
        scratch = Path(tempfile.mkdtemp(prefix="vp-fetch-", dir=self.settings.scratch_dir))
        try:  # deltas are read once and dropped: memory-backed scratch when there is one
            # Small deltas are latency-bound: fetch several at once, then check them in id order.
            with progress.stage(f"{collection}: fetch deltas", len(pending), "deltas") as bar, \
                    ThreadPoolExecutor(max_workers=FETCH_WORKERS) as pool:
                fetched = list(bar.track(pool.map(lambda r: self._load_one(intake, r, scratch / r.delta_id), pending)))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        expected = collection_embedding(base_manifest) or configured
        for ref, delta in zip(pending, fetched):
            if delta is None:
                continue
            try:
                if expected is None and delta.ids:
                    expected = (delta.embedding_provider, delta.dimension)
                elif expected is not None and delta.ids:
                    check_same_embedding(ref.key, delta.embedding_provider, delta.dimension, *expected)
            except EmbeddingMismatchError as exc:
                intake.quarantined[ref.key] = str(exc)
                continue
            intake.loaded.append(delta)
        return intake

    def _sorted_refs(self, intake: Intake, collection: str, delta_keys: Sequence[str]) -> list[DeltaRef]:
        refs: dict[str, DeltaRef] = {}
        for key in delta_keys:
            try:
                ref = parse_delta_key(key, prefixes=(DELTA_PREFIX, ARCHIVE_PREFIX))
            except InvalidDeltaError as exc:
                intake.quarantined[str(key)] = exc.reason
                continue
            if ref.collection != collection:
                intake.quarantined[str(key)] = f"delta of collection {ref.collection!r}, not {collection!r}"
                continue
            refs[ref.delta_id] = ref
        return [refs[delta_id] for delta_id in sorted(refs)]

    def _load_one(self, intake: Intake, ref: DeltaRef, scratch: Path) -> LoadedDelta | None:
        try:
            delta = fetch_delta(self.s3, self.store.bucket, ref, scratch)
        except InvalidDeltaError as exc:
            intake.quarantined[ref.key] = exc.reason
            return None
        except FileNotFoundError:
            age = time.time() - delta_id_time(ref.delta_id).timestamp()
            if age > self.missing_manifest_grace_seconds:
                # A producer that died mid-upload, or a message for a delta that never existed.
                intake.quarantined[ref.key] = f"no manifest {age:.0f}s after the delta was created"
            else:
                log.warning("delta %s has no manifest yet (%.0fs old): left for later", ref.key, age)
                intake.missing.append(ref.key)
            return None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)  # its records are in memory now
        intake.bytes_downloaded += delta.fetched_bytes
        checkpoint(self.settings, "mid_download")
        return delta

    def validate(self, ref: DeltaRef) -> LoadedDelta:
        """Download and check one delta against the published version; quarantine it if poison.

        Raises ``InvalidDeltaError`` (after quarantining) or ``FileNotFoundError``.
        """
        scratch = Path(tempfile.mkdtemp(prefix="vp-validate-"))
        try:
            configured = self.catalog.require(ref.collection).embedding
            pointer = self.store.read_pointer(ref.collection)
            delta = fetch_delta(self.s3, self.store.bucket, ref, scratch)
            expected = collection_embedding(
                None if pointer is None else self.store.read_manifest(ref.collection, pointer.version)) or configured
            if expected is not None and delta.ids:
                check_same_embedding(ref.key, delta.embedding_provider, delta.dimension, *expected)
            return delta
        except (EmbeddingMismatchError, UnknownCollectionError) as exc:
            quarantine_delta(self.s3, self.settings, ref.key, str(exc))
            raise InvalidDeltaError(str(exc), ref.key) from None
        except InvalidDeltaError as exc:
            if not exc.reason.startswith("quarantined earlier"):
                quarantine_delta(self.s3, self.settings, ref.key, exc.reason)
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
