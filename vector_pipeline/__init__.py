"""vector_pipeline: vector search on S3 without an always-on database.

Producers write small chroma *deltas* to S3 and announce them on SQS; a compactor, under a
DynamoDB lock, merges them into immutable, versioned *snapshots* and moves one pointer per
collection by a conditional PUT; readers query the version the pointer names.

The public names below are imported on first use (PEP 562), so ``import vector_pipeline``
(and the command line's ``--help``) does not load chromadb or boto3.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "ChromaCompactor": ".compaction.compactor",
    "ChromaDBClient": ".chroma.client",
    "CompactionLock": ".io.lock",
    "CompactionResult": ".compaction.result",
    "CompactionStatus": ".compaction.result",
    "HnswSettings": ".config",
    "Settings": ".config",
    "open_snapshot": ".read.reader",
    "produce_embedding_delta": ".delta.produce",
    "query_snapshot": ".read.reader",
}

__all__ = [
    "ChromaCompactor",
    "ChromaDBClient",
    "CompactionLock",
    "CompactionResult",
    "CompactionStatus",
    "HnswSettings",
    "Settings",
    "open_snapshot",
    "produce_embedding_delta",
    "query_snapshot",
]

if TYPE_CHECKING:
    from .chroma.client import ChromaDBClient
    from .compaction.compactor import ChromaCompactor
    from .compaction.result import CompactionResult, CompactionStatus
    from .config import HnswSettings, Settings
    from .delta.produce import produce_embedding_delta
    from .io.lock import CompactionLock
    from .read.reader import open_snapshot, query_snapshot


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'vector_pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
