"""The command line's error boundary: every command, driven through each configuration
mistake a user can make (no credentials, an endpoint where nothing listens, a missing bucket,
queue or table, the wrong region), ends in one or two lines naming the problem and the fix,
exit 2, and no traceback; ``-v`` adds the traceback. Producer-side refusals (bad rows, the
collection's embedding) are here too.

The commands run in this process (``vector_pipeline.cli.main``) against the session's moto
server, so the matrix costs no interpreter start per case and loads no model (produce gets
vectors, not texts; query fails before it embeds). Permissions and a store that breaks the
commit protocol cannot be provoked on moto: their mapping is pinned on the exceptions botocore
and the store check raise. Not covered: real AWS."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import Iterator

import pytest

from vector_pipeline.cli import main
from vector_pipeline.cli.errors import explain
from vector_pipeline.config import Settings

COMMANDS = {
    "status": ["status"],
    "compact": ["compact"],
    "produce": ["produce", "{rows}"],
    "query": ["query", "walmart"],
    "collections list": ["collections", "list"],
    "collections create": ["collections", "create", "fresh"],
    "gc": ["gc", "words"],
    "rollback": ["rollback", "words", "--version", "1"],
    "fold": ["fold", "words"],
    "rebuild": ["rebuild", "words"],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


MISTAKES = {  # name -> (environment changes, words the message must hold)
    "no credentials": ({"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}, "AWS_ACCESS_KEY_ID"),
    # One attempt: the standard retry mode would back off for seconds per command.
    "nothing listens": ({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{_free_port()}", "AWS_MAX_ATTEMPTS": "1"},
                        "cannot reach"),
    "missing bucket": ({"VECTORS_BUCKET": "no-such-bucket"}, "bucket 'no-such-bucket' does not exist"),
    "missing queue": ({"DELTA_QUEUE_NAME": "no-such-queue"}, "queue 'no-such-queue' does not exist"),
    "missing table": ({"DYNAMODB_TABLE_NAME": "no-such-table"}, "table 'no-such-table' does not exist"),
    "wrong region": ({"AWS_DEFAULT_REGION": "eu-west-3"}, "does not exist"),
}
# What a command does not use with nothing compacted yet (compact with nothing pending takes no
# lock; fold of a collection with no version has nothing to fold and takes no lock; rollback
# refuses a version that does not exist before it locks), or never uses.
UNREACHED = {("compact", "missing table"), ("fold", "missing table"), ("fold", "wrong region"), ("produce", "missing table"), ("rollback", "missing table"),
             ("rollback", "wrong region"), ("collections list", "missing queue"), ("collections list", "missing table"),
             ("collections create", "missing queue"), ("collections create", "missing table"),
             ("query", "missing queue"), ("query", "missing table"), ("gc", "missing queue"),
             ("rollback", "missing queue"), ("fold", "missing queue"), ("rebuild", "missing queue"),
             ("collections list", "wrong region"), ("collections create", "wrong region"), ("query", "wrong region")}


@pytest.fixture
def environment(settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    for key in list(__import__("os").environ):
        if key.startswith(("AWS_", "VECTORS_", "DELTA_", "DYNAMODB_")):
            monkeypatch.delenv(key)
    for key, value in {**settings.local_aws_environment(), "VECTOR_PIPELINE_CACHE_DIR": settings.cache_dir,
                       "AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                       "AWS_CONFIG_FILE": str(tmp_path / "none")}.items():
        monkeypatch.setenv(key, value)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"id": f"r{i}", "embedding": [0.1 * i, 0.2, 0.3]}) + "\n" for i in range(2)))
    try:
        yield rows
    finally:  # the CLI logs to the stderr capsys replaced: not after the test
        logging.getLogger().handlers.clear()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def a_collection(settings: Settings) -> None:
    """A catalog record, so status, gc and the rest reach the lock table and the versions."""
    from vector_pipeline.table.catalog import CollectionCatalog, CollectionConfig

    CollectionCatalog(settings).create(CollectionConfig.defaults_for("words", settings))


@pytest.mark.parametrize(("command", "mistake"), [(c, m) for c in COMMANDS for m in MISTAKES
                                                  if (c, m) not in UNREACHED])  # what it uses, each
def test_a_configuration_mistake_is_named_in_a_line_with_exit_2(
        command: str, mistake: str, environment: Path, a_collection: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    changes, expected = MISTAKES[mistake]
    for key, value in changes.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    argv = [a.format(rows=environment) for a in COMMANDS[command]]
    status, out, err = _run(capsys, *argv)
    assert status == 2, (out, err)
    assert "Traceback" not in err and out == ""
    lines = [line for line in err.splitlines() if line.startswith("error:") or not line.startswith(("produce ",))]
    assert err.count("error:") == 1 and expected in err, err
    assert len([line for line in lines if line.strip()]) <= 3, err


def test_verbose_adds_the_traceback(environment: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VECTORS_BUCKET", "no-such-bucket")
    status, _out, err = _run(capsys, "-v", "status")
    assert status == 2 and "Traceback" in err and "NoSuchBucket" in err and "error: bucket" in err


def test_permissions_and_a_protocol_breaking_store_are_named() -> None:
    from botocore.exceptions import ClientError

    from vector_pipeline.io.conditional_writes import UnsafeEndpointError

    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject")
    assert "lack a permission" in explain(denied, Settings())
    refused = ClientError({"Error": {"Code": "InvalidAccessKeyId", "Message": "no"}}, "ListObjectsV2")
    assert "refused the credentials" in explain(refused, Settings())
    try:
        try:
            raise denied
        except ClientError as cause:
            raise RuntimeError("while writing the pointer") from cause
    except RuntimeError as wrapped:
        assert "lack a permission" in explain(wrapped, Settings())  # the cause, however wrapped
    assert "breaks the commit protocol" in explain(UnsafeEndpointError("ignores If-None-Match"), Settings())
    assert explain(KeyError("a bug"), Settings()) is None  # a bug keeps its traceback


def test_produce_refuses_every_bad_row_before_writing(environment: Path, tmp_path: Path, settings: Settings,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from vector_pipeline_tests.helpers import all_keys

    source = tmp_path / "bad.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in [
        {"id": "a", "embedding": [0.1, 0.2]}, {"id": "", "embedding": [0.1, 0.2]}, {"id": "a", "embedding": [0.3, 0.1]},
        {"id": "c", "embedding": [0.1]}, {"id": "d", "embedding": [0.1, 0.2], "metadata": {"k": None}}]) + "\n")
    status, out, err = _run(capsys, "produce", str(source), "--collection", "words")
    assert status == 2 and out == "" and "Traceback" not in err
    for row in ("row 2: id is empty", "row 3: id 'a' repeats row 1", "row 4: embedding has dimension 1",
                "row 5: metadata 'k' is None"):
        assert row in err, err
    assert all_keys(settings, "delta/") == []


def test_produce_refuses_vectors_of_another_embedding_than_the_collection(
        environment: Path, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    from vector_pipeline_tests.helpers import all_keys

    assert _run(capsys, "collections", "create", "words", "--dimension", "384")[0] == 0  # provider: the environment's
    status, _out, err = _run(capsys, "produce", str(environment), "--collection", "words")
    assert status == 2 and "(3-d) but collection 'words' holds all-MiniLM-L6-v2 (384-d)" in err, err
    assert all_keys(settings, "delta/") == []
    status, _out, err = _run(capsys, "produce", str(environment), "--collection", "../x")
    assert status == 2 and "invalid collection name" in err


def test_rollback_takes_a_version_number_and_lists_what_exists(
        environment: Path, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "produce", str(environment))[0] == 0
    assert _run(capsys, "compact")[0] == 0
    assert _run(capsys, "produce", str(environment))[0] == 0
    assert _run(capsys, "compact")[0] == 0
    status, out, _err = _run(capsys, "rollback", "words", "--version", "1", "--json")
    assert status == 0 and json.loads(out)["version"].startswith("00000001-")
    status, _out, err = _run(capsys, "rollback", "words", "--version", "7")
    assert status == 2 and "no version '7'" in err and "00000002-" in err


def test_a_quarantined_delta_shows_in_compact_exit_and_status(
        environment: Path, settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    from vector_pipeline.delta.produce import produce_embedding_delta

    assert _run(capsys, "produce", str(environment))[0] == 0  # 3-d vectors
    assert _run(capsys, "compact")[0] == 0
    status, out, _err = _run(capsys, "collections", "show", "words", "--json")  # auto-created by the delta
    assert status == 0 and (json.loads(out)["embedding_provider"], json.loads(out)["dimension"]) == (
        "all-MiniLM-L6-v2", 3)  # recorded from the first vectors
    produce_embedding_delta(["x"], [[0.1, 0.2]], settings=settings)  # a library caller skipping the check
    status, out, _err = _run(capsys, "compact", "--json")
    assert status == 65 and json.loads(out)[0]["quarantined"]
    status, out, _err = _run(capsys, "status", "--json")
    assert status == 0 and json.loads(out)["collections"]["words"]["quarantined_deltas"] == 1
    status, out, _err = _run(capsys, "status")
    assert "1 deltas quarantined" in out


def test_collections_create_takes_a_dimension_alone(environment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _run(capsys, "collections", "create", "vectors3", "--dimension", "3",
                            "--embedding-provider", "external", "--json")
    assert status == 0, err
    assert (json.loads(out)["embedding_provider"], json.loads(out)["dimension"]) == ("external", 3)
    status, out, err = _run(capsys, "collections", "create", "texts", "--dimension", "384", "--json")
    assert status == 0, err
    assert json.loads(out)["embedding_provider"] == "all-MiniLM-L6-v2"


def test_every_option_has_help() -> None:
    import argparse

    from vector_pipeline.cli.app import parser

    def walk(p: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    assert sub.description, f"{path} {name} has no description"
                    yield from walk(sub, f"{path} {name}")
            elif action.help != argparse.SUPPRESS:
                yield path, action

    missing = [f"{path} {action.dest}" for path, action in walk(parser(), "vector-pipeline") if not action.help]
    assert missing == []


def test_help_loads_neither_chromadb_nor_boto3() -> None:
    import subprocess
    import sys

    probe = ("import sys\nfrom vector_pipeline.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('chromadb', 'boto3', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[-1] == "[]", done.stderr
