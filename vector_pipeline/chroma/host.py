"""Chroma in a child process that can always be stopped: the one place chroma clients are
opened and closed.

Invariant: no thread of this process calls into chromadb's Rust bindings. Every chroma call
runs in the *host*, a child process, and this process waits for its answer in Python with a
bound, so each call returns, fails with ``ChromaUnresponsive`` (no answer within its bound:
the host is killed, by its pid) or ``ChromaHostLost`` (the host died), or is cut short by a
signal (the host is killed on the way out). Nothing waits on chroma without a bound, and a
SIGTERM is always handled. It relies on the host dying with this process: it asks the kernel
for SIGKILL when its parent goes (``PR_SET_PDEATHSIG``, tied to the thread that forked it, so
hosts are started from one launcher thread that lives as long as the process), and it is
killed at exit.

Why (issue 19): a producer hung for good in chromadb 1.5.9's ``Client.close()`` — the main
thread on a futex, a ``tokio-rt-worker`` thread at 100 % CPU, SIGTERM ignored. Each
``PersistentClient`` owns a tokio runtime and a sqlx SQLite pool that chroma builds with
sqlx's defaults (an idle timeout and a maximum lifetime), so sqlx starts a maintenance task
that sweeps ``for _ in 0..pool.num_idle()``. In sqlx-core 0.8.6 ``release`` makes a returned
connection acquirable before it increments ``num_idle``; a concurrent acquire can decrement
it first and wrap it to ``usize::MAX`` (sqlx issue 3645, fixed by sqlx PR 4289, not in chroma
1.5.9). A sweep that reads the wrapped value loops without ever awaiting: that worker never
yields. ``close()`` drops the bindings, and dropping a tokio runtime waits for every worker
— forever — with the GIL held, so no Python code (a signal handler, a watchdog thread) runs
again. The race is rare (a sweep runs when the pool opens and every ten minutes), cannot be
switched off from Python (the pool options are fixed in chroma's Rust code), and may also
stall a call before ``close``. So the fix is containment, not avoidance: a process can be
killed where a thread cannot. Reusing one client would not do (each delta and segment is
its own persist directory), nor would a timeout around ``close`` in a thread (the GIL stays
held).

One host serves every client of this process (started on first use, ~1 s to import chromadb;
a new one after a kill); it runs calls side by side (chroma releases the GIL while it works),
so a reader's parallel segment searches stay parallel. Killing the host ends all its clients:
their next call raises ``ChromaHostLost``; producers redo the delta, a compaction run fails
and is retried, a reader reopens its version (``ChromaDBClient.alive``).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import queue
import socket
import struct
import subprocess
import sys
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

COLLECTION_METHODS = frozenset({"count", "get", "query", "upsert", "delete", "modify"})
CLIENT_METHODS = frozenset({"get_or_create_collection", "get_collection", "list_collections", "get_max_batch_size"})
_WRITE_STALL_SECONDS = 30


class ChromaUnresponsive(RuntimeError):
    """A chroma call did not answer within its bound; its host was killed."""


class ChromaHostLost(RuntimeError):
    """The chroma host died (killed after a hang, or crashed): its clients are gone."""


# -- this process's side ---------------------------------------------------------------------


class _Host:
    """One child process running chroma, and the calls waiting on it. A healthy host's main
    thread does nothing but read requests, so a write that cannot go on for
    ``_WRITE_STALL_SECONDS`` (the socket's send timeout) means the host is stuck: it is killed
    then, and no caller waits on a write without a bound either."""

    def __init__(self) -> None:
        ours, theirs = Pipe(duplex=True)
        self.process = _launch(theirs)
        theirs.close()
        self.pid = self.process.pid
        self._conn = ours
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._outbox: "queue.SimpleQueue[tuple | None]" = queue.SimpleQueue()  # releases only
        self.alive = True
        _bound_writes(ours, _WRITE_STALL_SECONDS)
        threading.Thread(target=self._receive, name=f"vp-chroma-host-{self.pid}", daemon=True).start()
        threading.Thread(target=self._send_releases, name=f"vp-chroma-release-{self.pid}", daemon=True).start()

    def call(self, timeout: float, *request: Any) -> Any:
        """Send ``request`` and wait for its answer at most ``timeout`` seconds."""
        request_id, future = self._expect()
        try:
            self._write((request_id, *request))
            status, value = future.result(timeout=timeout)
        except FutureTimeout:
            self.kill(f"{request[0]} did not answer in {timeout:.0f}s")
            raise ChromaUnresponsive(f"chroma {request[0]} did not answer in {timeout:.0f}s; "
                                     f"its host (pid {self.pid}) was killed") from None
        except BaseException:  # a signal (Interrupted, KeyboardInterrupt): the call's state is unknown
            self.kill("interrupted")
            raise
        if status == "error":
            raise value
        return value

    def release(self, handle: int, timeout: float) -> None:
        """Close a client nobody closed (its finalizer): no one waits, but the close is still
        bounded. Reentrant (``SimpleQueue.put``), as a finalizer may run inside any frame."""
        self._outbox.put((0, "release", handle, None, timeout))

    def _expect(self) -> tuple[int, Future]:
        future: Future = Future()
        with self._lock:
            if not self.alive:
                raise ChromaHostLost(f"chroma host {self.pid} is gone")
            request_id = next(self._ids)
            self._pending[request_id] = future
        return request_id, future

    def _write(self, message: tuple) -> None:
        with self._send_lock:
            try:
                self._conn.send(message)
            except (OSError, ValueError) as exc:  # a stalled write (the send timeout), or a closed pipe
                self.kill(f"it stopped reading ({exc})")
                raise ChromaHostLost(f"chroma host {self.pid} stopped reading requests; killed") from None

    def _send_releases(self) -> None:
        """Releases, each bounded by a timer instead of a waiting caller."""
        while (release := self._outbox.get()) is not None:
            _, kind, handle, method, timeout = release
            try:
                request_id, future = self._expect()
                timer = threading.Timer(timeout, self._expire, (future, f"release did not answer in {timeout:.0f}s"))
                timer.daemon = True
                timer.start()
                self._write((request_id, kind, handle, method, None))
            except ChromaHostLost:
                return

    def _expire(self, future: Future, reason: str) -> None:
        if not future.done():
            self.kill(reason)

    def kill(self, reason: str) -> None:
        with self._lock:
            was_alive, self.alive = self.alive, False
        if was_alive and reason:
            log.warning("killing chroma host %d: %s", self.pid, reason)
        if self.process.poll() is None:
            self.process.kill()  # by its pid: it is our child, not yet reaped
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.error("chroma host %d did not die within 10s of SIGKILL", self.pid)
        self._outbox.put(None)
        self._conn.close()

    def _receive(self) -> None:
        try:
            while True:
                request_id, status, value = self._conn.recv()
                with self._lock:
                    future = self._pending.pop(request_id, None)
                if future is not None:
                    future.set_result((status, value))
        except (EOFError, OSError):
            pass
        except Exception:  # an answer that cannot be unpickled: the host is of no more use
            log.exception("chroma host %d sent an unreadable answer", self.pid)
        with self._lock:
            self.alive = False
            pending, self._pending = self._pending, {}
        for future in pending.values():
            future.set_result(("error", ChromaHostLost(f"chroma host {self.pid} died during a call")))
        if self.process.poll() is None:
            self.process.kill()


def _bound_writes(conn: Connection, seconds: float) -> None:
    """SO_SNDTIMEO on the socket: a write that cannot go on for ``seconds`` fails."""
    sock = socket.socket(fileno=conn.fileno())
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", int(seconds), 0))
    finally:
        sock.detach()  # the fd stays the connection's


_host: _Host | None = None
_host_lock = threading.Lock()
_launcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vp-chroma-launcher")


def _current_host() -> _Host:
    global _host
    with _host_lock:
        if _host is None or not _host.alive:
            if _host is not None:
                _host.kill("")
            _host = _Host()
        return _host


def _launch(theirs: Connection) -> "subprocess.Popen[bytes]":
    """The host, forked from the launcher thread (its death signal is tied to that thread)."""
    # The host imports what this process imports, from where this process found it (a Lambda
    # package, a test's worktree): our whole sys.path, ahead of the inherited PYTHONPATH.
    package_root = str(Path(__file__).resolve().parents[2])
    path = [package_root, *(entry for entry in sys.path if entry), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(filter(None, path)))}
    argv = [sys.executable, "-c", "from vector_pipeline.chroma.host_process import serve; serve()",
            str(theirs.fileno()), str(os.getpid())]
    # Its own session: a terminal's Ctrl-C reaches this process, which then stops the host.
    # Its stdout is our stderr: a command's --json output stays JSON.
    return _launcher.submit(subprocess.Popen, argv, pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
                            stdout=sys.stderr.fileno() if _has_fileno(sys.stderr) else subprocess.DEVNULL,
                            start_new_session=True).result()


def _has_fileno(stream: Any) -> bool:
    try:
        stream.fileno()
        return True
    except (AttributeError, OSError, ValueError):
        return False


atexit.register(lambda: stop_host())


def host_pid() -> int | None:
    """The pid of this process's chroma host, if one runs (tests watch it)."""
    host = _host
    return host.pid if host is not None and host.alive else None


def stop_host() -> None:
    """Kill the host (at exit; also after a hang). Clients still open become lost."""
    global _host
    with _host_lock:
        if _host is not None:
            _host.kill("")
            _host = None


class RemoteCollection:
    """A chroma collection in the host: the methods ``ChromaDBClient`` uses."""

    def __init__(self, client: "RemoteClient", handle: int, name: str, configuration_json: Any) -> None:
        self._client, self._handle = client, handle
        self.name, self.configuration_json = name, configuration_json

    def __getattr__(self, method: str) -> Any:
        if method not in COLLECTION_METHODS:
            raise AttributeError(method)
        return lambda *args, **kwargs: self._client.request("collection", self._handle, method, args, kwargs)


class RemoteClient:
    """A ``chromadb.PersistentClient`` in the host, every call bounded."""

    def __init__(self, path: str, call_timeout: float, close_timeout: float, fault: str | None = None) -> None:
        self._host = _current_host()
        self.call_timeout, self.close_timeout = call_timeout, close_timeout
        self._handle = self._host.call(call_timeout, "open", None, path, fault)
        self._closed = False
        self._max_batch_size: int | None = None
        self._finalizer = weakref.finalize(self, self._host.release, self._handle, close_timeout)

    @property
    def alive(self) -> bool:
        return not self._closed and self._host.alive

    def request(self, kind: str, handle: int, method: str, args: tuple, kwargs: dict) -> Any:
        if self._closed:
            raise RuntimeError("the chroma client is closed")
        answer = self._host.call(self.call_timeout, kind, handle, method, (args, kwargs))
        if isinstance(answer, tuple) and answer and answer[0] == "collection":
            return RemoteCollection(self, *answer[1:])
        return answer

    def __getattr__(self, method: str) -> Any:
        if method not in CLIENT_METHODS:
            raise AttributeError(method)
        return lambda *args, **kwargs: self.request("client", self._handle, method, args, kwargs)

    def get_max_batch_size(self) -> int:
        if self._max_batch_size is None:
            self._max_batch_size = int(self.request("client", self._handle, "get_max_batch_size", (), {}))
        return self._max_batch_size

    def close(self) -> None:
        """Close in the host, within ``close_timeout`` (the call that hung in issue 19)."""
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        if self._host.alive:
            self._host.call(self.close_timeout, "close", self._handle, None, None)


def open_client(path: str | Path, call_timeout: float, close_timeout: float, fault: str | None = None) -> RemoteClient:
    """A persistent chroma client on ``path``, run in the host."""
    return RemoteClient(str(path), call_timeout, close_timeout, _fault_once(fault))


_faults_sent: set[str] = set()


def _fault_once(fault: str | None) -> str | None:
    """A host fault (``Settings.fault``, e.g. ``pause:chroma_close``) reaches one host once
    per process, as a fault fires once per process: the retry after it runs clean."""
    if not fault or not fault.endswith(":chroma_close") or fault in _faults_sent:
        return None
    _faults_sent.add(fault)
    return fault
