"""A delta in memory, as the compactor and readers use it: its manifest and its records.

Made only by ``delta.reader`` (after every check passed) or by tests; the pure merge
(``format/merge.py``) takes these, so it depends on no reader, client or server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .delta_manifest import DeltaManifest
from .keys import DELTA_PREFIX, DeltaRef


@dataclass
class LoadedDelta:
    """A downloaded, verified delta: its manifest and its records."""

    ref: DeltaRef
    manifest: DeltaManifest
    ids: list[str] = field(default_factory=list)
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))  # float32, a row per id
    documents: list[str | None] = field(default_factory=list)
    metadatas: list[dict[str, Any] | None] = field(default_factory=list)
    found_under: str = DELTA_PREFIX  # delta/ (pending) or archive/ (a rebuild reads it there)
    fetched_bytes: int = 0  # what reading it cost: its pack, or (format 1) its manifest and files

    @property
    def delete_ids(self) -> list[str]:
        return list(self.manifest.delete_ids)

    @property
    def dimension(self) -> int:
        return self.manifest.dimension

    @property
    def embedding_provider(self) -> str:
        return self.manifest.embedding_provider
