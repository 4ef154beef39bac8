"""The ``vector-pipeline`` command as a user runs it: a real subprocess, over HTTP to the
test session's moto server (or, for ``demo``, the moto server the demo starts itself).
Output is piped here, so these tests see the plain (not-a-terminal) form: tables as plain
columns, one line per finished stage on stderr, no control characters; scripts' view is
``--json``. Bars on a real terminal are not covered (see test_terminal.py for the reporter)."""

from __future__ import annotations

import json
import os
import re
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


def plain_table(lines: list[str]) -> list[dict[str, str]]:
    """Rows of a plain table (header first) as dicts, cut at the header's column starts."""
    starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
    names = lines[0].split()
    return [{name: line[start:end].strip() for name, start, end in zip(names, starts, [*starts[1:], None])}
            for line in lines[1:] if line.strip()]


def test_help_explains_every_command() -> None:
    result = run(None, "--help")
    assert result.returncode == 0
    for command in ("local-aws", "setup", "demo", "produce", "compact", "fold", "query", "status", "collections",
                    "rebuild", "rollback", "gc"):
        assert command in result.stdout
    assert "AWS_ENDPOINT_URL" in result.stdout


def test_produce_compact_query_status_round_trip(settings: Settings, rng: np.random.Generator, tmp_path: Path) -> None:
    from vector_pipeline.chroma.embeddings import MiniLMProvider

    words = ["walmart", "banana", "coffee", "receipt", "gasoline", "milk"]
    rows = [{"id": f"w{i}", "embedding": vector, "document": word, "merchant": "demo", "n": i}
            for i, (word, vector) in enumerate(zip(words, MiniLMProvider().embed(words)))]
    rows.append({"id": "gone", "delete": True})
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run(settings, "setup").returncode == 0  # idempotent: the fixture already ran it
    produced = run(settings, "produce", str(source), "--collection", "words", "--batch-size", "4", "--json")
    assert produced.returncode == 0, produced.stderr
    report = json.loads(produced.stdout)
    assert (report["delta_count"], report["upsert_count"], report["delete_count"]) == (2, 6, 1)
    assert report["deltas"][0]["delta_key"].startswith("delta/words/")
    compacted = run(settings, "compact", "--json")
    assert compacted.returncode == 0, compacted.stderr
    [result] = json.loads(compacted.stdout)
    assert (result["collection"], result["status"], result["deltas_processed"]) == ("words", "ok", 2)
    queried = run(settings, "query", "walmart store", "--collection", "words", "-n", "1", "--json")
    assert queried.returncode == 0, queried.stderr
    answer = json.loads(queried.stdout)
    assert answer["ids"] == [["w0"]] and answer["documents"] == [["walmart"]]
    assert answer["metadatas"][0][0] == {"merchant": "demo", "n": 0}
    status = run(settings, "status", "--json")
    report = json.loads(status.stdout)
    assert report["collections"]["words"]["vector_count"] == 6
    assert report["collections"]["words"]["pending_deltas"] == 0


def test_query_with_include_pending_finds_a_delta_not_compacted_yet(settings: Settings, tmp_path: Path) -> None:
    from vector_pipeline.chroma.embeddings import MiniLMProvider

    def rows_file(name: str, words: list[str], prefix: str) -> str:
        path = tmp_path / name
        path.write_text("".join(json.dumps({"id": f"{prefix}{i}", "embedding": vector, "document": word}) + "\n"
                                for i, (word, vector) in enumerate(zip(words, MiniLMProvider().embed(words)))))
        return str(path)

    assert run(settings, "produce", rows_file("a.jsonl", ["walmart", "banana"], "a")).returncode == 0
    assert run(settings, "compact").returncode == 0
    assert run(settings, "produce", rows_file("b.jsonl", ["espresso coffee"], "b")).returncode == 0  # not compacted

    def nearest(*extra: str) -> str:
        queried = run(settings, "query", "espresso coffee", "-n", "1", "--json", *extra)
        assert queried.returncode == 0, queried.stderr
        return json.loads(queried.stdout)["ids"][0][0]

    assert nearest() != "b0"
    assert nearest("--include-pending") == "b0"
    assert nearest("--include-pending", "--consistency", "strong") == "b0"


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
    folded = run(settings, "fold", "words", "--json")
    assert folded.returncode == 0, folded.stderr
    [report] = json.loads(folded.stdout)
    assert report["fold"] == "fold_all" and report["segments"] == 1 and report["vector_count"] == 101


def test_rebuild_from_archive_up_to_a_delta(settings: Settings, rng: np.random.Generator) -> None:
    from vector_pipeline import ChromaCompactor, produce_embedding_delta

    compactor = ChromaCompactor(settings=settings)
    first = produce_embedding_delta(["a", "b"], rng.random((2, 4)).tolist(), settings=settings, notify=False)
    second = produce_embedding_delta(["c"], rng.random((1, 4)).tolist(), delete_ids=["a"], settings=settings,
                                     notify=False)
    assert compactor.compact_deltas([first["delta_key"], second["delta_key"]], "words").vector_count == 2
    rebuilt = run(settings, "rebuild", "words", "--until-delta-id", first["delta_id"], "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    [report] = json.loads(rebuilt.stdout)
    assert (report["status"], report["deltas_processed"], report["vector_count"]) == ("ok", 1, 2)
    from vector_pipeline import open_snapshot

    assert sorted(open_snapshot("words", settings=settings).get_vectors("words")["ids"]) == ["a", "b"]
    table = run(settings, "rebuild", "words")
    assert table.returncode == 0, table.stderr
    [row] = plain_table(table.stdout.splitlines())
    assert (row["collection"], row["status"], row["deltas"], row["vectors"]) == ("words", "ok", "2", "2")


def test_compact_with_nothing_pending(settings: Settings) -> None:
    result = run(settings, "compact")
    assert result.returncode == 0 and "nothing to compact" in result.stdout
    as_json = run(settings, "compact", "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout) == []


def test_query_and_status_print_plain_tables_when_piped(settings: Settings, tmp_path: Path) -> None:
    from vector_pipeline.chroma.embeddings import MiniLMProvider

    words = ["walmart", "walmart", "coffee"]
    rows = [{"id": f"r{i}#w", "embedding": vector, "document": word, "merchant": merchant, "receipt_id": f"r{i}"}
            for i, (word, merchant, vector) in enumerate(zip(words, ["WALMART", "WALMART SC", "STARBUCKS"],
                                                                MiniLMProvider().embed(words)))]
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run(settings, "produce", str(source)).returncode == 0
    compacted = run(settings, "compact")
    assert compacted.returncode == 0, compacted.stderr
    assert compacted.stdout.split("\n")[0].split() == ["collection", "status", "deltas", "version", "vectors",
                                                       "segments", "fold", "seconds", "quarantined", "error"]
    queried = run(settings, "query", "walmart", "-n", "3")
    assert queried.returncode == 0, queried.stderr
    lines = queried.stdout.splitlines()
    assert lines[1].split() == ["query", "rank", "id", "distance", "document", "merchant", "receipt_id"]
    table = plain_table(lines[1:])
    # An exact match's distance is float noise around 0: printed as 0.000, never -0.000.
    assert [(r["query"], r["rank"], r["distance"], r["document"]) for r in table[:2]] == [
        ("walmart", "1", "0.000", "walmart"), ("", "2", "0.000", "walmart")]
    assert {(r["id"], r["merchant"], r["receipt_id"]) for r in table[:2]} == {
        ("r0#w", "WALMART", "r0"), ("r1#w", "WALMART SC", "r1")}
    assert table[2]["document"] == "coffee" and "-0.000" not in queried.stdout
    status = run(settings, "status")
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[1].split()[:3] == ["collection", "version", "vectors"]
    assert status.stdout.splitlines()[2].split()[0] == "words"
    for output in (compacted, queried, status):
        assert "\x1b" not in output.stdout + output.stderr and "\r" not in output.stdout + output.stderr


def test_demo_prints_only_stage_lines_and_answer_tables(tmp_path: Path) -> None:
    """Without -v: stdout holds the two answer tables, stderr one line per finished stage."""
    result = run(None, "demo", "--receipts", "12", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    stages = result.stderr.splitlines()
    assert [line.split(":")[0] for line in stages] == [
        "round 1", "round 1", "round 1", "round 2", "round 2", "round 2", "queries"]
    assert all(re.fullmatch(r"[\w ]+(: [\w ]+)?: [\d,]+(/[\d,]+)? \w+ in \d+\.\ds( \(.*/s\))?", line)
               for line in stages), stages
    assert stages[2].startswith("round 1: compact: 24/24 deltas")  # 12 receipts: words and lines
    lines = result.stdout.splitlines()
    split = lines.index("lines: the 3 nearest of each query")
    assert lines[0] == "words: the 3 nearest of each query" and lines[1].split() == [
        "query", "rank", "id", "distance", "document", "receipt_id", "merchant"]
    words = plain_table(lines[1:split])
    total = words[words.index(next(r for r in words if r["query"] == "total amount due")):][:3]
    # Several receipts hold the word TOTAL: each answer says which receipt it came from.
    assert [(r["rank"], r["document"]) for r in total] == [("1", "TOTAL"), ("2", "TOTAL"), ("3", "TOTAL")]
    assert len({r["receipt_id"] for r in total}) == 3
    assert all(r["id"].startswith(r["receipt_id"] + "#") and r["merchant"] for r in total)
    assert len(plain_table(lines[split + 1:])) == 15  # 5 queries x 3 answers
    assert "-0.000" not in result.stdout and "\x1b" not in result.stdout + result.stderr


def test_demo_json_answers_and_versions(tmp_path: Path) -> None:
    result = run(None, "demo", "--receipts", "3", "--json", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert set(summary["versions"]) == {"words", "lines"} and summary["deltas"] == 3 * 2 + 2 * 2
    assert summary["status"]["collections"]["words"]["pending_deltas"] == 0
    coffee = summary["answers"]["lines"]["coffee"]
    assert len(coffee["ids"]) == 3 and coffee["metadatas"][0]["receipt_id"] == coffee["ids"][0].split("#")[0]


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


def test_per_delta_detail_goes_to_the_log_only_with_verbose(settings: Settings, tmp_path: Path) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps({"id": f"v{i}", "embedding": [0.1 * i, 0.2, 0.3]}) + "\n" for i in range(3)))
    quiet = run(settings, "produce", str(source), "--batch-size", "2")
    assert quiet.returncode == 0, quiet.stderr
    [stage] = quiet.stderr.splitlines()
    assert stage.startswith("produce words: 3/3 rows in ")
    assert quiet.stdout == "2 deltas written and announced (3 upserts, 0 deletes to words)\n"
    verbose = run(settings, "produce", str(source), "--batch-size", "2", "-v")
    assert verbose.returncode == 0, verbose.stderr
    assert len([line for line in verbose.stderr.splitlines() if " produced delta/words/" in line]) == 2
