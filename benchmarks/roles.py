"""Roles of a benchmark, each in a spawned process of its own (so each peak RSS is its own)."""

from __future__ import annotations

import logging
import multiprocessing
import resource
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable


class Role:
    """One spawned process that runs the calls of one role, in order, and keeps its state."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        return self.pool.submit(function, *args).result()

    def close(self) -> float:
        """Ends the process; returns its peak RSS in MB."""
        try:
            return float(self.call(peak_rss_mb))
        finally:
            self.pool.shutdown()

    def __enter__(self) -> "Role":
        return self

    def __exit__(self, exc_type: object, *exc_info: object) -> None:
        if exc_type is not None:  # interrupted or failed: end this role's process now, not after its call
            for process in list(getattr(self.pool, "_processes", {}).values()):
                process.terminate()
        self.pool.shutdown(cancel_futures=True)


CHILD: dict[str, Any] = {}  # a role's state inside its process (its compactor, its readers)


def child_logging() -> None:
    if not CHILD.get("logging"):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
        for quiet in ("vector_pipeline", "botocore", "chromadb"):
            logging.getLogger(quiet).setLevel(logging.WARNING)
        logging.getLogger("urllib3").setLevel(logging.ERROR)  # "connection pool is full" under parallel transfers
        CHILD["logging"] = True


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def available_bytes() -> int:
    """MemAvailable of the machine (what ``free`` shows as available)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def process_peak_rss_mb(pid: int) -> float | None:
    """VmHWM of another process (moto's server), while it runs."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
