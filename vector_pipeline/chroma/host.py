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

This module is that call protocol, one host's pipe: a request and its answer within a bound.
``host_lifecycle.py`` starts this process's one host (and a new one after a kill) and stops it;
``remote.py`` holds the client and collection objects ``ChromaDBClient`` calls through it;
``host_process.py`` is the child's side.
"""

from __future__ import annotations

import itertools
import logging
import queue
import socket
import struct
import subprocess
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger(__name__)

COLLECTION_METHODS = frozenset({"count", "get", "query", "upsert", "delete", "modify"})
CLIENT_METHODS = frozenset({"get_or_create_collection", "get_collection", "list_collections", "get_max_batch_size"})
WRITE_STALL_SECONDS = 30


class ChromaUnresponsive(RuntimeError):
    """A chroma call did not answer within its bound; its host was killed."""


class ChromaHostLost(RuntimeError):
    """The chroma host died (killed after a hang, or crashed): its clients are gone."""


class Host:
    """One child process running chroma, and the calls waiting on it. A healthy host's main
    thread does nothing but read requests, so a write that cannot go on for
    ``WRITE_STALL_SECONDS`` (the socket's send timeout) means the host is stuck: it is killed
    then, and no caller waits on a write without a bound either."""

    def __init__(self, process: "subprocess.Popen[bytes]", conn: Connection) -> None:
        """``process``: the host, just started; ``conn``: this side of its pipe."""
        self.process = process
        self.pid = process.pid
        self._conn = conn
        self._ids = itertools.count(1)
        self._pending: dict[int, Future] = {}
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._outbox: "queue.SimpleQueue[tuple | None]" = queue.SimpleQueue()  # releases only
        self.alive = True
        _bound_writes(conn, WRITE_STALL_SECONDS)
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
