"""N acquirers of one ``CompactionLock`` key released together, round after round: the
contest of ``test_lock_contest.py`` and of ``scripts/lock_contest.py`` (which also runs it
on stock moto, where it finds two winners).

Each acquirer (a thread or a process) makes its lock, waits at a barrier with the others,
calls ``acquire()`` and reports. Even rounds contest a key never taken before; its winner
releases it once every attempt is in, and the next (odd) round contests that key, just
released.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable

from vector_pipeline.config import Settings
from vector_pipeline.io.lock import CompactionLock

BARRIER_SECONDS = 120.0


class Start(Enum):
    NEVER_TAKEN = "never taken"
    JUST_RELEASED = "just released"


class Workers(Enum):
    THREADS = "threads"
    PROCESSES = "processes"


def start_of(round_number: int) -> Start:
    return Start.NEVER_TAKEN if round_number % 2 == 0 else Start.JUST_RELEASED


def key_of(round_number: int, prefix: str) -> str:
    return f"{prefix}contest-{round_number - round_number % 2}"


@dataclass(frozen=True)
class Attempt:
    round_number: int
    acquirer: int
    owner: str
    won: bool
    fence: int | None


@dataclass(frozen=True)
class Outcome:
    """What the rounds of one contest came to."""

    attempts: tuple[Attempt, ...]

    def winners(self, round_number: int) -> list[Attempt]:
        return [a for a in self.attempts if a.round_number == round_number and a.won]

    @property
    def rounds(self) -> list[int]:
        return sorted({a.round_number for a in self.attempts})

    def rounds_without_one_winner(self) -> dict[int, int]:
        """Round → number of winners, for every round that had not exactly one."""
        counts = {r: len(self.winners(r)) for r in self.rounds}
        return {r: n for r, n in counts.items() if n != 1}

    def repeated_fences(self, prefix: str = "") -> dict[tuple[str, int], int]:
        """(key, fence) given to more than one winner: an ``ADD fence :one`` lost."""
        counted = Counter((key_of(a.round_number, prefix), a.fence) for a in self.attempts if a.won)
        return {k: n for k, n in counted.items() if n > 1}


def compete(settings: Settings, acquirer: int, rounds: int, prefix: str, barrier: Any,
            report: Callable[[Attempt], None]) -> None:
    """One acquirer's part of every round (run in a thread or a spawned process)."""
    for round_number in range(rounds):
        lock = CompactionLock(key_of(round_number, prefix), settings=settings)
        barrier.wait(BARRIER_SECONDS)  # everyone is ready: go
        won = lock.acquire()
        report(Attempt(round_number, acquirer, lock.owner, won, lock.fence if won else None))
        barrier.wait(BARRIER_SECONDS)  # every attempt of the round is in
        if won and start_of(round_number) is Start.NEVER_TAKEN:  # the next round contests it
            lock.release()
        barrier.wait(BARRIER_SECONDS)  # released before the next round's contest


def _compete_in_process(settings: Settings, acquirer: int, rounds: int, prefix: str, barrier: Any,
                        reports: Any) -> None:
    compete(settings, acquirer, rounds, prefix, barrier, reports.put)


def run_contest(settings: Settings, acquirers: int, rounds: int, workers: Workers, prefix: str = "") -> Outcome:
    """``rounds`` rounds of ``acquirers`` concurrent ``acquire()`` calls on one key each."""
    if workers is Workers.THREADS:
        barrier, found = threading.Barrier(acquirers), []
        threads = [threading.Thread(target=compete, args=(settings, i, rounds, prefix, barrier, found.append))
                   for i in range(acquirers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(BARRIER_SECONDS * 3 * rounds)
        assert not any(t.is_alive() for t in threads), "an acquirer thread did not finish"
        return Outcome(tuple(found))
    context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
    barrier, reports = context.Barrier(acquirers), context.Queue()
    processes = [context.Process(target=_compete_in_process, args=(settings, i, rounds, prefix, barrier, reports))
                 for i in range(acquirers)]
    for process in processes:
        process.start()
    attempts: list[Attempt] = []
    try:
        deadline = time.monotonic() + BARRIER_SECONDS * (1 + rounds)
        while len(attempts) < acquirers * rounds:
            try:
                attempts.append(reports.get(timeout=max(1.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"only {len(attempts)} of {acquirers * rounds} attempts reported") from None
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()  # by its own pid: started here
                process.join()
    assert all(p.exitcode == 0 for p in processes), [p.exitcode for p in processes]
    return Outcome(tuple(attempts))
