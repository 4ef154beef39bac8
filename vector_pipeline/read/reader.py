"""The public read path: ``query_snapshot`` and ``open_snapshot``, over one reader per collection.

Invariant: a process keeps one ``SnapshotReader`` (``snapshot_reader.py``, which states what
a reader answers from) per (cache root, collection, bucket, endpoint, access key): every
query and client of the same collection and store shares its open version and its local
copy, and a reader reads with the access of the settings that made it.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Sequence

from ..chroma.client import ChromaDBClient
from ..config import Settings
from ..table.consistency import ReadConsistency
from .snapshot_reader import SnapshotReader


_readers: dict[tuple[str, str, str, str | None, str | None], SnapshotReader] = {}
_readers_lock = threading.Lock()


def snapshot_reader(collection_name: str = "words", snapshot_path: str | Path | None = None,
                    settings: Settings | None = None) -> SnapshotReader:
    """The process's reader of ``collection_name`` (the one query_snapshot and open_snapshot use)."""
    settings = Settings.resolve(settings)
    # Per credentials too: a reader reads with the access of the settings that made it.
    key = (collection_name, str(Path(snapshot_path).resolve()) if snapshot_path else "",
           settings.vectors_bucket, settings.endpoint_url_for("s3"), settings.aws_access_key_id)
    with _readers_lock:
        if key not in _readers:
            _readers[key] = SnapshotReader(collection_name, snapshot_path, settings)
        return _readers[key]


def query_snapshot(query_texts: Sequence[str] | None = None,
                   query_embeddings: Sequence[Sequence[float]] | None = None,
                   n_results: int = 10, where: dict[str, Any] | None = None,
                   collection_name: str = "words", snapshot_path: str | Path | None = None,
                   *, include: Sequence[str] | None = None, include_pending: bool = False,
                   consistency: ReadConsistency | str = ReadConsistency.BOUNDED,
                   settings: Settings | None = None) -> dict[str, Any]:
    """Query the published version of ``collection_name``; a chroma-style result dict.

    ``include``: as chroma's ``query`` takes it (documents, metadatas, distances,
    embeddings; default the first three). ``consistency``: ``"bounded"`` (default) answers
    from a version the pointer named at most ``READER_POINTER_TTL_SECONDS`` ago (plus up to
    ``FOLLOWER_GRACE_SECONDS``, 5 s, while the reader fetches a newer one in the background)
    — a version this process published itself is seen at once —; ``"strong"`` reads the
    pointer on every call.
    ``include_pending=True`` also searches the deltas not compacted yet (exactly, with
    last-writer-wins and deletes applied over the version's answer), so a write is visible
    within about ``READER_POINTER_TTL_SECONDS`` of its producer returning.
    """
    if query_texts is None and query_embeddings is None:
        raise ValueError("query_snapshot needs query_texts or query_embeddings")
    return snapshot_reader(collection_name, snapshot_path, settings).query(
        query_texts, query_embeddings, n_results, where, include, include_pending=include_pending,
        consistency=consistency)


def open_snapshot(collection_name: str = "words", snapshot_path: str | Path | None = None,
                  *, consistency: ReadConsistency | str = ReadConsistency.BOUNDED,
                  settings: Settings | None = None) -> ChromaDBClient:
    """The published version as a read-mode client (the same local copy queries use).

    Staleness as for ``query_snapshot``: ``"bounded"`` by ``READER_POINTER_TTL_SECONDS``
    (+ up to 5 s while a newer version is fetched; this process's own publishes at once),
    ``"strong"`` none. The client stays valid
    until a later call of this process follows the pointer twice more; call again for a
    fresh view rather than holding it across publishes.
    """
    return snapshot_reader(collection_name, snapshot_path, settings).refresh(consistency)


def close_readers() -> None:
    """Close every open reader (tests and long-lived processes that change endpoints)."""
    with _readers_lock:
        for reader in _readers.values():
            reader.close()
        _readers.clear()
