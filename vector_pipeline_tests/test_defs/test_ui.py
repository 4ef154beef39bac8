"""Browser test: `dagster dev` on the embedded AWS, opened in headless Chromium (Debian's
package, driven by Playwright): the asset lineage shows `delta` and the snapshot assets,
and the runs page shows a completed compaction run. Screenshots go to the test's tmp dir."""

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import dagster as dg
import numpy as np
import pytest

from vector_pipeline import produce_embedding_delta
from vector_pipeline.config import Settings
from vector_pipeline.defs import build_definitions
from vector_pipeline.local_aws import free_port, stop_process_group

from ..conftest import vectors

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def dagster_home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


@pytest.fixture
def dagster_dev(dagster_home: Path, settings: Settings, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, **settings.local_aws_environment(), "DAGSTER_HOME": str(dagster_home),
           "VECTOR_PIPELINE_CACHE_DIR": settings.cache_dir}
    log = open(tmp_path / "dagster_dev.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(port),
                                "-h", "127.0.0.1"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(f"{url}/server_info", process, timeout_seconds=180)
        yield url
    finally:
        stop_process_group(process)
        log.close()


def _wait_for(url: str, process: subprocess.Popen, timeout_seconds: float) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer in {timeout_seconds}s")


def _dismiss_welcome(page) -> None:  # type: ignore[no-untyped-def]
    """First visits show a 'Join the Dagster community' dialog over the page."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=10_000)
        skip.click()
    except Exception:  # the dialog did not appear: nothing to dismiss
        pass


def test_ui_shows_lineage_and_completed_compaction(settings: Settings, rng: np.random.Generator, dagster_home: Path,
                                                   tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: ./dev test installs it (apt-get install chromium)"
    for start in (0, 3):
        produce_embedding_delta([f"w{i}" for i in range(start, start + 3)], vectors(rng, 3), settings=settings)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        result = build_definitions(settings).resolve_job_def("compact_words").execute_in_process(instance=instance)
        assert result.success
    url = request.getfixturevalue("dagster_dev")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{url}/assets/words/snapshot?view=lineage&lineageScope=upstream&lineageDepth=3", wait_until="domcontentloaded")
        _dismiss_welcome(page)
        try:
            for name in ("delta", "snapshot_candidate", "snapshot"):
                page.get_by_text(name, exact=True).first.wait_for(timeout=90_000)
            page.get_by_text("1 / 1 Passed").first.wait_for(timeout=30_000)  # the audit check ran
        finally:
            page.screenshot(path=str(tmp_path / "lineage.png"), full_page=True)
        page.goto(f"{url}/runs", wait_until="domcontentloaded")
        _dismiss_welcome(page)
        try:
            page.get_by_text("compact_words").first.wait_for(timeout=60_000)
            page.get_by_text("Success").first.wait_for(timeout=60_000)
        finally:
            page.screenshot(path=str(tmp_path / "runs.png"), full_page=True)
        browser.close()
    assert (tmp_path / "lineage.png").stat().st_size > 10_000
    assert (tmp_path / "runs.png").stat().st_size > 10_000
