"""Child processes of a command, and the signals that end it.

Invariant: every child started with ``start_group`` runs in a session (and process group)
of its own, and is stopped — its whole group, by its pgid, never by name — before the
command that started it exits, whether the command ends normally, by an exception, or by
SIGINT, SIGTERM or SIGHUP. It relies on ``stop_on_signals`` being active around the
command: it turns each of the three signals into an ``Interrupted`` exception (a
``KeyboardInterrupt``, so pytest and ``except KeyboardInterrupt`` treat it as Ctrl-C) that
unwinds through the ``finally`` blocks that stop the children; a second signal during that
shutdown is noted and ignored so the shutdown itself is not cut short. Children are in their
own sessions so a terminal's Ctrl-C reaches them only through this orderly path.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
import urllib.request
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any, Iterator, Sequence

log = logging.getLogger(__name__)

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

_children: dict[int, "subprocess.Popen[Any]"] = {}
_children_lock = threading.Lock()


class Interrupted(KeyboardInterrupt):
    """The command received ``signum``; its exit status is ``128 + signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def start_group(argv: Sequence[str], **popen_options: Any) -> "subprocess.Popen[Any]":
    """``Popen(argv)`` in a new session, remembered until ``stop_process_group`` stops it."""
    process = subprocess.Popen(list(argv), start_new_session=True, **popen_options)
    with _children_lock:
        _children[process.pid] = process
    return process


def wait_until_answering(process: "subprocess.Popen[Any]", url: str, what: str, timeout_seconds: float,
                         poll_seconds: float = 0.1, request_seconds: float = 1.0) -> None:
    """Return once ``url`` answers a GET: ``RuntimeError`` if ``process`` (the server behind it)
    exits first, ``TimeoutError`` after ``timeout_seconds``; ``what`` names it in both."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=request_seconds).close()
            return
        except OSError:
            time.sleep(poll_seconds)
    raise TimeoutError(f"{what} did not answer on {url} in {timeout_seconds}s")


def stop_process_group(process: "subprocess.Popen[Any]", first_signal: int = signal.SIGTERM,
                       grace_seconds: float = 20.0) -> int | None:
    """Stop a child started in its own session and all it spawned: ``first_signal`` to the
    group, then, once the leader exited or after ``grace_seconds`` (dagster dev can ignore
    SIGTERM), SIGKILL to what is left of the group; waits until none of it runs.

    The leader is reaped only at the end: until then its pid (the group's id) cannot be
    reused, so the group signalled is always this child's. A child already reaped (its pid
    may name someone else's group by now) is left alone."""
    try:
        state = _child_state(process)
        if state is not _ChildState.REAPED:
            if state is _ChildState.RUNNING:
                os.killpg(process.pid, first_signal)
                if not _wait_exited(process, grace_seconds):
                    log.warning("process group %d ignored %s for %.0fs: killing it", process.pid,
                                signal.Signals(first_signal).name, grace_seconds)
            _kill_group(process.pid)
            process.wait(timeout=grace_seconds)
    finally:
        with _children_lock:
            _children.pop(process.pid, None)
    return process.returncode


class _ChildState(Enum):
    RUNNING = "running"
    EXITED = "exited"  # a zombie: its pid still reserved
    REAPED = "reaped"


def _child_state(process: "subprocess.Popen[Any]") -> _ChildState:
    if process.returncode is not None:
        return _ChildState.REAPED
    if not hasattr(os, "waitid"):  # no look without reaping here: poll, and spare the group
        return _ChildState.RUNNING if process.poll() is None else _ChildState.REAPED
    try:  # WNOWAIT: look without reaping
        exited = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return _ChildState.REAPED
    return _ChildState.RUNNING if exited is None else _ChildState.EXITED


def _wait_exited(process: "subprocess.Popen[Any]", seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _child_state(process) is _ChildState.RUNNING:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _kill_group(pgid: int, wait_seconds: float = 5.0) -> None:
    """SIGKILL what is left of the group, and wait (bounded) until none of it runs."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return  # the group is empty: every member has exited
    deadline = time.monotonic() + wait_seconds
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


def group_members(pgid: int) -> list[int]:
    """Pids of the running (not zombie) processes of group ``pgid``, read from /proc;
    empty where there is no /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited while we looked
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def stop_all_groups(first_signal: int = signal.SIGTERM, grace_seconds: float = 20.0,
                    keep: frozenset[int] = frozenset()) -> int:
    """Stop every child group still running (newest first) but those whose leader's pid is in
    ``keep``; returns how many were stopped."""
    with _children_lock:
        remaining = sorted((p for pid, p in _children.items() if pid not in keep), key=lambda p: p.pid, reverse=True)
    for process in remaining:
        stop_process_group(process, first_signal, grace_seconds)
    return len(remaining)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within: SIGINT, SIGTERM and SIGHUP raise ``Interrupted`` in the main thread (once);
    on the way out, any child group started within and still running is stopped (groups the
    caller started before are its own to stop) and the old handlers return."""
    received: list[int] = []
    with _children_lock:
        started_before = frozenset(_children)

    def interrupt(signum: int, _frame: object) -> None:
        if received:
            log.warning("received %s while shutting down: still stopping child processes",
                        signal.Signals(signum).name)
            return
        received.append(signum)
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, interrupt) for signum in SHUTDOWN_SIGNALS}
    try:
        yield
    finally:
        received.append(0)  # a signal from here on must not cut the shutdown short
        try:
            stop_all_groups(keep=started_before)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
