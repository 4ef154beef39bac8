"""The chroma host's side (``host.py`` is this process's side): ``python -c '...serve()' <fd>
<parent pid>`` reads requests and runs each on a thread of its own, answering on the pipe.

Invariant: its main thread does nothing but read requests (so a write to it stalls only when
it is stuck: ``host.py`` kills it then); it dies with its parent (``PR_SET_PDEATHSIG``, and
``os._exit`` as soon as the pipe closes, without closing a client: a close is what can hang).
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from .host import CLIENT_METHODS, COLLECTION_METHODS

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def serve() -> None:
    """The host's main loop: ``python -c '...serve()' <fd> <parent pid>``."""
    fd, parent = int(sys.argv[1]), int(sys.argv[2])
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # our parent decides when we stop
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    conn = Connection(fd)
    objects: dict[int, Any] = {}
    owners: dict[int, int] = {}  # collection handle -> client handle
    handles = itertools.count(1)
    state_lock, send_lock = threading.Lock(), threading.Lock()
    faults: dict[int, str] = {}
    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)

    def keep(value: Any, owner: int | None = None) -> int:
        with state_lock:
            handle = next(handles)
            objects[handle] = value
            if owner is not None:
                owners[handle] = owner
        return handle

    def drop(handle: int) -> Any:
        with state_lock:
            for child in [c for c, o in owners.items() if o == handle]:
                objects.pop(child, None)
                owners.pop(child, None)
            return objects.pop(handle, None)

    def run(kind: str, handle: int | None, method: Any, payload: Any) -> Any:
        if kind == "open":
            client = chromadb.PersistentClient(path=method, settings=chroma_settings.model_copy())
            opened = keep(client)
            if payload:
                faults[opened] = payload
            return opened
        if kind in ("close", "release"):
            client = drop(handle)  # type: ignore[arg-type]
            fault = faults.pop(handle, None)  # type: ignore[arg-type]
            if fault and kind == "close":
                _fire(fault)
            if client is not None:
                client.close()
            return None
        target = objects[handle]  # type: ignore[index]
        allowed = CLIENT_METHODS if kind == "client" else COLLECTION_METHODS
        if method not in allowed:
            raise ValueError(f"chroma host: {kind} method {method!r} is not served")
        args, kwargs = payload
        result = getattr(target, method)(*args, **kwargs)
        if method in ("get_or_create_collection", "get_collection"):
            return ("collection", keep(result, owner=handle), result.name, dict(result.configuration_json or {}))
        if method == "list_collections":
            return [c if isinstance(c, str) else c.name for c in result]
        return result

    def answer(request: tuple) -> None:
        request_id, kind, handle, method, payload = request
        try:
            reply = (request_id, "ok", run(kind, handle, method, payload))
        except Exception as exc:  # sent back and raised there
            reply = (request_id, "error", _picklable(exc))
        if request_id:
            with send_lock:
                try:
                    conn.send(reply)
                except OSError:
                    os._exit(0)

    pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="vp-chroma-call")
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            os._exit(0)  # our parent is gone: no polite close (a close is what can hang)
        pool.submit(answer, request)


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the death signal was armed
        os._exit(0)


def _fire(fault: str) -> None:
    """``pause:chroma_close`` stops this host as a hung close would leave it (no answer, ever);
    ``crash:chroma_close`` kills it (the reliability suite's fault steps, faults.py)."""
    action = fault.partition(":")[0]
    log.warning("fault injection: %s at chroma_close (chroma host %d)", action, os.getpid())
    os.kill(os.getpid(), signal.SIGKILL if action == "crash" else signal.SIGSTOP)
    time.sleep(3600)


def _picklable(exc: Exception) -> Exception:
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
