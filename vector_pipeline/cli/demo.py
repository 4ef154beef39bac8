"""The demo: receipts in, deltas produced, compacted, queried — on the embedded AWS.

Uses the receipts shipped in ``vector_pipeline/data/receipts.jsonl``: every word and every
line of a receipt becomes a vector (real all-MiniLM-L6-v2 embeddings), one delta per
receipt and collection. A second round corrects some receipts and deletes one, so the
demo also shows a second version, last-writer-wins and tombstones. It reports through
``progress`` stages and the log; the CLI prints its answers.
"""

from __future__ import annotations

import json
import logging
import time
from importlib import resources
from typing import Any

from .. import progress
from ..compaction.compactor import ChromaCompactor
from ..compaction.result import CompactionStatus
from ..config import Settings
from ..delta.produce import produce_embedding_delta
from ..chroma.embeddings import MiniLMProvider
from ..read.reader import query_snapshot

log = logging.getLogger(__name__)

QUERIES = ["walmart", "milk", "coffee", "total amount due", "gasoline"]
COLLECTIONS = ("words", "lines")
ANSWER_FIELDS = ("ids", "documents", "metadatas", "distances")
# Texts embedded per call: the bar moves while a round embeds.
_EMBED_CHUNK = 128


def load_receipts() -> list[dict[str, Any]]:
    text = resources.files("vector_pipeline").joinpath("data/receipts.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def receipt_records(receipt: dict[str, Any]) -> dict[str, list[tuple[str, str, dict[str, Any]]]]:
    """(id, text, metadata) per collection: ``words`` and ``lines`` of one receipt."""
    base = {"receipt_id": receipt["receipt_id"], "merchant": receipt["merchant"], "date": receipt["date"]}
    lines, words = [], []
    for line_no, line in enumerate(receipt["lines"]):
        lines.append((f"{receipt['receipt_id']}#L{line_no}", line, {**base, "line": line_no}))
        for word_no, word in enumerate(line.split()):
            words.append((f"{receipt['receipt_id']}#L{line_no}W{word_no}", word,
                          {**base, "line": line_no, "word": word_no}))
    return {"words": words, "lines": lines}


def run_demo(settings: Settings, receipts_limit: int | None = None) -> dict[str, Any]:
    """The whole demo; returns deltas produced, versions, timings and, per collection and
    query text, the chroma-style answer (top 3). Reports through ``progress`` and the log."""
    receipts = load_receipts()[:receipts_limit]
    provider = MiniLMProvider()
    timings: dict[str, float] = {}
    log.info("loading the offline embedding model (%s) ...", provider.name)
    started = time.perf_counter()
    provider.embed(["warm up"])
    timings["model_load_s"] = time.perf_counter() - started

    round_1 = _produce_round(settings, receipts, provider, timings, "round 1")
    compactor = ChromaCompactor(settings=settings)
    versions = _compact(compactor, timings, "round 1", round_1)

    # Round 2: two receipts re-scanned (their lines change), one receipt deleted entirely.
    corrected = [dict(r, lines=[line.replace("MAIN ST", "MAIN STREET") for line in r["lines"]]) for r in receipts[:2]]
    deleted = receipts[2]
    deletes = receipt_records(deleted)
    round_2 = _produce_round(settings, corrected, provider, timings, "round 2", extra_deletes={
        name: [record_id for record_id, _, _ in records] for name, records in deletes.items()})
    versions = _compact(compactor, timings, "round 2", round_2) or versions

    answers = _query(settings, timings)
    return {"deltas": round_1 + round_2, "versions": versions, "timings": timings, "answers": answers}


def produce_receipts(settings: Settings, receipts_limit: int) -> int:
    """Deltas of the first ``receipts_limit`` receipts, announced, not compacted."""
    return _produce_round(settings, load_receipts()[:receipts_limit], MiniLMProvider(), {}, "seed")


def _produce_round(settings: Settings, receipts: list[dict[str, Any]], provider: MiniLMProvider,
                   timings: dict[str, float], label: str, extra_deletes: dict[str, list[str]] | None = None) -> int:
    started = time.perf_counter()
    batches = [(name, records) for receipt in receipts for name, records in receipt_records(receipt).items()]
    texts = [text for _, records in batches for _, text, _ in records]
    with progress.stage(f"{label}: embed", len(texts), "texts") as bar:
        embedded: list[list[float]] = []
        for chunk in range(0, len(texts), _EMBED_CHUNK):
            embedded += provider.embed(texts[chunk:chunk + _EMBED_CHUNK])
            bar.advance(len(texts[chunk:chunk + _EMBED_CHUNK]))
    vectors = iter(embedded)
    embed_seconds = time.perf_counter() - started
    count = 0
    with progress.stage(f"{label}: produce deltas", len(batches), "deltas") as bar:
        for position, (name, records) in enumerate(batches):
            deletes = (extra_deletes or {}).get(name) if position < 2 else None
            produce_embedding_delta(
                [record_id for record_id, _, _ in records], [next(vectors) for _ in records],
                documents=[text for _, text, _ in records], metadatas=[meta for _, _, meta in records],
                collection_name=name, delete_ids=deletes, settings=settings)
            count += 1
            bar.advance()
    elapsed = time.perf_counter() - started
    timings[f"{label}_produce_s"] = elapsed
    log.info("%s: produced %d deltas (%d vectors) in %.1fs (embedding %.1fs, %.0f ms per delta)", label, count,
             len(texts), elapsed, embed_seconds, 1000 * (elapsed - embed_seconds) / max(count, 1))
    return count


def _compact(compactor: ChromaCompactor, timings: dict[str, float], label: str, pending: int) -> dict[str, str]:
    started = time.perf_counter()
    with progress.stage(f"{label}: compact", pending, "deltas") as bar:
        results = compactor.compact_pending()
        bar.advance(sum(r.deltas_processed for r in results))
    timings[f"{label}_compact_s"] = time.perf_counter() - started
    versions = {}
    failed = [r for r in results if r.status is CompactionStatus.FAILED]
    if failed:
        raise RuntimeError(f"{label}: compaction of {failed[0].collection} failed: {failed[0].error}")
    for result in results:
        log.info("%s: compacted %s: %s, %d deltas → version %s (%d vectors) in %.2fs", label, result.collection,
                 result.status, result.deltas_processed, result.version, result.vector_count,
                 result.duration_seconds)
        if result.version:
            versions[result.collection] = result.version
    return versions


def _query(settings: Settings, timings: dict[str, float]) -> dict[str, dict[str, Any]]:
    answers: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    with progress.stage("queries", len(QUERIES) * len(COLLECTIONS), "queries") as bar:
        for collection in COLLECTIONS:
            answers[collection] = {}
            for text in QUERIES:
                result = query_snapshot(query_texts=[text], n_results=3, collection_name=collection,
                                        settings=settings)
                answers[collection][text] = {key: result[key][0] for key in ANSWER_FIELDS}
                bar.advance()
    timings["queries_s"] = time.perf_counter() - started
    return answers
