"""The compactor's warm cache: the files of the published version it holds, kept between runs.

Invariant: ``<cache>/compactor/<bucket>/<collection>/<version>/`` holds, for every file its
record (``.manifest.json``: the version and the entries it holds) lists, exactly the bytes
of that version's manifest entry — any subset of the version, never other bytes — or does
not exist. A run moves it into a private work dir (a ``Checkout``) and fetches only the
files its merge reads: an append needs the merge state's parts and the masks, a fold the
segments it folds, FOLD_ALL the base too; segments the run keeps are referenced, never
downloaded. Only a publish (or a run that merged nothing) puts a directory back, recording
the files it holds of that version; a failed run costs a download, never a wrong base.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ..format import local_copy
from ..format import manifest as mf
from ..config import Settings
from ..format.version_manifest import VersionManifest
from ..table.snapshot_store import SnapshotStore

log = logging.getLogger(__name__)


@dataclass
class Checkout:
    """One run's private work dir and the files of its base version it holds."""

    path: Path
    collection: str
    base: VersionManifest | None
    held: dict[str, str] = field(default_factory=dict)  # path -> sha256, each checked
    downloaded: int = 0  # bytes this run downloaded of the base

    def file(self, path: str) -> Path:
        return mf.safe_join(self.path, path)


def files_under(manifest: VersionManifest, directory: str) -> list[str]:
    return [e.path for e in manifest.files_under(directory.rstrip("/") + "/")]


def below(path: str, roots: Iterable[str]) -> bool:
    """Whether ``path`` is one of ``roots`` or inside one of them."""
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def held_files(local_dir: Path, manifest: VersionManifest) -> dict[str, str]:
    """The files of ``manifest``'s version that ``local_dir``'s record says it holds
    (entries that differ from the manifest's are not held)."""
    try:
        record = json.loads((local_dir / local_copy.LOCAL_MANIFEST).read_bytes())
    except (OSError, ValueError):
        return {}
    if record.get("version") != manifest.version:
        return {}
    wanted = {(e.path, e.size, e.sha256) for e in manifest.files}
    return {str(e["path"]): str(e["sha256"]) for e in record.get("files", [])
            if (e.get("path"), e.get("size"), e.get("sha256")) in wanted}


def record_held(local_dir: Path, manifest: VersionManifest, held: Iterable[str]) -> None:
    """Record which files of ``manifest``'s version ``local_dir`` holds (their bytes must be
    the manifest's: checked at download, or hashed when the version was uploaded)."""
    paths = set(held)
    entries = [e.as_dict() for e in manifest.files if e.path in paths]
    mf.write_json_atomically(local_dir / local_copy.LOCAL_MANIFEST, {"collection": manifest.collection,
                                                                     "version": manifest.version, "files": entries})


class WarmCache:
    def __init__(self, settings: Settings, store: SnapshotStore) -> None:
        self.settings = settings
        self.store = store
        self.root = Path(settings.cache_dir) / "compactor" / store.bucket

    def check_out(self, collection: str, base_manifest: VersionManifest | None) -> Checkout:
        """A private work dir holding what the cache held of the base version (nothing is
        downloaded here: ``fetch`` what the merge reads)."""
        self._drop_stale_workdirs(collection)
        workdir = self.root / collection / f".work-{uuid.uuid4().hex[:12]}"
        workdir.parent.mkdir(parents=True, exist_ok=True)
        cached = None if base_manifest is None else self.root / collection / base_manifest.version
        held = {} if cached is None or base_manifest is None else held_files(cached, base_manifest)
        if cached is not None and held:
            cached.rename(workdir)
        else:
            self._drop_other_versions(collection)
            workdir.mkdir()
        return Checkout(workdir, collection, base_manifest, held)

    def fetch(self, checkout: Checkout, paths: Iterable[str]) -> int:
        """Make the work dir hold the base's files at ``paths``, downloading (and checking)
        those it lacks; returns the bytes downloaded."""
        missing = sorted({p for p in paths if p not in checkout.held})
        if not missing or checkout.base is None:
            return 0
        received = self.store.download_entries(checkout.base, missing, checkout.path)
        sha = {e.path: e.sha256 for e in checkout.base.files}
        checkout.held.update((p, sha[p]) for p in missing)
        checkout.downloaded += received
        return received

    def record_uploaded(self, checkout: Checkout, manifest: VersionManifest, untouched: Sequence[str]) -> None:
        """After the upload of ``manifest``'s version from the work dir, record what it holds:
        every file the upload described (hashed then) and the reused files it held."""
        held = [e.path for e in manifest.files if not below(e.path, untouched) or checkout.held.get(e.path) == e.sha256]
        record_held(checkout.path, manifest, held)

    def give_back(self, checkout: Checkout) -> None:
        """Nothing was merged: the work dir still holds the base's files it held."""
        if checkout.base is None or not checkout.held:
            shutil.rmtree(checkout.path, ignore_errors=True)
            return
        try:
            record_held(checkout.path, checkout.base, checkout.held)
            checkout.path.rename(self.root / checkout.collection / checkout.base.version)
        except OSError:
            shutil.rmtree(checkout.path, ignore_errors=True)

    def keep_published(self, local_dir: Path, manifest: VersionManifest) -> bool:
        """The work dir of a version just published (its record written by the writer)
        becomes the cache; only a warm cache for the next run, so a failure here is logged,
        never raised (the publish stands)."""
        try:
            self._drop_other_versions(manifest.collection)
            local_dir.rename(self.root / manifest.collection / manifest.version)
            return True
        except OSError:
            log.warning("could not keep %s as the warm cache", manifest.version, exc_info=True)
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
