"""A candidate between the write step and the publish step, as plain JSON.

Invariant: the handoff holds no local path and no object: the candidate's version is named
by its manifest key in S3 (immutable once written), beside the pointer ETag the writer read
and what the acknowledge step needs (deltas applied, already applied, quarantined). So the
publish step can run in another process, container or machine than the write step, and a
publish with a stale ETag still loses the conditional PUT (nothing visible changes).
"""

from __future__ import annotations

from typing import Any

from ..format.keys import parse_delta_key
from ..table.snapshot_store import SnapshotStore
from ..format import version_manifest
from .version_writer import Candidate

HANDOFF_FORMAT = "vector_pipeline.candidate/1"


def manifest_key(candidate: Candidate) -> str | None:
    """Where the candidate's manifest lies (None: nothing was written)."""
    if candidate.version is None:
        return None
    return version_manifest.manifest_key(candidate.collection, candidate.version)


def to_handoff(candidate: Candidate) -> dict[str, Any]:
    """The JSON the publish step rebuilds the candidate from (``from_handoff``)."""
    return {
        "format": HANDOFF_FORMAT,
        "collection": candidate.collection,
        "manifest_key": manifest_key(candidate),
        "base_version": candidate.base_version,
        "pointer_etag": candidate.pointer_etag,
        "applied": [r.key for r in candidate.applied],
        "already_applied": [r.key for r in candidate.already_applied],
        "missing": list(candidate.missing),
        "quarantined": dict(candidate.quarantined),
        "base_vector_count": candidate.base_vector_count,
        "expected_vector_count": candidate.expected_vector_count,
        "recall_at_k": candidate.recall_at_k,
    }


def from_handoff(store: SnapshotStore, handoff: dict[str, Any]) -> Candidate:
    """The candidate again, its manifest read from S3; ``pointer_document`` is the pointer
    as it is now if it still carries the writer's ETag (else the publish will conflict)."""
    if handoff.get("format") != HANDOFF_FORMAT:
        raise ValueError(f"not a candidate handoff: format {handoff.get('format')!r}")
    collection = str(handoff["collection"])
    manifest = None
    if handoff.get("manifest_key"):
        version = str(handoff["manifest_key"]).rstrip("/").split("/")[-2]
        manifest = store.read_manifest(collection, version)
    pointer = store.read_pointer(collection)
    current = pointer.document if pointer is not None and pointer.etag == handoff.get("pointer_etag") else None
    return Candidate(
        collection, handoff.get("base_version"), handoff.get("pointer_etag"), manifest, None,
        pointer_document=current,
        applied=[parse_delta_key(k) for k in handoff.get("applied", [])],
        already_applied=[parse_delta_key(k) for k in handoff.get("already_applied", [])],
        missing=list(handoff.get("missing", [])), quarantined=dict(handoff.get("quarantined", {})),
        base_vector_count=int(handoff.get("base_vector_count", 0)),
        expected_vector_count=int(handoff.get("expected_vector_count", 0)),
        recall_at_k=handoff.get("recall_at_k"))
