"""The core installs alone and works: a fresh virtualenv gets ``pip install <repo>`` with no
extras (chromadb, boto3, numpy, pydantic-settings and what they need, pinned by the lock),
and a script run there produces a delta, compacts it and queries the snapshot against the
moto server this (the dev) environment started — another environment, over HTTP.

Covers: the core's dependency list is enough for produce -> compact -> query, and none of
the roles' extras (Dagster, moto, pandas, Pinecone, torch, Powertools) comes with it.
Does not cover: the extras themselves (the rest of the suite runs with all of them)."""

from __future__ import annotations

import json
import os
import subprocess
import venv
from pathlib import Path

import pytest

from vector_pipeline.config import Settings

REPO = Path(__file__).resolve().parents[2]
# What only a role's extra brings. (rich is not here: chromadb itself requires it.)
EXTRAS_ONLY = ("dagster", "dagster_webserver", "dagster_postgres", "moto", "pandas", "pyarrow", "pinecone", "torch",
               "aws_lambda_powertools", "sentence_transformers")

SCRIPT = r"""
import importlib.util, json, sys
import numpy as np
from vector_pipeline import ChromaCompactor, produce_embedding_delta, query_snapshot
extras = [name for name in sys.argv[1].split(",") if importlib.util.find_spec(name) is not None]
rng = np.random.default_rng(7)
vectors = rng.random((20, 8), dtype=np.float32)
produced = produce_embedding_delta([f"id{i}" for i in range(20)], vectors.tolist(),
                                   documents=[f"doc {i}" for i in range(20)], collection_name="core")
result = ChromaCompactor().compact_deltas([produced["delta_key"]], collection_name="core")
answer = query_snapshot(query_embeddings=[vectors[3].tolist()], n_results=3, collection_name="core")
print(json.dumps({"extras_found": extras, "status": str(result.status), "version": result.version,
                  "nearest": answer["ids"][0], "package": sys.modules["vector_pipeline"].__file__}))
"""


@pytest.fixture(scope="module")
def core_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with the core alone, pinned by requirements.lock (pip's cache makes a
    second run quick; the first downloads chromadb's dependencies)."""
    home = tmp_path_factory.mktemp("core-venv")
    venv.EnvBuilder(with_pip=True, clear=True).create(home)
    python = home / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-c", str(REPO / "requirements.lock"), str(REPO)], check=True, timeout=900,
                   env={**os.environ, "PIP_NO_INPUT": "1"})
    return python


def test_core_alone_produces_compacts_and_queries_against_a_server_of_another_environment(
        core_python: Path, settings: Settings, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VECTOR", "AWS_", "PYTHON"))}
    env.update(settings.local_aws_environment())
    env.update(VECTOR_PIPELINE_CACHE_DIR=str(tmp_path / "cache"), READER_POINTER_TTL_SECONDS="0")
    done = subprocess.run([str(core_python), "-c", SCRIPT, ",".join(EXTRAS_ONLY)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["extras_found"] == [], f"the core install pulled in extras: {report['extras_found']}"
    assert report["status"] == "ok" and report["version"]
    assert report["nearest"][0] == "id3"
    # The script ran the core venv's installed copy of the package, not this checkout.
    assert Path(report["package"]).is_relative_to(core_python.parent.parent)
