"""The lock contest on stock moto, on the embedded server, on dynalite and on MiniStack: how
often two acquirers of one ``CompactionLock`` key both win (docs/reliability.md, "moto's
conditional writes"). Stock moto's server is ``python -m moto.server``; the embedded server
is the same moto behind ``vector_pipeline.cli.moto_server``; dynalite and MiniStack (the lock
table only; S3 and SQS stay on the embedded server) are started as the tests start them
(``./dev test`` installs them under .compat/).

    .venv/bin/python scripts/lock_contest.py [--rounds 100] [--acquirers 2 4] [--process-acquirers 3]
                                             [--servers stock embedded dynalite ministack]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vector_pipeline.cli.local_aws import MotoServer, setup_resources  # noqa: E402
from vector_pipeline.config import Settings  # noqa: E402
from vector_pipeline_tests.compat_servers import dynalite, ministack  # noqa: E402
from vector_pipeline_tests.test_reliability.lock_contest import Start, Workers, run_contest, start_of  # noqa: E402

STOCK_MOTO = ("-m", "moto.server")
# Name on the command line → (name in the table, what starts it: None for the two moto servers).
SERVERS = {"stock": ("stock moto 5", None), "embedded": ("embedded (moto_server.py)", None),
           "dynalite": ("dynalite 4.0.0", dynalite), "ministack": ("MiniStack 1.5.33", ministack)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--acquirers", type=int, nargs="+", default=[2, 4], help="thread counts")
    parser.add_argument("--process-acquirers", type=int, nargs="+", default=[3], help="process counts")
    parser.add_argument("--servers", nargs="+", default=list(SERVERS), choices=list(SERVERS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # not the losers' "not ours to release"
    with ExitStack() as stack:
        base = Settings(cache_dir=tempfile.mkdtemp(prefix="vp-contest-"), lock_ttl_seconds=60)
        embedded = stack.enter_context(MotoServer()).settings(base)
        print("| server | acquirers | rounds | two or more winners | of them: key never taken / just released "
              "| no winner | a fence given twice | seconds |\n|---|---|---:|---:|---:|---:|---:|---:|")
        for server in args.servers:
            name, start = SERVERS[server]
            if server == "stock":
                settings = stack.enter_context(MotoServer(server_command=STOCK_MOTO)).settings(base)
            elif server == "embedded":
                settings = embedded
            else:
                table = stack.enter_context(start(Path(tempfile.mkdtemp(prefix=f"vp-{server}-"))))
                settings = replace(embedded, aws_service_endpoints=(("dynamodb", table.endpoint_url),))
            setup_resources(settings)
            runs = [(Workers.THREADS, n) for n in args.acquirers]
            runs += [(Workers.PROCESSES, n) for n in args.process_acquirers]
            for workers, count in runs:
                started = time.monotonic()
                prefix = f"{workers.value}-{count}-"
                outcome = run_contest(settings, count, args.rounds, workers, prefix=prefix)
                wrong = outcome.rounds_without_one_winner()
                many = [r for r, n in wrong.items() if n > 1]
                fresh = sum(1 for r in many if start_of(r) is Start.NEVER_TAKEN)
                print(f"| {name} | {count} {workers.value} | {args.rounds} | {len(many)} "
                      f"({100 * len(many) / args.rounds:.0f} %) | {fresh} / {len(many) - fresh} "
                      f"| {sum(1 for n in wrong.values() if n == 0)} | {len(outcome.repeated_fences(prefix))} "
                      f"| {time.monotonic() - started:.0f} |", flush=True)


if __name__ == "__main__":
    main()
