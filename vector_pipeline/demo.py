"""The demo: receipts in, deltas produced, compacted, queried — on the embedded AWS.

Uses the receipts shipped in ``vector_pipeline/data/receipts.jsonl``: every word and every
line of a receipt becomes a vector (real all-MiniLM-L6-v2 embeddings), one delta per
receipt and collection. A second round corrects some receipts and deletes one, so the
demo also shows a second version, last-writer-wins and tombstones.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from typing import Any, Callable

from .compactor import ChromaCompactor
from .config import Settings
from .delta import produce_embedding_delta
from .embeddings import MiniLMProvider
from .reader import query_snapshot

QUERIES = ["walmart", "milk", "coffee", "total amount due", "gasoline"]


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


def run_demo(settings: Settings, say: Callable[[str], None] = print, receipts_limit: int | None = None) -> dict[str, Any]:
    receipts = load_receipts()[:receipts_limit]
    provider = MiniLMProvider()
    timings: dict[str, float] = {}
    say(f"loading the offline embedding model ({provider.name}) ...")
    started = time.perf_counter()
    provider.embed(["warm up"])
    timings["model_load_s"] = time.perf_counter() - started

    produced = _produce_round(settings, receipts, provider, say, timings, "round 1")
    compactor = ChromaCompactor(settings=settings)
    versions = _compact(compactor, say, timings, "round 1")

    # Round 2: two receipts re-scanned (their lines change), one receipt deleted entirely.
    corrected = [dict(r, lines=[line.replace("MAIN ST", "MAIN STREET") for line in r["lines"]]) for r in receipts[:2]]
    deleted = receipts[2]
    deletes = receipt_records(deleted)
    produced += _produce_round(settings, corrected, provider, say, timings, "round 2", extra_deletes={
        name: [record_id for record_id, _, _ in records] for name, records in deletes.items()})
    versions = _compact(compactor, say, timings, "round 2") or versions

    answers = _query(settings, say, timings)
    return {"deltas": produced, "versions": versions, "timings": timings, "answers": answers}


def produce_receipts(settings: Settings, receipts_limit: int, say: Callable[[str], None] = print) -> int:
    """Deltas of the first ``receipts_limit`` receipts, announced, not compacted."""
    return _produce_round(settings, load_receipts()[:receipts_limit], MiniLMProvider(), say, {}, "seed")


def _produce_round(settings: Settings, receipts: list[dict[str, Any]], provider: MiniLMProvider,
                   say: Callable[[str], None], timings: dict[str, float], label: str,
                   extra_deletes: dict[str, list[str]] | None = None) -> int:
    started = time.perf_counter()
    batches = [(name, records) for receipt in receipts for name, records in receipt_records(receipt).items()]
    texts = [text for _, records in batches for _, text, _ in records]
    vectors = iter(provider.embed(texts))
    embed_seconds = time.perf_counter() - started
    count = 0
    for position, (name, records) in enumerate(batches):
        deletes = (extra_deletes or {}).get(name) if position < 2 else None
        produce_embedding_delta(
            [record_id for record_id, _, _ in records], [next(vectors) for _ in records],
            documents=[text for _, text, _ in records], metadatas=[meta for _, _, meta in records],
            collection_name=name, delete_ids=deletes, settings=settings)
        count += 1
    elapsed = time.perf_counter() - started
    timings[f"{label}_produce_s"] = elapsed
    say(f"{label}: produced {count} deltas ({len(texts)} vectors) in {elapsed:.1f}s "
        f"(embedding {embed_seconds:.1f}s, {1000 * (elapsed - embed_seconds) / max(count, 1):.0f} ms per delta)")
    return count


def _compact(compactor: ChromaCompactor, say: Callable[[str], None], timings: dict[str, float],
             label: str) -> dict[str, str]:
    started = time.perf_counter()
    results = compactor.compact_pending()
    timings[f"{label}_compact_s"] = time.perf_counter() - started
    versions = {}
    for result in results:
        say(f"{label}: compacted {result.collection}: {result.status}, {result.deltas_processed} deltas → "
            f"version {result.version} ({result.vector_count} vectors) in {result.duration_seconds:.2f}s")
        if result.version:
            versions[result.collection] = result.version
    return versions


def _query(settings: Settings, say: Callable[[str], None], timings: dict[str, float]) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for collection in ("words", "lines"):
        for text in QUERIES:
            started = time.perf_counter()
            result = query_snapshot(query_texts=[text], n_results=3, collection_name=collection, settings=settings)
            elapsed = 1000 * (time.perf_counter() - started)
            hits = [f"{doc!r} ({meta['merchant']}, {dist:.3f})" for doc, meta, dist in
                    zip(result["documents"][0], result["metadatas"][0], result["distances"][0])]
            answers[f"{collection}:{text}"] = result["ids"][0]
            say(f"query {collection} {text!r} [{elapsed:.0f} ms]: " + "; ".join(hits))
    return answers
