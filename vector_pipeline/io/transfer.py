"""Parallel S3 transfers with progress (a ``progress`` stage in bytes, and the log).

Files move in parallel (a thread per file, up to ``max_workers``) and each large file in
parallel parts (boto3's transfer manager). Every upload carries the configured encryption.
Progress feeds the stage's bar, and is logged at most every few seconds and at the end, with
bytes and throughput (the CLI shows that log at ``-v``; Dagster's run logs always).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from boto3.s3.transfer import TransferConfig

from .. import progress


log = logging.getLogger(__name__)

_TRANSFER_CONFIG = TransferConfig(
    multipart_threshold=16 * 1024 * 1024,
    multipart_chunksize=16 * 1024 * 1024,
    max_concurrency=8,
    use_threads=True,
)
_MAX_WORKERS = 8


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


def upload_files(s3: Any, bucket: str, items: Sequence[TransferItem], encryption: Mapping[str, str], what: str,
                 on_file_done: Callable[[int], None] | None = None) -> int:
    """Upload every item with the ``encryption`` arguments (``aws.sse_args``); returns the
    bytes sent. Raises on the first failure."""
    with _Progress(f"upload {what}:", sum(i.size for i in items), len(items)) as progress:

        def one(item: TransferItem) -> None:
            s3.upload_file(
                str(item.local_path), bucket, item.key,
                ExtraArgs=dict(encryption), Config=_TRANSFER_CONFIG, Callback=progress.add_bytes,
            )
            done = progress.file_done()
            if on_file_done is not None:
                on_file_done(done)

        _run_all(one, items)
        progress.finish()
    return progress.done_bytes


def download_files(s3: Any, bucket: str, items: Sequence[TransferItem], what: str) -> int:
    """Download every item to its local path; returns the bytes received."""
    with _Progress(f"download {what}:", sum(i.size for i in items), len(items)) as progress:

        def one(item: TransferItem) -> None:
            item.local_path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, item.key, str(item.local_path),
                             Config=_TRANSFER_CONFIG, Callback=progress.add_bytes)
            progress.file_done()

        _run_all(one, items)
        progress.finish()
    return progress.done_bytes


def _run_all(task: Any, items: Sequence[TransferItem]) -> None:
    if not items:
        return
    with ThreadPoolExecutor(max_workers=min(_MAX_WORKERS, len(items))) as pool:
        for future in [pool.submit(task, item) for item in items]:
            future.result()
