"""Commands that start child processes stop all of them on SIGINT, SIGTERM and SIGHUP.

Each test starts the real command (``python -m vector_pipeline.cli ...``, or pytest with the
suite's own fixtures) in a session of its own, waits until its children answer on their
ports, records every descendant (pid, process group, session) from /proc, sends one signal
to the command's pid only (what ``kill``, ``timeout`` or a process supervisor does), and
checks that the command exits with 128 + signal, that no recorded process and no member of
a recorded group or session runs any more, and that the ports are free. ``local-aws``, the
demo and the fixtures get all three signals; ``dagster dev`` (a minute to start) gets
SIGTERM, the case of the issue (the same handler serves all three signals), and so does
``compact --watch`` with its chroma host (issue 19: chroma runs in a child process that a
stop must take down too; its exit status is 0, a stop between cycles). Also: stopping a
group whose leader exited first still stops what it left in the group. Linux only (/proc).
Not covered: SIGKILL (nothing can clean up after it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pytest

from vector_pipeline.cli.local_aws import free_port

if TYPE_CHECKING:
    from vector_pipeline.config import Settings

CLI = [sys.executable, "-m", "vector_pipeline.cli"]
REPO = Path(__file__).resolve().parents[2]
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    sid: int
    start_time: int
    state: str
    argv: tuple[str, ...]


def processes() -> dict[int, Proc]:
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            head, tail = stat.read_text().rsplit(")", 1)
            argv = tuple(a.decode(errors="replace") for a in
                         (stat.parent / "cmdline").read_bytes().split(b"\0") if a)
        except (OSError, ValueError):
            continue
        fields = tail.split()
        pid = int(head.split(" (", 1)[0])
        found[pid] = Proc(pid, int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]), fields[0], argv)
    return found


def descendants(root: int) -> list[Proc]:
    table = processes()
    children: dict[int, list[Proc]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def survivors(recorded: list[Proc]) -> list[Proc]:
    """Running processes that are one of ``recorded`` or share a group or session with one."""
    groups = {p.pgid for p in recorded} | {p.sid for p in recorded}
    keys = {(p.pid, p.start_time) for p in recorded}
    return [p for p in processes().values() if p.state != "Z"
            and ((p.pid, p.start_time) in keys or p.pgid in groups or p.sid in groups)]


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except OSError as exc:
        return getattr(exc, "code", None) is not None  # an HTTP error is an answer too


def port_is_free(port: int) -> bool:
    """A server could bind it again (SO_REUSEADDR, as servers do: our own closed test
    connections may leave it in TIME_WAIT)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_for(condition: Callable[[], object], what: str, process: subprocess.Popen, timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process.poll() is not None:
            raise AssertionError(f"the command exited ({process.returncode}) before {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def moto_port_of(command_pid: int) -> int | None:
    """The port of the moto server the command started, once it answers."""
    for proc in descendants(command_pid):
        if "vector_pipeline.cli.moto_server" in proc.argv and "-p" in proc.argv:
            port = int(proc.argv[proc.argv.index("-p") + 1])
            return port if answers(f"http://127.0.0.1:{port}/moto-api/") else None
    return None


def start(argv: list[str], cwd: Path, output_dir: Path, **env: str) -> subprocess.Popen:
    """The command in a session of its own, its output to ``output_dir/output`` (a pipe would
    keep the test waiting on any child that survives and holds it)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VECTORS_", "DELTA_", "DYNAMODB_"))}
    with open(output_dir / "output", "w") as output:
        return subprocess.Popen(argv, cwd=cwd, env={**clean, **env}, start_new_session=True,
                                stdout=output, stderr=subprocess.STDOUT)


def signal_and_check(process: subprocess.Popen, signum: int, ports: list[int], cwd: Path,
                     expected_status: int | None = None, timeout: float = 90) -> None:
    recorded = descendants(process.pid)
    assert recorded, "the command has no child processes to stop"
    os.kill(process.pid, signum)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    left = survivors(recorded)
    for proc in left:  # clean up after a failure, by the recorded pids only
        os.kill(proc.pid, signal.SIGKILL)
    output = (cwd / "output").read_text()[-2000:]
    assert not left, f"still running after {signal.Signals(signum).name}: {left}\n{output}"
    assert process.returncode == (128 + signum if expected_status is None else expected_status), output
    assert all(port_is_free(port) for port in ports), ports


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_local_aws_stops_moto_on_signal(signum: int, tmp_path: Path) -> None:
    port = free_port()
    process = start([*CLI, "local-aws", "--port", str(port)], tmp_path, tmp_path)
    wait_for(lambda: answers(f"http://127.0.0.1:{port}/moto-api/"), "moto to answer", process, 60)
    signal_and_check(process, signum, [port], tmp_path)


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_demo_stops_its_embedded_aws_on_signal(signum: int, tmp_path: Path) -> None:
    process = start([*CLI, "demo", "--receipts", "2"], tmp_path, tmp_path,
                    VECTOR_PIPELINE_CACHE_DIR=str(tmp_path / "cache"))
    port = wait_for(lambda: moto_port_of(process.pid), "the demo's moto to answer", process, 120)
    signal_and_check(process, signum, [int(port)], tmp_path)  # type: ignore[call-overload]


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_test_fixtures_stop_moto_on_signal(signum: int, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    (tmp_path / "test_wait.py").write_text(textwrap.dedent(f"""
        import time
        from pathlib import Path

        def test_waits(moto_server):
            Path({str(ready)!r}).write_text(str(moto_server.port))
            time.sleep(600)
    """))
    process = start([sys.executable, "-m", "pytest", "-q", "-p", "vector_pipeline_tests.conftest",
                     "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path / "test_wait.py")],
                    REPO, tmp_path, PYTHONPATH=str(REPO))
    wait_for(lambda: ready.is_file() and ready.read_text(), "the fixture's moto server", process, 120)
    port = int(ready.read_text())
    assert answers(f"http://127.0.0.1:{port}/moto-api/")
    signal_and_check(process, signum, [port], tmp_path, expected_status=2)  # pytest's "interrupted"


def test_dagster_dev_stops_dagster_and_moto_on_sigterm(tmp_path: Path) -> None:
    for name in ("dagster.yaml", "workspace.yaml"):
        (tmp_path / name).write_text((REPO / name).read_text())
    port = free_port()
    process = start([*CLI, "dagster-dev", "--port", str(port), "--seed-receipts", "0"], tmp_path, tmp_path,
                    VECTOR_PIPELINE_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(REPO))
    moto_port = wait_for(lambda: moto_port_of(process.pid), "moto to answer", process, 120)
    wait_for(lambda: answers(f"http://127.0.0.1:{port}/server_info"), "dagster dev to answer", process, 300)
    assert len(descendants(process.pid)) >= 3  # moto, dagster dev, its webserver and daemon
    signal_and_check(process, signal.SIGTERM, [port, int(moto_port)], tmp_path)  # type: ignore[call-overload]


def test_compact_watch_stops_with_its_chroma_host_on_sigterm(settings: "Settings", tmp_path: Path) -> None:
    from vector_pipeline import produce_embedding_delta

    produce_embedding_delta(["a", "b"], [[0.1, 0.2], [0.3, 0.4]], collection_name="watched", settings=settings)
    process = start([*CLI, "compact", "--watch"], tmp_path, tmp_path,
                    **{**settings.local_aws_environment(), "PYTHONPATH": str(REPO)})
    wait_for(lambda: any("vector_pipeline.chroma.host" in " ".join(p.argv) for p in descendants(process.pid)),
             "the watch to compact through its chroma host", process, 120)
    signal_and_check(process, signal.SIGTERM, [], tmp_path, expected_status=0)


def test_stopping_a_group_also_stops_what_its_exited_leader_left_behind(tmp_path: Path) -> None:
    from vector_pipeline.cli.processes import group_members, start_group, stop_process_group

    pid_file = tmp_path / "orphan"
    leader = start_group(["sh", "-c", f"sleep 600 & echo $! > {pid_file}; exit 0"])
    deadline = time.monotonic() + 30
    while not (pid_file.is_file() and pid_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    orphan = int(pid_file.read_text())
    try:
        while group_members(leader.pid) != [orphan] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert group_members(leader.pid) == [orphan]  # the leader is gone (a zombie), its child runs on
        stop_process_group(leader, grace_seconds=5)
        assert group_members(leader.pid) == [] and leader.returncode == 0
    finally:
        if group_members(leader.pid) == [orphan]:
            os.kill(orphan, signal.SIGKILL)


def test_a_command_run_in_process_stops_only_the_groups_it_started() -> None:
    """`cli.main` called from a program (a test, a notebook) must not stop the caller's own
    servers: the session's moto server, say."""
    from vector_pipeline.cli.processes import start_group, stop_on_signals, stop_process_group

    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    outer = start_group(sleeper)
    try:
        with stop_on_signals():
            inner = start_group(sleeper)
        assert inner.poll() is not None  # started within: stopped on the way out
        assert outer.poll() is None  # the caller's: still running
    finally:
        stop_process_group(outer)
