"""Parallel S3 transfers with progress (a ``progress`` stage in bytes, and the log).

One s3transfer ``TransferManager`` per call moves every file: files and the parts of large
files share one bounded pool, so at most ``MAX_REQUESTS_IN_FLIGHT`` requests are open at
once — fewer than the client's connection pool (``aws.py``: 32), so no request waits for a
connection. (The hand-written version ran 8 file threads, each with boto3's own 8 part
threads: up to 64 requests on a pool of 32.) The manager is told each file's size from the
manifest, so a download costs its GETs and no HeadObject. Every upload carries the
configured encryption. A failure cancels what is still queued and is raised. Progress feeds
the stage's bar, and is logged at most every few seconds and at the end, with bytes and
throughput (the CLI shows that log at ``-v``; Dagster's run logs always).
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from s3transfer.manager import TransferConfig, TransferManager
from s3transfer.subscribers import BaseSubscriber

from .. import progress


log = logging.getLogger(__name__)

MAX_REQUESTS_IN_FLIGHT = 16
_TRANSFER_CONFIG = TransferConfig(
    multipart_threshold=16 * 1024 * 1024,
    multipart_chunksize=16 * 1024 * 1024,
    max_request_concurrency=MAX_REQUESTS_IN_FLIGHT,
)


@dataclass(frozen=True)
class TransferItem:
    local_path: Path
    key: str
    size: int


class _Progress:
    """Thread-safe byte counter: the stage's bar (``progress.stage``, in bytes) and, every
    few seconds and at the end, a log line. Use as a context manager."""

    def __init__(self, verb: str, total_bytes: int, total_files: int, every_seconds: float = 2.0):
        self.verb = verb
        self.total_bytes = max(total_bytes, 1)
        self.total_files = total_files
        self.done_bytes = 0
        self.done_files = 0
        self.every_seconds = every_seconds
        self.started = time.monotonic()
        self._last_log = self.started
        self._lock = threading.Lock()
        self._stage = ExitStack()
        self.bar = self._stage.enter_context(progress.stage(verb.rstrip(":"), total_bytes, "B"))

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stage.close()

    def add_bytes(self, count: int) -> None:
        self.bar.advance(count)
        with self._lock:
            self.done_bytes += count
            now = time.monotonic()
            if now - self._last_log >= self.every_seconds:
                self._last_log = now
                self._log(now)

    def file_done(self) -> int:
        with self._lock:
            self.done_files += 1
            return self.done_files

    def finish(self) -> float:
        now = time.monotonic()
        self._log(now)
        return now - self.started

    def _log(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-6)
        log.info(
            "%s %d/%d files, %.1f/%.1f MB (%.0f%%, %.1f MB/s)",
            self.verb, self.done_files, self.total_files, self.done_bytes / 1e6,
            self.total_bytes / 1e6, 100.0 * self.done_bytes / self.total_bytes,
            self.done_bytes / 1e6 / elapsed,
        )


class _Subscriber(BaseSubscriber):
    """One file's progress into the call's counter; its size given up front (no HeadObject)."""

    def __init__(self, item: "TransferItem", counter: "_Progress", on_file_done: Callable[[int], None] | None):
        self.item, self.counter, self.on_file_done = item, counter, on_file_done

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self.item.size)

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        self.counter.add_bytes(bytes_transferred)

    def on_done(self, future: Any, **kwargs: Any) -> None:
        try:
            future.result()
        except BaseException:
            return
        done = self.counter.file_done()
        if self.on_file_done is not None:
            self.on_file_done(done)


def upload_files(s3: Any, bucket: str, items: Sequence[TransferItem], encryption: Mapping[str, str], what: str,
                 on_file_done: Callable[[int], None] | None = None) -> int:
    """Upload every item with the ``encryption`` arguments (``aws.sse_args``); returns the
    bytes sent. Raises the first failure (what is still queued is cancelled)."""
    def submit(manager: TransferManager, item: TransferItem, subscribers: list[BaseSubscriber]) -> Any:
        return manager.upload(str(item.local_path), bucket, item.key, extra_args=dict(encryption),
                              subscribers=subscribers)

    return _transfer(s3, items, f"upload {what}:", submit, on_file_done)


def download_files(s3: Any, bucket: str, items: Sequence[TransferItem], what: str) -> int:
    """Download every item to its local path (written under a temporary name, renamed when
    whole); returns the bytes received."""
    def submit(manager: TransferManager, item: TransferItem, subscribers: list[BaseSubscriber]) -> Any:
        item.local_path.parent.mkdir(parents=True, exist_ok=True)
        return manager.download(bucket, item.key, str(item.local_path), subscribers=subscribers)

    return _transfer(s3, items, f"download {what}:", submit, None)


def _transfer(s3: Any, items: Sequence[TransferItem], verb: str,
              submit: Callable[[TransferManager, TransferItem, list[BaseSubscriber]], Any],
              on_file_done: Callable[[int], None] | None) -> int:
    with _Progress(verb, sum(i.size for i in items), len(items)) as counter:
        if items:
            with TransferManager(s3, config=_TRANSFER_CONFIG) as manager:
                futures = [submit(manager, item, [_Subscriber(item, counter, on_file_done)]) for item in items]
                for future in futures:
                    future.result()
        counter.finish()
    return counter.done_bytes
