"""The command line's one output path and one exit-status rule.

A command returns an ``Answer``: the data (what ``--json`` prints, and nothing else on
stdout) and how to show it to a person (tables, a line). Long-running commands (``local-aws``,
``dagster-dev``, ``compact --watch``) print as they go and return an ``Exit``.

Exit status, the same for every command:
  0   done
  1   done, but what was asked for failed (a compaction FAILED, a rollback refused, recall
      below the bar, an export that did not verify)
  2   nothing (or only what the message names) was done: a usage, configuration or input
      error, explained in one or two lines on stderr (``-v``: with the traceback)
  65  done, but some deltas were quarantined (bad data; ``vector-pipeline status`` counts them)
  75  busy or behind: another process holds the lock, or the mirror lags; try again later
  128+N  stopped by signal N (130: Ctrl-C)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Callable, Iterable


class Exit(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    QUARANTINED = 65  # sysexits' EX_DATAERR
    BUSY = 75  # sysexits' EX_TEMPFAIL

    @classmethod
    def worst(cls, statuses: Iterable["Exit"]) -> "Exit":
        """One status for many results: failed over quarantined over busy over ok."""
        ranked = [cls.OK, cls.BUSY, cls.QUARANTINED, cls.FAILED, cls.USAGE]
        return max(statuses, key=ranked.index, default=cls.OK)


@dataclass
class Answer:
    data: Any  # JSON-able: what --json prints
    show: Callable[[Any], None]  # prints ``data`` for a person
    exit: Exit = Exit.OK


def emit(result: "Answer | Exit | int | None", as_json: bool) -> int:
    if isinstance(result, Answer):
        if as_json:
            from .terminal import print_json

            print_json(result.data)
        else:
            result.show(result.data)
        return int(result.exit)
    return int(result or 0)


def add_json_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument("--json", action="store_true",
                         help="print the answer as JSON on stdout, and nothing else there (default: tables)")


def print_lines(text: str) -> Callable[[Any], None]:
    """A ``show`` that prints a fixed text."""
    return lambda _data: print(text, flush=True)


def show_table(title: str | None, columns: list[str], rows_of: Callable[[Any], list[list[Any]]],
               empty: str = "", right: tuple[str, ...] = ()) -> Callable[[Any], None]:
    def show(data: Any) -> None:
        from .terminal import print_table

        rows = rows_of(data)
        if not rows and empty:
            print(empty, flush=True)
        else:
            print_table(title, columns, rows, right=list(right))
    return show
