"""A throwaway PostgreSQL server for tests: Debian's ``postgresql`` binaries (installed by
``./dev test``), ``initdb`` into a temporary directory, ``postgres`` on a free loopback
port, stopped by its own process group. As root (CI) the server runs as the ``postgres``
system user, since PostgreSQL refuses to run as root."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from vector_pipeline.cli.local_aws import free_port, stop_process_group

USER = "dagster"


def postgres_bin_dir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("postgres")
    return Path(found).parent if found else None


class PostgresServer:
    def __init__(self) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (./dev test installs Debian's postgresql)")
        self.bin_dir = bin_dir
        # Directly under the temp dir: pytest's own directories are private to their owner.
        root = self.root = Path(tempfile.mkdtemp(prefix="vp-postgres-"))
        self.data_dir = root / "data"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._as_user: Callable[[], None] | None = None
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            root.mkdir(parents=True, exist_ok=True)
            os.chown(root, account.pw_uid, account.pw_gid)

            def drop_privileges() -> None:
                os.setgid(account.pw_gid)
                os.setuid(account.pw_uid)

            self._as_user = drop_privileges

    def start(self, timeout_seconds: float = 60.0) -> "PostgresServer":
        initdb = subprocess.run([str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", USER, "--auth=trust",
                                 "--no-sync", "-E", "UTF8"], capture_output=True, text=True, preexec_fn=self._as_user)
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed: {initdb.stderr[-2000:]}")
        self.log_path = self.root / "postgres.log"
        self.process = subprocess.Popen(
            [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-h", "127.0.0.1", "-p", str(self.port),
             "-k", str(self.root), "-c", "fsync=off"],
            stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT, preexec_fn=self._preexec,
        )
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log_path.read_text()[-2000:]}")
            if subprocess.run([str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                              capture_output=True).returncode == 0:
                self.create_database(USER)
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"postgres did not start in {timeout_seconds}s")

    def _preexec(self) -> None:
        os.setsid()  # its own process group: stopped by it, with its children
        if self._as_user is not None:
            self._as_user()

    def connect(self, database: str = USER) -> Any:
        import psycopg2

        return psycopg2.connect(host="127.0.0.1", port=self.port, user=USER, dbname=database)

    def create_database(self, name: str) -> None:
        connection = self.connect("postgres")
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        connection.close()

    def environment(self) -> dict[str, str]:
        """The DAGSTER_POSTGRES_* variables deploy/dagster/dagster.yaml reads."""
        return {"DAGSTER_POSTGRES_HOST": "127.0.0.1", "DAGSTER_POSTGRES_PORT": str(self.port),
                "DAGSTER_POSTGRES_USER": USER, "DAGSTER_POSTGRES_PASSWORD": "unused-with-trust-auth",
                "DAGSTER_POSTGRES_DB": USER}

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:  # SIGINT: PostgreSQL's fast shutdown
            stop_process_group(process, first_signal=signal.SIGINT)
        shutil.rmtree(self.root, ignore_errors=True)
