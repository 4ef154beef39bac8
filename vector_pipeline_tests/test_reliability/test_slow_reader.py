"""GC and a slow reader: a real reader process stopped (SIGSTOP) after it read the pointer and
chose its version, before downloading it, while the pointer moves on and GC runs. Within
the grace GC keeps that version and the reader answers from it; with no grace (the
control) GC removes it and the reader follows the pointer to the newer version instead.
Not covered: readers of a version GC removed long before (test_readers_under_churn.py)."""

import json
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

from vector_pipeline import ChromaCompactor, produce_embedding_delta
from vector_pipeline.config import Settings
from vector_pipeline.cli.local_aws import stop_process_group
from vector_pipeline.compaction.retention import collect_garbage
from vector_pipeline.table.snapshot_store import SnapshotStore

from ..conftest import vectors
from .helpers import compactor_env

READER = """
import json, sys
from vector_pipeline.read.reader import open_snapshot
got = open_snapshot("words", snapshot_path=sys.argv[1]).get_vectors("words")
print(json.dumps(sorted(got["ids"])))
"""


def _publish(settings: Settings, rng: np.random.Generator, ids: list[str], deletes: list[str] | None) -> str:
    key = produce_embedding_delta(ids, vectors(rng, len(ids)), delete_ids=deletes, settings=settings)["delta_key"]
    result = ChromaCompactor(settings=settings).compact_deltas([key], "words")
    assert result.status == "ok"
    return str(result.version)


def _paused_reader(settings: Settings, cache: Path) -> subprocess.Popen:
    env = compactor_env(settings, VECTOR_PIPELINE_FAULT="pause:reader_before_download", READER_POINTER_TTL_SECONDS="0")
    reader = subprocess.Popen([sys.executable, "-c", READER, str(cache)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while Path(f"/proc/{reader.pid}/stat").read_text().split(")")[1].split()[0] != "T":
        assert reader.poll() is None and time.monotonic() < deadline, reader.stderr.read() if reader.stderr else ""
        time.sleep(0.1)
    return reader


def _resume(reader: subprocess.Popen) -> list[str]:
    try:
        reader.send_signal(signal.SIGCONT)
        out, err = reader.communicate(timeout=120)
        assert reader.returncode == 0, err[-2000:]
        return json.loads(out.strip().splitlines()[-1])
    finally:
        stop_process_group(reader)


def test_gc_keeps_the_version_a_slow_reader_chose_within_the_grace(settings: Settings, rng: np.random.Generator,
                                                                   tmp_path: Path) -> None:
    chosen = _publish(settings, rng, ["a"], None)
    reader = _paused_reader(settings, tmp_path / "reader")  # has read the pointer: it will download `chosen`
    newer = _publish(settings, rng, ["b"], ["a"])
    report = collect_garbage(settings, "words", retain_versions=1, grace=timedelta(hours=1))
    assert chosen in report.kept_versions  # replaced a moment ago: within the grace
    assert _resume(reader) == ["a"]  # the whole version it chose, downloaded after the pointer moved

    control = _paused_reader(settings, tmp_path / "control")  # chooses `newer`
    _publish(settings, rng, ["c"], ["b"])
    assert newer in collect_garbage(settings, "words", retain_versions=1, grace=timedelta(0)).deleted_versions
    assert _resume(control) == ["c"]  # its version was gone: it followed the pointer
    assert SnapshotStore(settings).list_versions("words")[-1] > newer
