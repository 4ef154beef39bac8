"""The audit between write and publish: is a candidate version what its merge intended?

Reads the candidate back from S3 (every file checked against the manifest's sha256),
opens it read-only and compares its vector count with the manifest, with the prior
published count plus the net effect of the applied deltas, and with the bound the deltas'
sizes put on any change. A failing audit leaves readers on the previous version.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .version_writer import Candidate
from ..config import Settings
from ..format.manifest import IntegrityError, UnsafePathError
from ..chroma.segments import open_version
from ..table.snapshot_store import SnapshotStore


@dataclass
class AuditReport:
    passed: bool
    checks: dict[str, bool] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    problem: str = ""


def audit_candidate(settings: Settings, candidate: Candidate) -> AuditReport:
    if candidate.manifest is None:
        return AuditReport(True, facts={"note": "no new version: nothing pending"})
    manifest = candidate.manifest
    try:
        local = audited_copy(settings, candidate)
    except (IntegrityError, UnsafePathError) as exc:
        return AuditReport(False, {"files_match_manifest": False}, problem=f"candidate files: {exc}")
    store = SnapshotStore(settings)
    with open_version(local, manifest, settings) as db:
        count = db.count(candidate.collection)
    parent = manifest.parent_vector_count
    prior = _published_count(store, candidate)
    change_bound = manifest.delta_upserts + manifest.delta_deletes
    checks = {
        "files_match_manifest": True,
        "count_matches_manifest": count == manifest.vector_count,
        "count_is_prior_plus_net_delta_effect": count == candidate.expected_vector_count,
        "parent_count_matches_prior_snapshot": bool(manifest.rebuilt_from_scratch or manifest.rebuilt_over)
        or parent == prior,
        "change_within_delta_sizes": abs(count - parent) <= change_bound,
    }
    facts = {"vector_count": count, "manifest_vector_count": manifest.vector_count,
             "expected_vector_count": candidate.expected_vector_count, "prior_vector_count": prior,
             "net_change": count - parent, "delta_records": change_bound}
    failed = [name for name, ok in checks.items() if not ok]
    return AuditReport(not failed, {k: bool(v) for k, v in checks.items()}, facts,
                       problem=f"failed: {', '.join(failed)}" if failed else "")


def audited_copy(settings: Settings, candidate: Candidate) -> Path:
    """The candidate read back whole from S3, every file checked (downloaded once: the
    recall check and the publish step's re-audit use the same copy)."""
    if candidate.manifest is None:
        raise ValueError("no candidate version to read back")
    root = Path(settings.cache_dir) / "audit"
    _drop_other_audited_versions(root / candidate.collection, keep=candidate.manifest.version)
    return SnapshotStore(settings).download_version(candidate.manifest, root)


def _drop_other_audited_versions(collection_root: Path, keep: str) -> None:
    """One audited copy per collection: the publish step re-audits the same candidate."""
    if collection_root.is_dir():
        for child in collection_root.iterdir():
            if child.name != keep:
                shutil.rmtree(child, ignore_errors=True)


def _published_count(store: SnapshotStore, candidate: Candidate) -> int:
    if candidate.base_version is None:
        return 0
    return store.read_manifest(candidate.collection, candidate.base_version).vector_count
