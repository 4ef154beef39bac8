"""The ``vector-pipeline`` command as a user runs it: a real subprocess, over HTTP to the
test session's moto server (or, for ``demo``, the moto server the demo starts itself)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from vector_pipeline.config import Settings


CLI = [sys.executable, "-m", "vector_pipeline.cli"]


def run(settings: Settings | None, *args: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VECTORS_", "DELTA_", "DYNAMODB_"))}
    if settings is not None:
        env.update(settings.local_aws_environment())
        env["VECTOR_PIPELINE_CACHE_DIR"] = settings.cache_dir
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def test_help_explains_every_command() -> None:
    result = run(None, "--help")
    assert result.returncode == 0
    for command in ("local-aws", "setup", "demo", "produce", "compact", "fold", "query", "status", "collections"):
        assert command in result.stdout
    assert "AWS_ENDPOINT_URL" in result.stdout


def test_produce_compact_query_status_round_trip(settings: Settings, rng: np.random.Generator, tmp_path: Path) -> None:
    from vector_pipeline.embeddings import MiniLMProvider

    words = ["walmart", "banana", "coffee", "receipt", "gasoline", "milk"]
    rows = [{"id": f"w{i}", "embedding": vector, "document": word, "merchant": "demo", "n": i}
            for i, (word, vector) in enumerate(zip(words, MiniLMProvider().embed(words)))]
    rows.append({"id": "gone", "delete": True})
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run(settings, "setup").returncode == 0  # idempotent: the fixture already ran it
    produced = run(settings, "produce", str(source), "--collection", "words", "--batch-size", "4")
    assert produced.returncode == 0, produced.stderr
    assert "2 deltas written" in produced.stdout
    compacted = run(settings, "compact")
    assert compacted.returncode == 0, compacted.stderr
    assert '"status": "ok"' in compacted.stdout and '"deltas_processed": 2' in compacted.stdout
    queried = run(settings, "query", "walmart store", "--collection", "words", "-n", "1")
    assert queried.returncode == 0, queried.stderr
    assert "w0" in queried.stdout and "'walmart'" in queried.stdout
    status = run(settings, "status", "--json")
    report = json.loads(status.stdout)
    assert report["collections"]["words"]["vector_count"] == 6
    assert report["collections"]["words"]["pending_deltas"] == 0


def test_produce_reports_bad_rows_clearly(settings: Settings, tmp_path: Path) -> None:
    source = tmp_path / "bad.jsonl"
    source.write_text('{"id": "a", "embedding": [0.1, 0.2]}\n{"id": "b", "embedding": [0.1]}\n')
    result = run(settings, "produce", str(source))
    assert result.returncode == 2
    assert "dimension" in result.stderr


def test_fold_leaves_one_segment(settings: Settings, rng: np.random.Generator) -> None:
    from vector_pipeline import ChromaCompactor, produce_embedding_delta

    compactor = ChromaCompactor(settings=settings)
    for ids in ([f"b{i}" for i in range(100)], ["n1"]):
        key = produce_embedding_delta(ids, rng.random((len(ids), 4)).tolist(), settings=settings, notify=False)
        assert compactor.compact_deltas([key["delta_key"]], "words").segments == (1 if len(ids) > 1 else 2)
    folded = run(settings, "fold", "words")
    assert folded.returncode == 0, folded.stderr
    report = json.loads(folded.stdout)
    assert report["fold"] == "fold_all" and report["segments"] == 1 and report["vector_count"] == 101


def test_compact_with_nothing_pending(settings: Settings) -> None:
    result = run(settings, "compact")
    assert result.returncode == 0 and "nothing to compact" in result.stdout


def test_demo_runs_on_its_own_embedded_aws(tmp_path: Path) -> None:
    result = run(None, "demo", "--receipts", "12", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "AWS endpoint: http://127.0.0.1:" in result.stdout
    walmart = next(line for line in result.stdout.splitlines() if line.startswith("query words 'walmart'"))
    assert "'WALMART' (WALMART SUPERCENTER" in walmart
    assert "round 2: compacted words: ok" in result.stdout


def test_produce_reads_parquet(settings: Settings, tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame({"id": ["p0", "p1"], "embedding": [[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]],
                          "document": ["first", "second"], "merchant": ["TARGET", "COSTCO"]})
    source = tmp_path / "rows.parquet"
    frame.to_parquet(source)
    produced = run(settings, "produce", str(source), "--collection", "lines")
    assert produced.returncode == 0, produced.stderr
    assert run(settings, "compact", "--collection", "lines").returncode == 0
    from vector_pipeline import open_snapshot

    got = open_snapshot("lines", settings=settings).get_vectors("lines", include=["documents", "metadatas"])
    assert dict(zip(got["ids"], got["metadatas"])) == {"p0": {"merchant": "TARGET"}, "p1": {"merchant": "COSTCO"}}
