"""``vector-pipeline``: run, feed, compact, query and inspect the pipeline.

Every command reads its configuration from the environment (``config.py``; every key: docs/configuration.md); with no
``AWS_ENDPOINT_URL`` it talks to real AWS. ``local-aws`` and ``demo`` start the embedded
AWS (moto's server on loopback) themselves. Each command group is a module of
``cli/commands``; this module assembles the parser and runs one command through the one
output path (``output.py``) and the one error boundary (``errors.py``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .commands import GROUPS
from .parsers import HelpFormatter, described

EPILOG = """\
environment:
  VECTORS_BUCKET, DELTA_QUEUE_NAME (or DELTA_QUEUE_URL), DYNAMODB_TABLE_NAME,
  COMPACTION_LOCK_TTL_SECONDS (default 900), EMBEDDING_PROVIDER (minilm | openai),
  AWS_ENDPOINT_URL or per service AWS_ENDPOINT_URL_S3 / _SQS / _DYNAMODB (unset = real AWS),
  AWS_DEFAULT_REGION, AWS_MAX_ATTEMPTS (default 8), VECTOR_PIPELINE_CACHE_DIR, VECTORS_SSE (AES256 | aws:kms | none)

typical session on the embedded AWS:
  vector-pipeline local-aws            # terminal 1: prints the exports for terminal 2
  vector-pipeline produce receipts.jsonl --collection words
  vector-pipeline compact
  vector-pipeline query walmart --collection words
  vector-pipeline status

answers print as tables; --json prints JSON instead, and nothing else on stdout. -v logs the
per-delta detail (and the traceback of an error). SIGINT, SIGTERM and SIGHUP stop every
process a command started.

exit status: 0 done; 1 done but failed (a compaction, a rollback, a recall bar); 2 a usage,
configuration or input error, named on stderr; 65 some deltas quarantined; 75 busy (the lock is
held) or behind, try again; 128+N stopped by signal N.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command: progress bars (or plain lines) on stderr, answers on stdout; SIGINT,
    SIGTERM and SIGHUP stop every child process it started and exit with 128 + signal."""
    from ..progress import reporting_to
    from .errors import explain
    from .output import Exit, emit
    from .processes import Interrupted, stop_on_signals
    from .terminal import configure_logging, reporter_for, stderr_console

    args = parser().parse_args(argv)
    console = stderr_console()
    configure_logging(args.verbose, console)
    try:
        with stop_on_signals(), reporter_for(console) as reporter, reporting_to(reporter):
            return emit(args.handler(args), getattr(args, "json", False))
    except Interrupted as exc:
        return exc.exit_status
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        problem = explain(exc, _settings_or_none())
        if problem is None:
            raise  # a bug: its traceback is the report
        if args.verbose:
            import traceback

            traceback.print_exc()
        print(f"error: {problem}", file=sys.stderr, flush=True)
        return int(Exit.USAGE)


def _settings_or_none():  # type: ignore[no-untyped-def]
    from ..config import Settings

    try:
        return Settings.from_env()
    except Exception:
        return None


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="vector-pipeline", formatter_class=HelpFormatter, epilog=EPILOG,
        description="Run, feed, compact, query and inspect the vector pipeline (ChromaDB deltas and snapshots on S3).")
    root.add_argument("-v", "--verbose", action="count", default=0,
                      help="log the per-delta detail and an error's traceback (-vv: debug); by default only "
                           "bars, answers and warnings")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # -v after the command too (`./dev demo -v`); SUPPRESS keeps a -v given before it.
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    commands.add_parser = described(commands.add_parser, parents=[verbose])  # type: ignore[method-assign]
    for group in GROUPS:
        group.register(commands)
    return root
