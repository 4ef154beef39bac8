"""A chroma client and its collections, living in the chroma host, as ``ChromaDBClient`` sees
them: the chromadb methods it uses, each one call to the host (``host.py``) with its bound.

Keeps: a call on a closed client fails at once, without reaching the host; a client nobody
closed is released by its finalizer, still within ``close_timeout``; ``close`` waits at most
``close_timeout`` (the call that hung in issue 19); only the methods the host serves
(``CLIENT_METHODS``, ``COLLECTION_METHODS``) exist here.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

from .host import CLIENT_METHODS, COLLECTION_METHODS
from .host_lifecycle import current_host


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
        self._host = current_host()
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
