"""Progress of long work: the library announces stages, whoever runs it decides what shows.

The library never prints. A long step opens a stage with a total and a unit and advances it
(``with stage("merge", total=n, unit="deltas") as bar: ... bar.advance()``); with no reporter
installed (the default: Dagster, Lambda, tests) a stage shows nothing and costs a function
call. The CLI installs a reporter for the length of a command (``reporting_to``): bars on a
terminal, plain lines elsewhere (``cli/terminal.py``). Stages may be opened and advanced from
worker threads; reporters must allow that.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator, Protocol, TypeVar

T = TypeVar("T")


class Stage:
    """One stage of work; this base shows nothing."""

    def advance(self, amount: float = 1) -> None:
        """``amount`` more units done."""

    def track(self, items: Iterable[T]) -> Iterator[T]:
        """``items``, advancing one unit as each is handed out."""
        for item in items:
            yield item
            self.advance()


class Reporter(Protocol):
    def open_stage(self, description: str, total: float | None, unit: str) -> Stage: ...

    def close_stage(self, stage: Stage) -> None: ...


_SILENT = Stage()
_reporter: Reporter | None = None


@contextmanager
def stage(description: str, total: float | None = None, unit: str = "items") -> Iterator[Stage]:
    """A stage of ``total`` ``unit`` (None: unknown), shown by the installed reporter, if any."""
    reporter = _reporter
    if reporter is None:
        yield _SILENT
        return
    opened = reporter.open_stage(description, total, unit)
    try:
        yield opened
    finally:
        reporter.close_stage(opened)


@contextmanager
def reporting_to(reporter: Reporter) -> Iterator[Reporter]:
    """Within: stages go to ``reporter`` (process-wide: worker threads report too)."""
    global _reporter
    previous, _reporter = _reporter, reporter
    try:
        yield reporter
    finally:
        _reporter = previous
