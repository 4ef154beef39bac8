"""Readers under churn: reader processes query without pause while the collection is
replaced generation by generation (each publish upserts ten new ids and deletes the
previous ten) and GC removes old versions right away. Every answer must come from exactly
one version (all its ids from one generation), with zero errors."""

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

from vector_pipeline import ChromaCompactor, produce_embedding_delta
from vector_pipeline.config import Settings
from vector_pipeline.local_aws import stop_process_group
from vector_pipeline.maintenance import collect_garbage

from .helpers import compactor_env

PUBLISHES = int(os.environ.get("VP_RELIABILITY_PUBLISHES", "50"))
READERS = 2

READER = """
import json, sys, time
from vector_pipeline.reader import query_snapshot
stop_file, root = sys.argv[1], sys.argv[2]
answers = errors = 0
generations = set()
mixed = []
import os
while not os.path.exists(stop_file):
    try:
        result = query_snapshot(query_embeddings=[[1.0] * 8], n_results=5, collection_name="words", snapshot_path=root)
    except Exception as exc:
        errors += 1
        print("error:", repr(exc), file=sys.stderr)
        time.sleep(0.05)
        continue
    seen = {i.split("-")[0] for i in result["ids"][0]}
    answers += 1
    generations |= seen
    if len(seen) != 1 or len(result["ids"][0]) != 5:
        mixed.append(result["ids"][0])
print(json.dumps({"answers": answers, "errors": errors, "generations": len(generations), "mixed": mixed[:5]}))
"""


def test_readers_see_whole_versions_through_publishes_and_gc(settings: Settings, rng: np.random.Generator,
                                                             tmp_path: Path) -> None:
    compactor = ChromaCompactor(settings=settings)

    def publish(generation: int) -> None:
        ids = [f"g{generation}-{i}" for i in range(10)]
        previous = [f"g{generation - 1}-{i}" for i in range(10)] if generation else None
        produce_embedding_delta(ids, rng.random((10, 8)).tolist(), delete_ids=previous, settings=settings)
        [result] = compactor.compact_pending("words")
        assert result.status == "ok" and result.vector_count == 10

    publish(0)
    stop_file = tmp_path / "stop"
    readers = [subprocess.Popen([sys.executable, "-c", READER, str(stop_file), str(tmp_path / f"reader{n}")],
                                env=compactor_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True) for n in range(READERS)]
    try:
        for generation in range(1, PUBLISHES + 1):
            publish(generation)
            if generation % 5 == 0:  # GC with no grace: versions vanish under slow readers
                collect_garbage(settings, "words", retain_versions=1, grace=timedelta(0))
        time.sleep(1)
        stop_file.touch()
        reports = []
        for reader in readers:
            out, err = reader.communicate(timeout=120)
            assert reader.returncode == 0, err[-2000:]
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for reader in readers:
            stop_process_group(reader, grace_seconds=5)
    for report in reports:
        assert report["mixed"] == [], f"an answer mixed versions: {report['mixed']}"
        assert report["errors"] == 0
        assert report["answers"] > PUBLISHES and report["generations"] > 1
    print(f"FIGURE readers under churn: {PUBLISHES} publishes, {READERS} readers, answers checked "
          f"{[r['answers'] for r in reports]}, generations seen {[r['generations'] for r in reports]}, errors 0")
