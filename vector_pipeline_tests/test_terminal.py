"""Progress stages and what the CLI makes of them: silent by default, bars with count, rate
and estimate on a terminal, one plain line per finished top-level stage elsewhere; S3
transfers and compaction stages report through the same interface (over moto's HTTP server).
The bars are rendered into a ``rich`` console forced to act as a terminal; a real terminal
and the CLI's wiring are covered by test_cli.py (piped) and by hand."""

from __future__ import annotations

import io
import re
import threading
from pathlib import Path

import numpy as np
from rich.console import Console

from vector_pipeline import progress
from vector_pipeline.compaction.compactor import ChromaCompactor
from vector_pipeline.config import Settings
from vector_pipeline.delta.produce import produce_embedding_delta
from vector_pipeline.progress import Stage
from vector_pipeline.cli.terminal import BarReporter, PlainReporter, distance_text, query_rows


class RecordingReporter:
    """Every stage opened, with what was advanced, in order."""

    def __init__(self) -> None:
        self.stages: list[dict] = []
        self.lock = threading.Lock()

    def open_stage(self, description: str, total: float | None, unit: str) -> Stage:
        record = {"description": description, "total": total, "unit": unit, "done": 0, "closed": False}
        self.stages.append(record)
        reporter = self

        class Recorded(Stage):
            def advance(self, amount: float = 1) -> None:
                with reporter.lock:
                    record["done"] += amount

        stage = Recorded()
        stage.record = record  # type: ignore[attr-defined]
        return stage

    def close_stage(self, stage: Stage) -> None:
        stage.record["closed"] = True  # type: ignore[attr-defined]


def test_a_stage_without_reporter_shows_nothing_and_passes_items_through() -> None:
    with progress.stage("work", 3, "items") as bar:
        assert list(bar.track(iter([1, 2, 3]))) == [1, 2, 3]
        bar.advance(5)


def test_bars_show_count_rate_and_estimate_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=140, color_system=None)
    with BarReporter(console) as reporter, progress.reporting_to(reporter):
        with progress.stage("produce words", 1000, "rows") as bar:
            bar.advance(250)
            reporter.progress.refresh()
            running = out.getvalue()
            bar.advance(750)
        with progress.stage("upload version words/v1", 5_000_000, "B") as bar:
            bar.advance(5_000_000)
    assert "produce words" in running and "250/1,000 rows" in running and "rows/s" in running
    assert "elapsed, eta" in running
    final = out.getvalue()
    assert "1,000/1,000 rows" in final and "5.0 MB/5.0 MB" in final and re.search(r"\d [kMG]?B/s", final)


def test_a_nested_stage_leaves_no_bar_when_done() -> None:
    console = Console(file=io.StringIO(), force_terminal=True, width=140)
    with BarReporter(console) as reporter, progress.reporting_to(reporter):
        with progress.stage("round 1: compact", 2, "deltas"):
            with progress.stage("words: fetch deltas", 2, "deltas") as inner:
                inner.advance(2)
            assert [t.description for t in reporter.progress.tasks] == ["round 1: compact"]


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    reporter = PlainReporter(Console(file=out, force_terminal=False))
    with progress.reporting_to(reporter):
        with progress.stage("round 1: produce deltas", 24, "deltas") as bar:
            with progress.stage("upload delta words/x", 100, "B") as inner:
                inner.advance(100)
            bar.advance(24)
        with progress.stage("download version words/v2", None, "B") as bar:
            bar.advance(2_500_000)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines  # the nested upload prints nothing
    assert lines[0].startswith("round 1: produce deltas: 24/24 deltas in ") and "deltas/s" in lines[0]
    assert lines[1].startswith("download version words/v2: 2.5 MB in ")
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()


def test_distances_print_with_three_decimals_and_no_negative_zero() -> None:
    assert [distance_text(d) for d in (-1.2e-7, 0.0, 0.42349, 1.5)] == ["0.000", "0.000", "0.423", "1.500"]


def test_query_rows_group_answers_by_query_with_their_metadata() -> None:
    result = {"ids": [["a", "b"], []], "documents": [["A", "B"], []], "distances": [[-1e-9, 0.5], []],
              "metadatas": [[{"receipt_id": "r1", "merchant": "M"}, {"receipt_id": "r2"}], []]}
    columns, rows, sections = query_rows(["first", "second"], result)
    # Metadata columns by name: chroma returns a record's metadata keys in no fixed order.
    assert columns == ["query", "rank", "id", "distance", "document", "merchant", "receipt_id"]
    assert rows[0] == ["first", 1, "a", "0.000", "A", "M", "r1"]
    assert rows[1] == ["", 2, "b", "0.500", "B", None, "r2"]
    assert rows[2][:3] == ["second", "", "(no results)"] and sections == [0, 2]


def test_transfers_and_compaction_report_their_stages(settings: Settings, rng: np.random.Generator) -> None:
    recorder = RecordingReporter()
    with progress.reporting_to(recorder):
        keys = [produce_embedding_delta([f"id{i}-{j}" for j in range(20)], rng.random((20, 8)).tolist(),
                                        settings=settings)["delta_key"] for i in range(3)]
        result = ChromaCompactor(settings=settings).compact_deltas(keys, "words")
    assert result.status == "ok"
    by_name = {s["description"]: s for s in recorder.stages}
    uploads = [s for s in recorder.stages if s["description"].startswith("upload delta words/")]
    assert len(uploads) == 3 and all(s["unit"] == "B" and s["done"] == s["total"] > 0 for s in uploads)
    for name, done in (("words: fetch deltas", 3), ("words: merge", 3), ("words: archive", 3)):
        assert (by_name[name]["total"], by_name[name]["done"], by_name[name]["unit"]) == (done, done, "deltas")
    [version_upload] = [s for s in recorder.stages if s["description"].startswith("upload version words/")]
    assert version_upload["done"] == version_upload["total"] == result.bytes_uploaded
    assert all(s["closed"] for s in recorder.stages)
    downloads = [s for s in recorder.stages if s["description"].startswith("download delta words/")]
    assert len(downloads) == 3 and all(s["done"] == s["total"] > 0 for s in downloads)  # inside "fetch deltas"
    order = [s["description"] for s in recorder.stages if not s["description"].startswith(("upload delta",
                                                                                           "download delta"))]
    assert order == ["words: fetch deltas", "words: merge", version_upload["description"], "words: archive"]


def test_a_stage_closes_when_its_work_fails(tmp_path: Path) -> None:
    recorder = RecordingReporter()
    try:
        with progress.reporting_to(recorder), progress.stage("doomed", 2, "items") as bar:
            bar.advance()
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert recorder.stages == [{"description": "doomed", "total": 2, "unit": "items", "done": 1, "closed": True}]
