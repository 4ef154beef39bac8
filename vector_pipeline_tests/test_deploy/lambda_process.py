"""A Lambda-like process for tests: one Python process per "container", which imports
``vector_pipeline.aws_lambda.handlers`` once (the init phase) and then serves invocations one by
one (warm starts), as the Lambda runtime does. Its stdout (Powertools' JSON logs and
EMF metric blobs) is kept, as CloudWatch Logs would keep it.

Nothing here replaces the handlers: they run unmodified, on the environment given.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from vector_pipeline.cli.local_aws import stop_process_group

# The runtime loop: read one JSON request per line from stdin, answer on fd ANSWERS.
_RUNTIME = r"""
import json, os, sys, traceback, types
prefix = json.loads(os.environ["VP_TEST_SYS_PATH_PREFIX"])
sys.path[:0] = prefix
answers = os.fdopen(int(sys.argv[1]), "w")
try:
    import vector_pipeline.aws_lambda.handlers as handlers
except Exception as exc:
    answers.write(json.dumps({"init_error": type(exc).__name__, "message": str(exc),
                              "module_file": None}) + "\n")
    answers.flush()
    raise SystemExit(1)
import aws_lambda_powertools, boto3, chromadb
answers.write(json.dumps({"ready": True, "module_file": handlers.__file__, "modules": {
    m.__name__: m.__file__ for m in (aws_lambda_powertools, boto3, chromadb)}, "sys_path": sys.path}) + "\n")
answers.flush()
for number, line in enumerate(sys.stdin):
    request = json.loads(line)
    context = types.SimpleNamespace(
        function_name=request["handler"], function_version="$LATEST", memory_limit_in_mb=1024,
        invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{request['handler']}",
        aws_request_id=f"request-{number}", log_group_name="/aws/lambda/test", log_stream_name="test")
    try:
        answer = {"result": getattr(handlers, request["handler"])(request["event"], context)}
    except Exception as exc:
        answer = {"error": type(exc).__name__, "message": str(exc)}
    sys.stdout.flush()
    answers.write(json.dumps(answer) + "\n")
    answers.flush()
"""


class LambdaProcess:
    """``invoke(handler, event)`` → the handler's answer, or ``{"error", "message"}``."""

    def __init__(self, environment: dict[str, str], log_path: Path, sys_path_prefix: list[str] | None = None,
                 python_flags: tuple[str, ...] = (), cwd: Path | None = None) -> None:
        read_end, write_end = os.pipe()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
               "VP_TEST_SYS_PATH_PREFIX": json.dumps(sys_path_prefix or []), **environment}
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, *python_flags, "-c", _RUNTIME, str(write_end)], stdin=subprocess.PIPE,
            stdout=self._log, stderr=subprocess.STDOUT, env=env, pass_fds=(write_end,), start_new_session=True,
            cwd=cwd)
        os.close(write_end)
        self._answers = os.fdopen(read_end, "r")
        self.init = self._next_answer()

    def _next_answer(self) -> dict[str, Any]:
        line = self._answers.readline()
        if not line:
            raise RuntimeError(f"the Lambda process exited; its output:\n{self.output()[-4000:]}")
        return json.loads(line)

    def invoke(self, handler: str, event: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps({"handler": handler, "event": event}) + "\n").encode())
        self.process.stdin.flush()
        return self._next_answer()

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            stop_process_group(self.process)
        self._answers.close()
        self._log.close()

    def __enter__(self) -> "LambdaProcess":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def lambda_environment(settings: Any, **extra: str) -> dict[str, str]:
    """The environment the template gives the functions, pointed at ``settings``' endpoint."""
    secret = settings.aws_secret_access_key
    return {**settings.local_aws_environment(), "VECTOR_PIPELINE_CACHE_DIR": settings.cache_dir,
            "VECTOR_COLLECTIONS": "words,lines",  # the template's default allow-list
            "COMPACTION_LOCK_TTL_SECONDS": str(settings.lock_ttl_seconds), "METRICS_SINK": "emf",
            "METRICS_NAMESPACE": settings.metrics_namespace, "READER_POINTER_TTL_SECONDS": "0",
            "AWS_ACCESS_KEY_ID": settings.aws_access_key_id or "testing",
            "AWS_SECRET_ACCESS_KEY": secret.get_secret_value() if secret else "testing", **extra}
