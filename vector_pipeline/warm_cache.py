"""The compactor's warm cache: the published version's files, kept between runs.

Invariant: ``<cache>/compactor/<bucket>/<collection>/<version>/`` holds exactly the bytes of
that version's manifest (its ``.manifest.json`` says which) or does not exist. A run moves
it into a private work dir before merging into it; only a publish (or a run that merged
nothing) puts a directory back, so a failed run costs a download, never a wrong base.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from .config import Settings
from .snapshot_store import SnapshotStore, is_local_copy_of, mark_local_copy

log = logging.getLogger(__name__)


class WarmCache:
    def __init__(self, settings: Settings, store: SnapshotStore) -> None:
        self.settings = settings
        self.store = store
        self.root = Path(settings.cache_dir) / "compactor" / store.bucket

    def new_workdir(self, collection: str) -> Path:
        self._drop_stale_workdirs(collection)
        workdir = self.root / collection / f".work-{uuid.uuid4().hex[:12]}"
        workdir.parent.mkdir(parents=True, exist_ok=True)
        return workdir

    def check_out(self, base_manifest: dict[str, Any], workdir: Path) -> int:
        """Move the base version into ``workdir`` (downloading it first unless cached);
        returns the bytes downloaded."""
        collection = str(base_manifest["collection"])
        cached = self.root / collection / str(base_manifest["version"])
        downloaded = 0
        if not is_local_copy_of(cached, base_manifest):
            self._drop_other_versions(collection)
            self.store.download_version(base_manifest, self.root)
            downloaded = int(base_manifest.get("total_bytes", 0))
        # The cache holds exactly the published bytes; the merge writes into a move of it.
        # If this run fails, the next one downloads again: correctness over a warm cache.
        cached.rename(workdir)
        return downloaded

    def give_back(self, workdir: Path, base_manifest: dict[str, Any] | None) -> None:
        """Nothing was merged: the work dir still holds the base version's exact bytes."""
        if base_manifest is None or not is_local_copy_of(workdir, base_manifest):
            shutil.rmtree(workdir, ignore_errors=True)
            return
        workdir.rename(self.root / str(base_manifest["collection"]) / str(base_manifest["version"]))

    def keep_published(self, local_dir: Path, manifest: dict[str, Any]) -> bool:
        """The work dir of a version just published becomes the cache; only a warm cache for
        the next run, so a failure here is logged, never raised (the publish stands)."""
        try:
            collection = str(manifest["collection"])
            self._drop_other_versions(collection)
            mark_local_copy(local_dir, manifest)
            local_dir.rename(self.root / collection / str(manifest["version"]))
            return True
        except OSError:
            log.warning("could not keep %s as the warm cache", manifest.get("version"), exc_info=True)
            return False

    def forget(self, collection: str) -> None:
        """Drop the collection's cache (its published version changed outside a compaction)."""
        shutil.rmtree(self.root / collection, ignore_errors=True)

    def _drop_stale_workdirs(self, collection: str) -> None:
        """Work dirs of runs that died or whose audit failed, older than a lock's lifetime."""
        root = self.root / collection
        if root.is_dir():
            horizon = time.time() - self.settings.lock_ttl_seconds
            for child in root.glob(".work-*"):
                if child.stat().st_mtime < horizon:
                    shutil.rmtree(child, ignore_errors=True)

    def _drop_other_versions(self, collection: str) -> None:
        root = self.root / collection
        if root.is_dir():
            for child in root.iterdir():
                if not child.name.startswith(".work-"):
                    shutil.rmtree(child, ignore_errors=True)
