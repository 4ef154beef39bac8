"""What the CLI shows a person: progress bars and tables on a terminal, plain text elsewhere.

Answers (tables, ``--json``) go to stdout, progress and logs to stderr, so a pipe or a
script reading stdout never sees a bar. On a terminal: one ``rich`` bar per stage with
count, rate, elapsed time and estimate; a stage opened while another runs (a delta's upload
inside "produce deltas") shows only if it lasts, and goes away when done. Not on a terminal
(CI, pipes): no bars and no control characters: one plain line per finished top-level
stage, and tables as aligned columns of plain text.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from datetime import timedelta
from typing import Any, Sequence

from rich import filesize
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.table import Column, Table
from rich.text import Text

from ..progress import Stage

NESTED_STAGE_SHOWN_AFTER_SECONDS = 0.5
DESCRIPTION_WIDTH = 40  # "upload version words/00000001-…": longer names end in an ellipsis
_QUIET_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer", "chromadb", "sentence_transformers", "httpx")


def stderr_console() -> Console:
    return Console(stderr=True)


def configure_logging(verbosity: int, console: Console) -> None:
    """Warnings only by default; ``-v`` the per-delta detail (INFO), ``-vv`` DEBUG. On a
    terminal the log prints above the bars instead of through them."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    if console.is_terminal:
        handler: logging.Handler = RichHandler(console=console, show_path=False, log_time_format="%H:%M:%S")
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in _QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def reporter_for(console: Console) -> "BarReporter | PlainReporter":
    return BarReporter(console) if console.is_terminal else PlainReporter(console)


def _amount(value: float | None, unit: str) -> str:
    if value is None:
        return "?"
    return filesize.decimal(int(value)) if unit == "B" else f"{value:,.0f}"


def _rate(per_second: float | None, unit: str) -> str:
    if not per_second:
        return ""
    return f"{filesize.decimal(int(per_second))}/s" if unit == "B" else f"{per_second:,.1f} {unit}/s"


class _CountColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "")
        suffix = "" if unit == "B" else f" {unit}"
        return Text(f"{_amount(task.completed, unit)}/{_amount(task.total, unit)}{suffix}", style="progress.download")


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        seconds = task.finished_time if task.finished else task.elapsed
        if speed is None and seconds:  # too few samples for rich's own estimate
            speed = task.completed / seconds
        return Text(_rate(speed, task.fields.get("unit", "")), style="progress.data.speed")


class _TimeColumn(ProgressColumn):
    """``0:00:04 elapsed, eta 0:00:11`` while running; ``in 0:00:15`` when done."""

    def render(self, task: Task) -> Text:
        def clock(seconds: float | None) -> str:
            return "-:--:--" if seconds is None else str(timedelta(seconds=int(seconds)))

        if task.finished:
            return Text(f"in {clock(task.finished_time)}", style="progress.elapsed")
        eta = "" if task.total is None else f", eta {clock(task.time_remaining)}"
        return Text(f"{clock(task.elapsed)} elapsed{eta}", style="progress.remaining")


class _Bar(Stage):
    def __init__(self, reporter: "BarReporter", task: TaskID, nested: bool) -> None:
        self.reporter, self.task, self.nested = reporter, task, nested
        self.started = time.monotonic()
        self.shown = not nested

    def advance(self, amount: float = 1) -> None:
        self.reporter.advance(self, amount)


class BarReporter:
    """``rich`` bars on a terminal; use as a context manager around the command."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[progress.description]{task.description}",
                       table_column=Column(max_width=DESCRIPTION_WIDTH, no_wrap=True, overflow="ellipsis")),
            BarColumn(bar_width=30), _CountColumn(), _RateColumn(), _TimeColumn(table_column=Column(no_wrap=True)),
            console=console)
        self._lock = threading.Lock()
        self._open = 0

    def __enter__(self) -> "BarReporter":
        global _active_bars
        _active_bars = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        global _active_bars
        _active_bars = None
        self.settle()

    def settle(self) -> None:
        """Leave the bars drawn so far on the screen, above what prints next (answers)."""
        with self._lock:
            if self.progress.live.is_started:
                self.progress.stop()
                for task in list(self.progress.task_ids):
                    self.progress.remove_task(task)

    def open_stage(self, description: str, total: float | None, unit: str) -> Stage:
        with self._lock:
            nested = self._open > 0
            self._open += 1
            if not self.progress.live.is_started:
                self.progress.start()
        return _Bar(self, self.progress.add_task(description, total=total, unit=unit, visible=not nested), nested)

    def advance(self, bar: _Bar, amount: float) -> None:
        self.progress.advance(bar.task, amount)
        if not bar.shown and time.monotonic() - bar.started >= NESTED_STAGE_SHOWN_AFTER_SECONDS:
            bar.shown = True
            self.progress.update(bar.task, visible=True)

    def close_stage(self, stage: Stage) -> None:
        assert isinstance(stage, _Bar)
        with self._lock:
            self._open -= 1
        if stage.nested:
            self.progress.remove_task(stage.task)
            return
        task = self.progress.tasks[[t.id for t in self.progress.tasks].index(stage.task)]
        if task.total is None:  # an open-ended stage is complete when it closes
            self.progress.update(stage.task, total=task.completed or 1, completed=task.completed or 1)


class _Count(Stage):
    def __init__(self, description: str, total: float | None, unit: str, nested: bool) -> None:
        self.description, self.total, self.unit, self.nested = description, total, unit, nested
        self.done = 0.0
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def advance(self, amount: float = 1) -> None:
        with self._lock:
            self.done += amount


class PlainReporter:
    """Not a terminal: one plain line per finished top-level stage, nothing while it runs."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._lock = threading.Lock()
        self._open = 0

    def __enter__(self) -> "PlainReporter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def open_stage(self, description: str, total: float | None, unit: str) -> Stage:
        with self._lock:
            nested = self._open > 0
            self._open += 1
        return _Count(description, total, unit, nested)

    def close_stage(self, stage: Stage) -> None:
        assert isinstance(stage, _Count)
        with self._lock:
            self._open -= 1
        if stage.nested:
            return
        seconds = time.monotonic() - stage.started
        unit = "" if stage.unit == "B" else f" {stage.unit}"
        total = "" if stage.total is None else f"/{_amount(stage.total, stage.unit)}"
        rate = _rate(stage.done / seconds if seconds > 0 else None, stage.unit)
        self.console.file.write(f"{stage.description}: {_amount(stage.done, stage.unit)}{total}{unit} "
                                f"in {seconds:.1f}s{f' ({rate})' if rate else ''}\n")
        self.console.file.flush()


# -- answers ------------------------------------------------------------------------------------


_active_bars: BarReporter | None = None


def _settle_bars() -> None:
    if _active_bars is not None:
        _active_bars.settle()


def print_json(value: Any) -> None:
    _settle_bars()
    print(json.dumps(value, indent=2, default=str), flush=True)


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                sections: Sequence[int] = (), right: Sequence[str] = ()) -> None:
    """A table on stdout: ``rich`` on a terminal, aligned plain text otherwise. ``sections``
    are row positions that start a new group; ``right`` names right-aligned columns."""
    _settle_bars()
    cells = [["" if value is None else str(value) for value in row] for row in rows]
    console = Console()
    if console.is_terminal:
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column, justify="right" if column in right else "left", overflow="fold")
        for position, row in enumerate(cells):
            if position in sections and position:
                table.add_section()
            table.add_row(*row)
        console.print(table)
        return
    widths = [max([len(column)] + [len(row[i]) for row in cells]) for i, column in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if c in right else v.ljust(w) for v, w, c in zip(values, widths, columns)).rstrip()

    out = ([title] if title else []) + [line(columns)]
    for position, row in enumerate(cells):
        if position in sections and position:
            out.append("")
        out.append(line(row))
    print("\n".join(out), flush=True)


def distance_text(distance: float) -> str:
    """Three decimals; a float-noise negative (an exact match's -1e-7) prints as 0.000."""
    return f"{max(distance, 0.0):.3f}"


def query_rows(texts: Sequence[str], result: dict[str, Any], metadata_keys: Sequence[str] | None = None
               ) -> tuple[list[str], list[list[Any]], list[int]]:
    """Columns, rows and section starts of a chroma-style query result: one group per query
    text; metadata columns are ``metadata_keys`` or every key the answers carry."""
    metadatas = result.get("metadatas") or [[None] * len(ids) for ids in result["ids"]]
    documents = result.get("documents") or [[None] * len(ids) for ids in result["ids"]]
    distances = result.get("distances") or [[None] * len(ids) for ids in result["ids"]]
    if metadata_keys is None:
        seen: dict[str, None] = {}
        for group in metadatas:
            for metadata in group:
                seen.update(dict.fromkeys(metadata or {}))
        metadata_keys = sorted(seen)  # a stable order: chroma returns metadata keys in any order
    columns = ["query", "rank", "id", "distance", "document", *metadata_keys]
    rows: list[list[Any]] = []
    sections: list[int] = []
    for text, ids, group_documents, group_metadatas, group_distances in zip(
            texts, result["ids"], documents, metadatas, distances):
        sections.append(len(rows))
        for rank, (record_id, document, metadata, distance) in enumerate(
                zip(ids, group_documents, group_metadatas, group_distances), start=1):
            rows.append([text if rank == 1 else "", rank, record_id,
                         None if distance is None else distance_text(distance), document,
                         *[(metadata or {}).get(key) for key in metadata_keys]])
        if not ids:
            rows.append([text, "", "(no results)", "", "", *[""] * len(metadata_keys)])
    return columns, rows, sections
