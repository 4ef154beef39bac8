"""vector_pipeline: vector search on S3 without an always-on database.

Producers write small chroma *deltas* to S3 and announce them on SQS; a compactor, under a
DynamoDB lock, merges them into immutable, versioned *snapshots* and moves one pointer per
collection by a conditional PUT; readers query the version the pointer names.
"""

from .chroma_client import ChromaDBClient
from .compactor import ChromaCompactor, CompactionResult, CompactionStatus
from .config import HnswSettings, Settings
from .delta import produce_embedding_delta
from .lock import CompactionLock
from .reader import open_snapshot, query_snapshot

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
