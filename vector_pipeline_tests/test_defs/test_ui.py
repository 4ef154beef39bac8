"""Browser test: what a user sees after producing deltas while `dagster dev` runs on the
embedded AWS (daemon included): the queue sensor reports the deltas as runless events of
`delta[words]` and launches the compaction itself, each collection's checks pass (the
blocking audit and `deltas_valid`), the collection-partitioned snapshot shows its partition with that collection's history and
trend, and the plot of its recall@k by partition (one point per collection),
and a `rebuild` launched as a backfill (as the UI's launchpad does, through GraphQL, with
`until_delta_id` in its config) runs. Opened in headless Chromium (Debian's package, driven
by Playwright); screenshots go to the test's tmp dir."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import dagster as dg
import numpy as np
import pytest

from vector_pipeline import produce_embedding_delta
from vector_pipeline.config import Settings
from vector_pipeline.cli.local_aws import free_port, stop_process_group
from vector_pipeline.cli.processes import wait_until_answering

from vector_pipeline_tests.helpers import vectors
from devtools.pinecone_server import DEFAULT_API_KEY, PineconeServer

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def dagster_home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


@pytest.fixture
def pinecone_index() -> Iterator[PineconeServer]:
    """The loopback Pinecone endpoint the migration assets compare against (a thread here)."""
    server = PineconeServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ui_settings(settings: Settings, pinecone_index: PineconeServer) -> Settings:
    return settings.with_overrides(pinecone_index_host=pinecone_index.host, pinecone_api_key=DEFAULT_API_KEY)


def _environment(ui_settings: Settings, dagster_home: Path) -> dict[str, str]:
    return {**os.environ, **ui_settings.local_aws_environment(), "DAGSTER_HOME": str(dagster_home)}


@pytest.fixture
def dagster_dev(dagster_home: Path, ui_settings: Settings, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = _environment(ui_settings, dagster_home)
    log = open(tmp_path / "dagster_dev.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(port),
                                "-h", "127.0.0.1"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(process, f"{url}/server_info", "dagster dev", 180, poll_seconds=1.0, request_seconds=2.0)
        yield url
    finally:
        stop_process_group(process)
        log.close()


def _dismiss_welcome(page) -> None:  # type: ignore[no-untyped-def]
    """First visits show a 'Join the Dagster community' dialog over the page."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=10_000)
        skip.click()
    except Exception:  # the dialog did not appear: nothing to dismiss
        pass


def _wait_for_success(dagster_home: Path, job_name: str, timeout_seconds: float) -> dg.DagsterRun:
    """A run of ``job_name`` once it succeeded (polling the instance's storage)."""
    deadline = time.monotonic() + timeout_seconds
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        while time.monotonic() < deadline:
            records = instance.get_run_records(dg.RunsFilter(job_name=job_name))
            failed = [r for r in records if r.dagster_run.status == dg.DagsterRunStatus.FAILURE]
            assert not failed, f"{job_name} run {failed[0].dagster_run.run_id} failed"
            done = [r.dagster_run for r in records if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS]
            if done:
                return done[0]
            time.sleep(3)
    raise TimeoutError(f"no {job_name} run succeeded within {timeout_seconds}s")


def _launch_rebuild_backfill(url: str, collections: list[str], until_delta_id: str) -> str:
    """The mutation the launchpad sends for a backfill of job ``rebuild``; the backfill's id."""
    import urllib.request

    query = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
        __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
    params = {"selector": {"partitionSetName": "rebuild_partition_set", "repositorySelector": {
        "repositoryLocationName": "vector_pipeline", "repositoryName": "__repository__"}},
        "partitionNames": collections,
        "runConfigData": {"ops": {"snapshot_candidate": {"config": {"until_delta_id": until_delta_id}}}}}
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query, "variables": {
        "params": params}}).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read())["data"]["launchPartitionBackfill"]
    assert answer["__typename"] == "LaunchBackfillSuccess", answer
    return str(answer["backfillId"])


def test_sensors_compact_what_a_user_produces_while_dagster_dev_runs(
        settings: Settings, ui_settings: Settings, rng: np.random.Generator, dagster_home: Path, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    """...and then the Pinecone comparison of the published collection materializes (migration phase 1)."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: ./dev test installs it (apt-get install chromium)"
    url = request.getfixturevalue("dagster_dev")  # running first, as a user has it
    produced = [produce_embedding_delta([f"w{i}" for i in range(start, start + 3)], vectors(rng, 3), settings=settings)
                for start in (0, 3)]
    run = _wait_for_success(dagster_home, "compaction", timeout_seconds=300)
    sensor = run.tags.get("dagster/sensor_name")  # whichever sensor ticked first after the deltas landed
    assert sensor in ("delta_queue_sensor", "delta_reconciliation_sensor") and run.tags["dagster/partition"] == "words"
    assert run.tags["vector_pipeline/writer"] == "words"
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        events = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey("delta"),
                                                                       asset_partitions=["words"]), limit=10).records
        assert events and all(not e.run_id for e in events)  # runless: no run per delta
        assert instance.get_dynamic_partitions("delta") == []  # and no partition per delta
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{url}/assets/snapshot?view=lineage&lineageScope=upstream&lineageDepth=3", wait_until="domcontentloaded")
        _dismiss_welcome(page)
        try:
            for name in ("delta", "snapshot_candidate", "snapshot"):
                page.get_by_text(name, exact=True).first.wait_for(timeout=90_000)
        finally:
            page.screenshot(path=str(tmp_path / "lineage.png"), full_page=True)
        page.goto(f"{url}/assets/delta?view=partitions", wait_until="domcontentloaded")
        try:
            page.get_by_text("words", exact=True).first.click(timeout=60_000)  # the collection, not a delta
            page.get_by_text("deltas_in_batch", exact=True).first.wait_for(timeout=30_000)  # the runless event
            page.get_by_text("oldest_pending_age_s", exact=True).first.wait_for(timeout=30_000)
        finally:
            page.screenshot(path=str(tmp_path / "delta.png"), full_page=True)
        page.goto(f"{url}/assets/snapshot_candidate?view=checks", wait_until="domcontentloaded")
        try:
            page.get_by_text("deltas_valid").first.wait_for(timeout=60_000)  # each collection's checks
            page.get_by_text("Passed", exact=True).first.wait_for(timeout=60_000)
            page.get_by_text("words", exact=True).first.wait_for(timeout=30_000)  # the check's partition
            page.get_by_text("vector_count_m").first.click(timeout=30_000)
            page.get_by_text("blocking", exact=True).first.wait_for(timeout=60_000)
            page.get_by_text("Passed", exact=True).first.wait_for(timeout=60_000)  # the blocking audit ran and passed
        finally:
            page.screenshot(path=str(tmp_path / "checks.png"), full_page=True)
        page.goto(f"{url}/assets/snapshot?view=partitions", wait_until="domcontentloaded")
        try:
            page.get_by_text("words", exact=True).first.click(timeout=60_000)  # the partition the sensor added
            page.get_by_text("vector_count", exact=True).first.wait_for(timeout=30_000)  # its metadata, readable
            page.get_by_text("deltas_applied", exact=True).first.wait_for(timeout=30_000)
            page.get_by_text("history", exact=True).first.wait_for(timeout=30_000)  # this collection's versions
            page.get_by_text(re.compile(r"last \d+ versions?: vector_count ")).first.wait_for(timeout=30_000)  # its trend
        finally:
            page.screenshot(path=str(tmp_path / "partitions.png"), full_page=True)
        page.goto(f"{url}/assets/snapshot", wait_until="domcontentloaded")
        _dismiss_welcome(page)
        try:  # the published versions' recall@k against exact search, plotted (defs/checks.py)
            page.get_by_text("Plots", exact=True).first.click(timeout=60_000)
            plot = page.get_by_text("recall_at_k", exact=True).first
            plot.wait_for(timeout=60_000)
            page.get_by_text("When graphing values by partition").first.wait_for(timeout=30_000)  # per collection
            plot.scroll_into_view_if_needed()
        finally:
            page.screenshot(path=str(tmp_path / "recall_plot.png"), full_page=True)
        # Migration phase 1, as a user launches it: the mirror fills the (empty) index, then the comparison.
        launched = subprocess.run([sys.executable, "-m", "dagster", "job", "launch", "-w", "workspace.yaml",
                                   "-j", "pinecone", "--tags", json.dumps({"dagster/partition": "words"})],
                                  cwd=ROOT, env=_environment(ui_settings, dagster_home), capture_output=True,
                                  text=True, timeout=300)
        assert launched.returncode == 0, launched.stdout + launched.stderr
        _wait_for_success(dagster_home, "pinecone", timeout_seconds=300)
        page.goto(f"{url}/assets/pinecone_comparison?view=partitions", wait_until="domcontentloaded")
        try:
            page.get_by_text("words", exact=True).first.click(timeout=60_000)
            page.get_by_text("recall_at_k_chroma", exact=True).first.wait_for(timeout=30_000)
            page.get_by_text("overlap_at_k", exact=True).first.wait_for(timeout=30_000)
        finally:
            page.screenshot(path=str(tmp_path / "pinecone.png"), full_page=True)
        page.goto(f"{url}/runs/{run.run_id}", wait_until="domcontentloaded")
        try:
            page.get_by_text("Launched by").first.wait_for(timeout=60_000)  # by the sensor (tag checked above), not by hand
            page.get_by_text("partition: words").first.wait_for(timeout=30_000)
            page.get_by_text("Success").first.wait_for(timeout=60_000)
        finally:
            page.screenshot(path=str(tmp_path / "run.png"), full_page=True)
        # A rebuild over chosen collections, launched as a backfill with until_delta_id in its config.
        backfill = _launch_rebuild_backfill(url, ["words"], produced[0]["delta_id"])
        rebuilt = _wait_for_success(dagster_home, "rebuild", timeout_seconds=300)
        assert rebuilt.tags.get("dagster/backfill") == backfill and rebuilt.tags["vector_pipeline/writer"] == "words"
        assert rebuilt.run_config["ops"]["snapshot_candidate"]["config"]["until_delta_id"] == produced[0]["delta_id"]
        page.goto(f"{url}/runs/{rebuilt.run_id}", wait_until="domcontentloaded")
        try:
            page.get_by_text("Success").first.wait_for(timeout=60_000)
            page.get_by_text(backfill).first.wait_for(timeout=30_000)  # its backfill tag
        finally:
            page.screenshot(path=str(tmp_path / "rebuild.png"), full_page=True)
        browser.close()
    for shot in ("lineage", "delta", "checks", "partitions", "recall_plot", "pinecone", "run", "rebuild"):
        assert (tmp_path / f"{shot}.png").stat().st_size > 10_000
