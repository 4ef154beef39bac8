"""The function package as Lambda loads it: ``pip install --target`` of the project with its
``lambda`` extra alone (locked dependencies; no MiniLM, Dagster, moto, web server) into a
fresh directory, then the handlers imported
from that directory alone — Python started without site-packages (``-S``), outside the
repository — and invoked end to end against the moto server.

Not covered: the container image itself (deploy/Dockerfile runs the same install into
the Lambda base image; no Docker here), text embeddings (the MiniLM extra: torch).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from vector_pipeline.config import Settings

from ..conftest import vectors
from .lambda_process import LambdaProcess, lambda_environment
from .test_handlers import sqs_event

REPO = Path(__file__).resolve().parents[2]


def test_handlers_run_from_a_pip_target_directory_alone(settings: Settings, tmp_path: Path, rng: Any) -> None:
    target = tmp_path / "task_root"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--no-build-isolation",
         "--target", str(target),
         "-c", str(REPO / "requirements.lock"), f"{REPO}[lambda]"],
        capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    # A production function carries no mock AWS, no Dagster, no web server, no torch.
    carried = {p.name for p in target.iterdir()}
    assert not carried & {"moto", "dagster", "dagster_webserver", "dagster_postgres", "torch", "pandas", "pinecone"}

    with LambdaProcess(lambda_environment(settings), tmp_path / "stdout.log", sys_path_prefix=[str(target)],
                       python_flags=("-S",), cwd=tmp_path) as function:
        assert function.init.get("ready"), function.init
        assert Path(function.init["module_file"]).is_relative_to(target)
        for name, path in function.init["modules"].items():
            assert Path(path).is_relative_to(target), (name, path)
        assert not [p for p in function.init["sys_path"] if "site-packages" in p or p.startswith(str(REPO))]

        items = [{"id": f"l{i}", "embedding": e} for i, e in enumerate(vectors(rng, 3))]
        event = {"collection": "lines", "items": items}
        assert function.invoke("producer_handler", event)["result"]["vectors"] == 3
        compacted = function.invoke("compactor_handler", sqs_event(settings))["result"]
        assert compacted == {"status": "ok", "deltas_processed": 1, "batchItemFailures": []}
        found = function.invoke("query_handler", {"collection": "lines", "query_embedding": vectors(rng, 1)[0],
                                                  "n_results": 3})["result"]
        assert sorted(found["ids"][0]) == ["l0", "l1", "l2"]
