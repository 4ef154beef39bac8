"""The child processes of the sustained-ingest profile (``ingest.py``): producers minting deltas
on a schedule, and readers timing when each delta becomes visible (freshness).

Each delta's vectors come from a seed (its sequence number), so a reader can rebuild its first
vector and look for it; ``probe_id`` names that vector."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from vector_pipeline.config import Settings

from .suite import DIMENSION

log = logging.getLogger("benchmarks.ingest")


def delta_vectors(seq: int, count: int) -> np.ndarray:
    vectors = np.random.default_rng(seq).standard_normal((count, DIMENSION)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def probe_id(seq: int) -> str:
    return f"{seq}-0"


def produce(settings: Settings, collection: str, index: int, producers: int, rate: float, count: int,
             seconds: float, ready: Any, go: Any, start: Any, path: str) -> None:
    """One producer: deltas ``index``, ``index + producers``, ... at ``rate / producers`` a
    second, from ``start`` (set once every producer has imported and reached ``ready``)."""
    from vector_pipeline import produce_embedding_delta

    ready.wait()
    go.wait()
    start_at = start.value
    with open(path, "a") as out:
        number = 0
        while True:
            seq = number * producers + index
            due = start_at + seq / rate
            if due - start_at >= seconds or time.time() >= start_at + seconds:
                return  # on schedule or behind it: producing ends with the window
            if due > time.time():
                time.sleep(due - time.time())
            started = time.time()
            result = produce_embedding_delta([f"{seq}-{j}" for j in range(count)], delta_vectors(seq, count).tolist(),
                                             metadatas=[{"producer": index}] * count, collection_name=collection,
                                             settings=settings)
            out.write(json.dumps({"seq": seq, "started_at": started, "produced_at": time.time(),
                                  "delta_key": result["delta_key"]}) + "\n")
            out.flush()
            number += 1


def read_freshness(settings: Settings, collection: str, mode: str, produced_glob: str, stop_path: str, out_path: str,
          poll_seconds: float) -> None:
    """One reader: polls for every produced delta not yet seen; writes ``seq, seen_at`` lines."""
    from vector_pipeline import open_snapshot, query_snapshot

    logging.getLogger("vector_pipeline").setLevel(logging.WARNING)
    folder, pattern = os.path.split(produced_glob)
    offsets: dict[Path, int] = {}
    waiting: dict[int, np.ndarray | None] = {}
    polls: list[float] = []
    with open(out_path, "a") as out:
        while not os.path.exists(stop_path):
            for path in sorted(Path(folder).glob(pattern)):
                with open(path) as produced:
                    produced.seek(offsets.get(path, 0))
                    while (line := produced.readline()).endswith("\n"):
                        seq = json.loads(line)["seq"]
                        waiting[seq] = delta_vectors(seq, 1)[0] if mode == "pending" else None
                        offsets[path] = produced.tell()
            started = time.time()
            seen = _visible(open_snapshot, query_snapshot, settings, collection, mode, waiting)
            now = time.time()
            polls.append(now - started)
            for seq in seen:
                waiting.pop(seq)
                out.write(json.dumps({"seq": seq, "seen_at": now}) + "\n")
            out.flush()
            time.sleep(max(0.0, poll_seconds - (time.time() - started)))
    Path(out_path + ".polls").write_text(json.dumps(polls))


def _visible(open_snapshot: Any, query_snapshot: Any, settings: Settings, collection: str, mode: str,
             waiting: dict[int, np.ndarray | None]) -> list[int]:
    if not waiting:
        return []
    seqs = sorted(waiting)
    try:
        if mode == "bounded":
            answer = open_snapshot(collection, settings=settings).get_vectors(
                collection, ids=[probe_id(s) for s in seqs], include=[])
            return [int(key.split("-")[0]) for key in answer["ids"]]
        seen = []
        for start in range(0, len(seqs), 200):
            batch = seqs[start:start + 200]
            answer = query_snapshot(query_embeddings=[waiting[s].tolist() for s in batch], n_results=1,
                                    collection_name=collection, include=["distances"], include_pending=True,
                                    settings=settings)
            seen += [s for s, ids in zip(batch, answer["ids"]) if ids and ids[0] == probe_id(s)]
        return seen
    except Exception as exc:  # noqa: BLE001 - before the first publish there is no version to read
        log.debug("%s reader: %s", mode, exc)
        return []
