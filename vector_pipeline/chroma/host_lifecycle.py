"""This process's one chroma host: started on first use, replaced after a kill, stopped at exit.

Invariant: a host never outlives this process. It is forked from one launcher thread that
lives as long as the process, because the host's death signal (``PR_SET_PDEATHSIG``, armed in
``host_process.py``) is tied to the thread that forked it, not to the process; it is killed
at exit (``atexit``) and whenever a call hangs (``host.py``), always by its pid. At most one
live host serves the process: a client opened after a kill gets a new one, the clients of the
killed one stay lost (``ChromaHostLost``).
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Any

from .host import Host

_host: Host | None = None
_host_lock = threading.Lock()
_launcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vp-chroma-launcher")


def current_host() -> Host:
    """The live host of this process, started if there is none (a dead one is reaped first)."""
    global _host
    with _host_lock:
        if _host is None or not _host.alive:
            if _host is not None:
                _host.kill("")
            _host = _start()
        return _host


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


atexit.register(lambda: stop_host())


def _start() -> Host:
    ours, theirs = Pipe(duplex=True)
    process = _launch(theirs)
    theirs.close()
    return Host(process, ours)


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
