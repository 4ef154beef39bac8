"""The producer: one batch of upserts and tombstones becomes a delta in S3, then a message.

Invariant: input is validated before anything is written, so bad input leaves no trace in
S3; the delta is one object (``delta/upload.py``: it exists whole or not at all), and only
then is the delta announced on SQS — a send error propagates (a swallowed send loses the delta until
reconciliation lists ``delta/``).

Data flows one way: chroma writes the records and says what it wrote
(``ChromaDBClient.close_and_describe``), ``upload`` turns that into the manifest and the one
packed object, and only then is the delta announced.

No hang (issue 19): chroma runs in a child process (``chroma/host.py``) and every call, the
close included, answers within a bound. A host that did not (killed) or died costs one more
write of the delta in a new directory — nothing was uploaded yet — and a second failure
propagates.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from ..chroma.client import ChromaDBClient
from ..chroma.host import ChromaHostLost, ChromaUnresponsive
from ..chroma.embeddings import provider_name
from ..chroma.written_delta import WrittenDelta
from ..config import Settings
from ..format.keys import parse_delta_key
from .queue import DeltaQueue
from .records import validate_delta_input
from .upload import delta_manifest, upload_delta

log = logging.getLogger(__name__)


def produce_embedding_delta(
    ids: Sequence[str],
    embeddings: Sequence[Sequence[float]],
    documents: Sequence[str] | None = None,
    metadatas: Sequence[dict[str, Any] | None] | None = None,
    collection_name: str = "words",
    delete_ids: Sequence[str] | None = None,
    *,
    settings: Settings | None = None,
    embedding_provider: str | None = None,
    notify: bool = True,
    delta_id: str | None = None,
    expected_embedding: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """Validate, write a delta, upload it as one packed object and announce it on SQS.

    ``delta_id`` pins the id (a resumed writer rewriting the delta it had begun); default: new.
    ``expected_embedding``: the collection's (provider, dimension)
    (``table.embedding.recorded_embedding``); vectors of another are refused here rather than
    quarantined by the compactor. A send error after the upload raises ``UnannouncedDeltaError``:
    the delta is stored and the next listing of ``delta/`` compacts it."""
    settings = Settings.resolve(settings)
    started = time.perf_counter()
    provider = embedding_provider or provider_name(settings)
    dimension = validate_delta_input(ids, embeddings, documents, metadatas, collection_name, delete_ids,
                                     expected_embedding=expected_embedding, embedding_provider=provider)
    metadatas = None if metadatas is None else [m or None for m in metadatas]
    workdir = Path(tempfile.mkdtemp(prefix="vp-delta-", dir=settings.scratch_dir))
    try:
        written = _write_delta(workdir, settings, collection_name, ids, embeddings, documents, metadatas, delete_ids)
        manifest = delta_manifest(written, provider, delta_id)
        delta_key = upload_delta(settings, settings.vectors_bucket, written.directory, manifest)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ref = parse_delta_key(delta_key)
    message = {
        "delta_key": delta_key, "collection": collection_name, "delta_id": ref.delta_id,
        "upsert_count": len(ids), "delete_count": len(delete_ids or []), "dimension": dimension,
    }
    if notify:
        try:
            message["message_id"] = announce_delta(settings, message)
        except Exception as exc:
            raise UnannouncedDeltaError(delta_key, exc) from exc
    elapsed = time.perf_counter() - started
    log.info("produced %s (%d upserts, %d deletes) in %.0f ms", delta_key, len(ids),
             len(delete_ids or []), elapsed * 1000)
    return {**message, "bucket": settings.vectors_bucket, "seconds": elapsed}


def _write_delta(workdir: Path, settings: Settings, collection_name: str, ids: Sequence[str],
                 embeddings: Sequence[Sequence[float]], documents: Sequence[str] | None,
                 metadatas: Sequence[dict[str, Any] | None] | None,
                 delete_ids: Sequence[str] | None) -> WrittenDelta:
    """The delta's chroma directory, written and closed; once more, in a new directory, if
    its chroma host hung (and was killed) or died."""
    for attempt in (1, 2):
        directory = workdir / f"chroma-{attempt}"
        try:
            with ChromaDBClient(directory, mode="delta", settings=settings) as delta:
                if ids:
                    delta.upsert_vectors(collection_name, ids, embeddings, documents, metadatas)
                if delete_ids:
                    delta.delete_vectors(collection_name, delete_ids)
                return delta.close_and_describe()
        except (ChromaUnresponsive, ChromaHostLost) as exc:
            if attempt == 2:
                raise
            log.warning("writing a delta of %s again: %s", collection_name, exc)
            shutil.rmtree(directory, ignore_errors=True)
    raise AssertionError("unreachable")


class UnannouncedDeltaError(RuntimeError):
    """The delta is stored whole in ``delta/`` but its message was not sent: the compactor's
    next listing of ``delta/`` (``compact``, or ``compact --watch``'s reconcile) applies it."""

    def __init__(self, delta_key: str, cause: BaseException) -> None:
        self.delta_key = delta_key
        self.note = (f"the delta {delta_key} is stored but was not announced; nothing is lost: the next "
                     "`vector-pipeline compact` lists delta/ and applies it")
        super().__init__(f"{self.note} ({cause})")


def announce_delta(settings: Settings, message: dict[str, Any]) -> str:
    """Send the delta's message; errors propagate (a swallowed send loses the delta)."""
    return DeltaQueue(settings).send(message)
