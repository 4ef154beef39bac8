"""The environment: ``local-aws`` (the embedded AWS), ``setup`` (bucket, queues, table),
``demo`` (the whole pipeline on shipped receipts) and ``dagster-dev``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ..output import Answer, Exit, add_json_flag

if TYPE_CHECKING:
    from ...config import Settings

log = logging.getLogger(__name__)


def register(commands: Any) -> None:
    local = commands.add_parser("local-aws", help="run the embedded AWS (moto's server on loopback) in the "
                                "foreground and print the exports that point other shells at it")
    local.add_argument("--port", type=int, default=5000, help="loopback port")
    local.set_defaults(handler=local_aws)

    setup = commands.add_parser("setup", help="create bucket, queues and lock table (idempotent); refuse an S3 "
                                              "endpoint that ignores conditional writes")
    add_json_flag(setup)
    setup.set_defaults(handler=run_setup)

    demo = commands.add_parser("demo", help="the whole pipeline on the shipped receipts (produce, compact, query), "
                               "on the embedded AWS unless AWS_ENDPOINT_URL names one")
    demo.add_argument("--receipts", type=int, default=None, metavar="N", help="use only the first N receipts "
                      "(default: all of them)")
    add_json_flag(demo)
    demo.set_defaults(handler=run_demo)

    dagster = commands.add_parser("dagster-dev", help="`dagster dev` (webserver and daemon) on the embedded AWS, or "
                                  "on the endpoints AWS_ENDPOINT_URL names")
    dagster.add_argument("--port", type=int, default=3000, help="the webserver's loopback port")
    dagster.add_argument("--seed-receipts", type=int, default=6, metavar="N",
                         help="produce deltas of the first N shipped receipts for the sensors to find (0: none)")
    dagster.set_defaults(handler=dagster_dev)


@contextmanager
def embedded_aws(settings: "Settings", port: int | None = None) -> Iterator["Settings"]:
    """The configured endpoint, or a moto server started (and stopped) here if none is set."""
    from ..local_aws import MotoServer, setup_resources

    if settings.uses_custom_endpoints:
        setup_resources(settings)
        yield settings
        return
    with MotoServer(port) as server:
        local = server.settings(settings)
        setup_resources(local)
        yield local


def local_aws(args: argparse.Namespace) -> Exit:
    from ...config import Settings
    from ..local_aws import MotoServer, setup_resources

    with MotoServer(args.port) as server:
        settings = server.settings(Settings.from_env())
        setup_resources(settings)
        print("embedded AWS (moto) running; in another shell:\n")
        for name, value in settings.local_aws_environment().items():
            print(f"export {name}={value}")
        print("\nCtrl-C (or SIGTERM, SIGHUP) stops it; its data lives in memory only.", flush=True)
        while server.process is not None and server.process.poll() is None:
            time.sleep(1)
    print("error: the moto server exited on its own", file=sys.stderr)
    return Exit.FAILED


def run_setup(args: argparse.Namespace) -> Answer:
    from ...config import Settings
    from ..local_aws import setup_resources
    from ..terminal import print_table

    resources = setup_resources(Settings.from_env())
    return Answer(resources, lambda data: print_table("ready (created where absent)", ["resource", "name"],
                                                      sorted(data.items())))


def run_demo(args: argparse.Namespace) -> Answer:
    from ...config import Settings
    from ..demo import run_demo as demo
    from ..status import collection_status

    base = Settings.from_env()
    if not os.environ.get("VECTOR_PIPELINE_CACHE_DIR"):
        base = base.with_overrides(cache_dir=tempfile.mkdtemp(prefix="vp-demo-"))
    started = time.perf_counter()
    with embedded_aws(base) as settings:
        log.info("AWS endpoint: %s; bucket %s", settings.describe_endpoints(), settings.vectors_bucket)
        summary = demo(settings, receipts_limit=args.receipts)
        summary["status"] = collection_status(settings)
    summary["seconds"] = time.perf_counter() - started
    return Answer(summary, _show_demo)


def _show_demo(summary: dict[str, Any]) -> None:
    from ..demo import ANSWER_FIELDS
    from .query import print_query_table
    from .status import print_status

    for collection, answers in summary["answers"].items():
        texts = list(answers)
        result = {key: [answers[t][key] for t in texts] for key in ANSWER_FIELDS}
        print_query_table(f"{collection}: the 3 nearest of each query", texts, result,
                          metadata_keys=["receipt_id", "merchant"])
    if log.isEnabledFor(logging.INFO):
        print_status(summary["status"])
    log.info("demo finished in %.1fs; timings: %s", summary["seconds"],
             ", ".join(f"{k}={v:.2f}" for k, v in summary["timings"].items()))


def dagster_dev(args: argparse.Namespace) -> int:
    from ...config import Settings
    from ..processes import start_group, stop_process_group

    root = Path.cwd()
    home = root / ".tmp_dagster_home_dev"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text((root / "dagster.yaml").read_text())
    with embedded_aws(Settings.from_env()) as settings:
        if args.seed_receipts:
            from ..demo import produce_receipts

            produced = produce_receipts(settings, args.seed_receipts)
            print(f"seeded {produced} deltas; the delta_queue_sensor picks them up within a minute")
        env = {**os.environ, **settings.local_aws_environment(), "DAGSTER_HOME": str(home)}
        print(f"dagster dev on http://127.0.0.1:{args.port} (AWS endpoint {settings.describe_endpoints()})")
        process = start_group([sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml",
                               "-p", str(args.port), "-h", "127.0.0.1"], env=env)
        try:
            return process.wait()
        finally:  # on a signal too: dagster dev stops its webserver and daemon on SIGINT
            stop_process_group(process, signal.SIGINT, grace_seconds=30)
