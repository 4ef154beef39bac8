"""The compaction loops the sustained-ingest profile (``ingest.py``) runs against: ``watch``
(``vector-pipeline compact --watch --json`` as a child process; its cycles, as JSON lines) and
``dagster`` (``dagster dev`` with its daemon against a temporary DAGSTER_HOME: the project's
sensors and compaction job; its runs, sensor ticks and instance growth read back from it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vector_pipeline.config import Settings
from vector_pipeline.cli.processes import start_group, stop_process_group, wait_until_answering

ROOT = Path(__file__).resolve().parents[1]


class WatchLoop:
    """``vector-pipeline compact --watch --json`` as a child process; its cycles, as JSON lines."""

    name = "watch"

    def __init__(self, settings: Settings, scratch: Path, wait_seconds: int = 5) -> None:
        self.settings = settings.with_overrides(cache_dir=str(scratch / "watch-cache"))
        self.out = scratch / "watch.jsonl"
        self.wait_seconds = wait_seconds

    def start(self) -> None:
        env = {**os.environ, **self.settings.local_aws_environment()}
        self.stdout = open(self.out, "w")
        self.stderr = open(self.out.with_suffix(".log"), "w")
        self.process = start_group([sys.executable, "-m", "vector_pipeline.cli", "compact", "--watch", "--json",
                                    "--interval", str(self.wait_seconds)], env=env, cwd=ROOT,
                                   stdout=self.stdout, stderr=self.stderr)

    def stop(self) -> dict[str, Any]:
        code = stop_process_group(self.process, signal.SIGTERM, grace_seconds=120)
        self.stdout.close()
        self.stderr.close()
        lines = [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]
        cycles = [line for line in lines if "cycle" in line]
        return {"exit_code": code, "summary": next((line["summary"] for line in lines if "summary" in line), None),
                "cycles": [{"started_at": c["started_at"], "seconds": c["seconds"], "deltas": c["deltas"],
                            "folds": [r.get("fold") for r in c["collections"].values() if r.get("fold")],
                            "bytes_uploaded": sum(r.get("bytes_uploaded") or 0 for r in c["collections"].values()),
                            "error": c["error"]} for c in cycles if c["deltas"] or c["error"]],
                "idle_cycles": sum(1 for c in cycles if not c["deltas"] and not c["error"])}


class DagsterLoop:
    """``dagster dev`` (webserver + daemon: the sensors report deltas and launch compaction runs)."""

    name = "dagster"

    def __init__(self, settings: Settings, scratch: Path) -> None:
        self.settings = settings.with_overrides(cache_dir=str(scratch / "dagster-cache"))
        self.home = scratch / "dagster_home"
        self.log = scratch / "dagster_dev.log"

    def start(self, timeout_seconds: float = 300) -> None:
        from vector_pipeline.cli.local_aws import free_port

        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / "dagster.yaml", self.home / "dagster.yaml")
        port = free_port()
        env = {**os.environ, **self.settings.local_aws_environment(), "DAGSTER_HOME": str(self.home)}
        self.output = open(self.log, "w")
        self.process = start_group([sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(port),
                                    "-h", "127.0.0.1"], env=env, cwd=ROOT, stdout=self.output,
                                   stderr=subprocess.STDOUT)
        wait_until_answering(self.process, f"http://127.0.0.1:{port}/server_info", f"dagster dev (log: {self.log})",
                             timeout_seconds, poll_seconds=1.0, request_seconds=2.0)
        self.growth_before = self.growth()

    def _instance(self) -> Any:
        import dagster as dg

        if getattr(self, "instance", None) is None:
            self.instance = dg.DagsterInstance.from_config(str(self.home))
        return self.instance

    def run_queue(self) -> dict[str, int]:
        import dagster as dg

        instance = self._instance()
        return {status.value.lower(): instance.get_runs_count(dg.RunsFilter(statuses=[status]))
                for status in (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTED,
                               dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)}

    def growth(self) -> dict[str, Any]:
        """Rows the instance holds now: runs, event-log rows (every sqlite file), partitions, ticks."""
        import sqlite3

        instance = self._instance()
        events = 0
        for db in (self.home / "history" / "runs").glob("*.db"):
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
                tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if "event_logs" in tables:
                    events += connection.execute("SELECT count(*) FROM event_logs").fetchone()[0]
        return {"at": time.time(), "runs": instance.get_runs_count(), "event_rows": events,
                "partitions": {name: len(instance.get_dynamic_partitions(name)) for name in ("collection", "delta")},
                "ticks": sum(len(t) for t in self._ticks().values())}

    def _ticks(self) -> dict[str, list[Any]]:
        instance = self._instance()
        return {state.instigator_name: list(instance.get_ticks(state.instigator_origin_id, state.selector_id,
                                                                limit=1_000_000))
                for state in instance.all_instigator_state()}

    def stop(self) -> dict[str, Any]:
        import dagster as dg

        instance = self._instance()
        runs = []
        for record in instance.get_run_records(dg.RunsFilter(job_name="compaction")):
            if record.start_time and record.end_time:
                runs.append({"started_at": record.start_time, "seconds": record.end_time - record.start_time,
                             "ended_at": record.end_time, "status": record.dagster_run.status.value,
                             "deltas": int(record.dagster_run.tags.get("vector_pipeline/pending_deltas", 0) or 0)})
        counts = {job: instance.get_runs_count(dg.RunsFilter(job_name=job)) for job in ("validate_delta", "compaction")}
        ticks = []
        for tick in self._ticks().get("delta_queue_sensor", []):
            cursor = json.loads(tick.cursor) if tick.cursor and tick.cursor.startswith("{") else {}
            ticks.append({"at": tick.timestamp, "seconds": (tick.end_timestamp or tick.timestamp) - tick.timestamp,
                          "status": tick.status.value, "runs": len(tick.run_ids), "receive_s": cursor.get("receive_s"),
                          "body_s": cursor.get("tick_s")})
        queue, growth = self.run_queue(), self.growth()
        instance.dispose()
        code = stop_process_group(self.process, signal.SIGINT, grace_seconds=60)
        self.output.close()
        return {"exit_code": code, "cycles": sorted(runs, key=lambda r: r["started_at"]), "runs": counts,
                "run_queue_at_end": queue, "ticks": sorted(ticks, key=lambda t: t["at"]),
                "growth": [self.growth_before, growth]}
