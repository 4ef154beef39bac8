"""No hang (issue 19): chroma runs in a child process (``chroma/host.py``), so no chroma call
— ``close()`` above all — can keep a producer, a compactor or a reader from answering a
signal or finishing.

Covered: thousands of deltas produced in one process by two threads, through one chroma host
(``VP_NO_HANG_DELTAS``, 300 here, 3000 under ``./dev reliability``); a close that never
answers (the host stopped at ``chroma_close`` by the reliability fault hook, as a spinning
tokio worker leaves it) is cut at its bound, the host killed and the delta written again;
a host that dies ends its clients with ``ChromaHostLost`` and the next client gets a new
host, and a reader whose host died reopens its version at the next query; SIGTERM in the middle of a produce stops the process within a bound, the host with
it, and leaves S3 with whole deltas only and no scratch directory; the host does not
outlive a SIGKILLed parent.
Not covered: chroma's own spin (sqlx's race is rare and cannot be provoked from Python;
the fault hook stands in for it, as the crash matrix's faults stand in for power cuts).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from vector_pipeline import ChromaCompactor, produce_embedding_delta
from vector_pipeline.chroma.client import ChromaDBClient
from vector_pipeline.chroma.host import ChromaHostLost
from vector_pipeline.chroma.host_lifecycle import host_pid
from vector_pipeline.config import Settings
from vector_pipeline.delta.reader import fetch_delta, list_deltas
from vector_pipeline.io.aws import client
from vector_pipeline.read.reader import SnapshotReader

from ..helpers import vectors

DELTAS = int(os.environ.get("VP_NO_HANG_DELTAS", "300"))
REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_until(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_thousands_of_deltas_in_one_process_go_through_one_host(settings: Settings,
                                                                rng: np.random.Generator) -> None:
    rows = [vectors(rng, 20) for _ in range(2)]
    produce_embedding_delta([f"warm-{i}" for i in range(20)], rows[0], collection_name="warm", settings=settings,
                            notify=False)
    host = host_pid()
    errors: list[BaseException] = []

    def producer(worker: int) -> None:
        try:
            for n in range(worker, DELTAS, 2):
                produce_embedding_delta([f"w{worker}-{n}-{i}" for i in range(20)], rows[worker],
                                        collection_name=f"col{worker}", settings=settings, notify=False)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=producer, args=(worker,)) for worker in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    s3 = client("s3", settings)
    produced = list_deltas(s3, settings.vectors_bucket, "delta/col0/") + list_deltas(s3, settings.vectors_bucket, "delta/col1/")
    assert len(produced) == DELTAS
    assert host_pid() == host  # nothing hung: the first host served them all
    last = fetch_delta(s3, settings.vectors_bucket, produced[-1], Path(settings.cache_dir) / "check")
    assert len(last.ids) == 20


def test_a_close_that_never_answers_is_cut_at_its_bound_and_the_delta_written_again(
        settings: Settings, rng: np.random.Generator) -> None:
    hung = settings.replace(fault="pause:chroma_close", chroma_close_timeout_seconds=3.0)
    ChromaDBClient(Path(settings.cache_dir) / "opened-first", mode="read", settings=settings).close()  # a host
    first_host = host_pid()
    assert first_host is not None
    started = time.monotonic()
    result = produce_embedding_delta(["a", "b"], vectors(rng, 2), collection_name="hung", settings=hung, notify=False)
    assert time.monotonic() - started < 60
    assert not _alive(first_host)  # stopped at its close, then killed
    assert host_pid() not in (None, first_host)
    s3 = client("s3", settings)
    [ref] = list_deltas(s3, settings.vectors_bucket, "delta/hung/")
    assert ref.delta_id == result["delta_id"]
    assert sorted(fetch_delta(s3, settings.vectors_bucket, ref, Path(settings.cache_dir) / "check").ids) == ["a", "b"]


def test_a_host_that_dies_ends_its_clients_with_a_named_error_and_the_next_client_gets_a_new_one(
        settings: Settings, rng: np.random.Generator, tmp_path: Path) -> None:
    with ChromaDBClient(tmp_path / "a", mode="snapshot", settings=settings) as db:
        db.upsert_vectors("words", ["x"], vectors(rng, 1))
        dead = host_pid()
        assert dead is not None and db.alive
        os.kill(dead, signal.SIGKILL)
        _wait_until(lambda: not db.alive, 10, "the client to notice its host died")
        with pytest.raises(ChromaHostLost):
            db.count("words")
    with ChromaDBClient(tmp_path / "b", mode="snapshot", settings=settings) as db:
        db.upsert_vectors("words", ["y"], vectors(rng, 1))
        assert db.count("words") == 1
    assert host_pid() not in (None, dead)


def test_a_reader_whose_host_died_reopens_its_version_at_the_next_query(
        settings: Settings, rng: np.random.Generator, tmp_path: Path) -> None:
    key = produce_embedding_delta([f"r{i}" for i in range(30)], vectors(rng, 30), settings=settings)["delta_key"]
    assert ChromaCompactor(settings=settings).compact_deltas([key], "words").status == "ok"
    reader = SnapshotReader("words", tmp_path / "reader", settings)
    try:
        query = vectors(rng, 1)
        assert len(reader.query(None, query, 5, None)["ids"][0]) == 5
        dead = host_pid()
        os.kill(dead, signal.SIGKILL)  # type: ignore[arg-type]
        _wait_until(lambda: reader.client is not None and not reader.client.alive, 10, "the reader to see it")
        assert len(reader.query(None, query, 5, None)["ids"][0]) == 5
        assert reader.client is not None and reader.client.alive and host_pid() != dead
    finally:
        reader.close()


_PRODUCER = textwrap.dedent("""
    import sys
    from pathlib import Path
    import numpy as np
    from vector_pipeline import ChromaCompactor, produce_embedding_delta
    from vector_pipeline.cli.processes import Interrupted, stop_on_signals
    from vector_pipeline.config import Settings

    progress = Path(sys.argv[1])
    settings = Settings.from_env()
    rng = np.random.default_rng(7)
    try:
        with stop_on_signals():
            for n in range(1000):
                progress.write_text(f"writing {n}")
                produce_embedding_delta([f"d{n}-{i}" for i in range(4000)], rng.random((4000, 64), dtype=np.float32),
                                        collection_name="sig", settings=settings, notify=False)
                with open(progress.with_suffix(".done"), "a") as done:
                    done.write(f"{n}\\n")
    except Interrupted as stop:
        sys.exit(stop.exit_status)
""")


def _start_producer(settings: Settings, tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (tmp_path / "producer.py").write_text(_PRODUCER)
    env = {**os.environ, **settings.local_aws_environment(), "VECTOR_PIPELINE_SCRATCH_DIR": str(scratch),
           "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, str(tmp_path / "producer.py"), str(tmp_path / "progress")],
                               env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=open(tmp_path / "stderr", "w"))
    return process, tmp_path / "progress", scratch


def _host_of(pid: int) -> int | None:
    for stat in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = stat.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"from vector_pipeline.chroma.host_process import serve; serve()" in argv and argv[-2] == str(pid).encode():
            return int(stat.parent.name)
    return None


def test_sigterm_mid_produce_stops_the_producer_and_its_host_and_leaves_whole_deltas_only(
        settings: Settings, tmp_path: Path) -> None:
    process, progress, scratch = _start_producer(settings, tmp_path)
    try:
        _wait_until(lambda: progress.with_suffix(".done").is_file() and progress.read_text() == "writing 2"
                    and any(scratch.iterdir()), 180, "the third delta to be under way")
        host = _host_of(process.pid)
        assert host is not None and _alive(host)
        time.sleep(0.3)  # into chroma's upsert of 4,000 vectors
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 128 + signal.SIGTERM
        assert time.monotonic() - signalled < 30
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    _wait_until(lambda: not _alive(host), 10, "the chroma host to stop")
    assert list(scratch.iterdir()) == []  # no half-written delta directory left
    s3 = client("s3", settings)
    stored = list_deltas(s3, settings.vectors_bucket, "delta/sig/")
    done = progress.with_suffix(".done").read_text().split()
    assert len(done) <= len(stored) <= len(done) + 1  # the interrupted one, if its single PUT had landed
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=settings.vectors_bucket, Prefix="delta/sig/").get("Contents", [])]
    assert len(keys) == len(stored)  # nothing in delta/ but whole deltas
    for ref in stored:
        assert len(fetch_delta(s3, settings.vectors_bucket, ref, tmp_path / "check" / ref.delta_id).ids) == 4000


def test_the_host_does_not_outlive_a_killed_parent(settings: Settings, tmp_path: Path) -> None:
    process, progress, _ = _start_producer(settings, tmp_path)
    try:
        _wait_until(lambda: progress.is_file() and _host_of(process.pid) is not None, 180, "the chroma host")
        host = _host_of(process.pid)
        os.kill(process.pid, signal.SIGKILL)  # no handler, no atexit: only the kernel's death signal
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    _wait_until(lambda: not _alive(host), 10, "the orphaned chroma host to die")  # type: ignore[arg-type]
