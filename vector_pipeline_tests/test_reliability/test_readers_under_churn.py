"""Readers under churn: reader processes query without pause while the collection is
replaced generation by generation (each publish upserts ten new ids and deletes the
previous ten, beside a thousand ids that stay, far from the query) and GC removes old
versions right away. Every answer must come from exactly one version (all its ids from
one generation), with zero errors. Most publishes append a segment, so the readers follow
the pointer by reusing the segments they hold (the test checks they did), and sometimes
a fold replaces the base."""

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
from vector_pipeline.cli.local_aws import stop_process_group
from vector_pipeline.compaction.maintenance import collect_garbage

from .helpers import compactor_env

PUBLISHES = int(os.environ.get("VP_RELIABILITY_PUBLISHES", "50"))
READERS = 2
STAYING = 1000

READER = """
import json, sys, time
from vector_pipeline.read.reader import query_snapshot, snapshot_reader
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
stats = snapshot_reader("words", root).stats
print(json.dumps({"answers": answers, "errors": errors, "generations": len(generations), "mixed": mixed[:5],
                  "segments_reused": stats.segments_reused, "versions": stats.versions_opened}))
"""


def test_readers_see_whole_versions_through_publishes_and_gc(settings: Settings, rng: np.random.Generator,
                                                             tmp_path: Path) -> None:
    compactor = ChromaCompactor(settings=settings)

    def publish(generation: int) -> None:
        ids = [f"g{generation}-{i}" for i in range(10)]
        embeddings = rng.random((10, 8)).tolist()
        previous = [f"g{generation - 1}-{i}" for i in range(10)] if generation else None
        if generation == 0:  # ids that stay, pointing away from the query: a base worth reusing
            ids += [f"stay{i}" for i in range(STAYING)]
            embeddings += (-rng.random((STAYING, 8))).tolist()
        produce_embedding_delta(ids, embeddings, delete_ids=previous, settings=settings)
        [result] = compactor.compact_pending("words")
        assert result.status == "ok" and result.vector_count == 10 + STAYING

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
        assert report["segments_reused"] > 0, "no pointer move reused a segment"
    print(f"FIGURE readers under churn: {PUBLISHES} publishes, {READERS} readers, answers checked "
          f"{[r['answers'] for r in reports]}, generations seen {[r['generations'] for r in reports]}, "
          f"versions followed {[r['versions'] for r in reports]}, segments reused "
          f"{[r['segments_reused'] for r in reports]}, errors 0")
