"""AWS implementations other than moto, started on loopback by the tests that use them.

Each runs as a child process in its own process group and is stopped by that group (never
by name): MiniStack (S3, SQS and DynamoDB, pure Python, in its own virtualenv: it pins
another botocore than the project's), s3rver (npm; an S3 that ignores conditional writes:
the negative control) and dynalite (npm; a DynamoDB on LevelDB, without
``UpdateTimeToLive``), and Ceph's radosgw for ``./dev compat``. All are open source (AWS's
DynamoDB Local is not, and is not used). ``./dev test`` installs them under ``.compat/``
(``VP_COMPAT_DIR``).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Mapping

from vector_pipeline.config import Settings
from vector_pipeline.cli.local_aws import free_port, stop_process_group

COMPAT_DIR = Path(os.environ.get("VP_COMPAT_DIR") or Path(__file__).resolve().parents[1] / ".compat")
MINISTACK = COMPAT_DIR / "ministack" / "bin" / "ministack"
NODE_MODULES = COMPAT_DIR / "npm" / "node_modules"
S3RVER_CREDENTIALS = "S3RVER"  # s3rver's fixed access key and secret


class LoopbackServer:
    """One server process on 127.0.0.1:``port``, ready once ``ready_path`` answers HTTP."""

    def __init__(self, name: str, argv: list[str], port: int, workdir: Path, env: Mapping[str, str] | None = None,
                 ready_path: str | None = "/") -> None:
        self.name, self.argv, self.port, self.workdir = name, argv, port, workdir
        self.env = {**os.environ, **(env or {})}
        self.ready_path = ready_path
        self.endpoint_url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout_seconds: float = 90.0) -> "LoopbackServer":
        if self.argv[0] != "node" and not Path(self.argv[0]).exists():
            raise RuntimeError(f"{self.name}: {self.argv[0]} is not installed (./dev test installs it)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.workdir / f"{self.name}.log", "wb")
        self.process = subprocess.Popen(self.argv, cwd=self.workdir, env=self.env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_seconds
        while self.ready_path is not None and time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {self.log_tail()}")
            try:
                urllib.request.urlopen(self.endpoint_url + self.ready_path, timeout=2).close()
                return self
            except urllib.error.HTTPError:  # any HTTP answer: the server is up
                return self
            except OSError:
                time.sleep(0.2)
        if self.ready_path is None:
            return self
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on {self.endpoint_url} in {timeout_seconds}s")

    def log_tail(self, size: int = 2000) -> str:
        path = self.workdir / f"{self.name}.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process_group(process, grace_seconds=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "LoopbackServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def ministack(workdir: Path) -> LoopbackServer:
    port = free_port()
    return LoopbackServer("ministack", [str(MINISTACK)], port, workdir, ready_path="/_ministack/health",
                          env={"GATEWAY_PORT": str(port), "BIND_HOST": "127.0.0.1", "MINISTACK_HOST": "127.0.0.1",
                               "LOG_LEVEL": "WARNING"})


def s3rver(workdir: Path) -> LoopbackServer:
    port = free_port()
    return LoopbackServer("s3rver", ["node", str(NODE_MODULES / "s3rver" / "bin" / "s3rver.js"), "--address",
                                     "127.0.0.1", "--port", str(port), "--directory", str(workdir / "data"),
                                     "--silent"], port, workdir)


def dynalite(workdir: Path) -> LoopbackServer:
    port = free_port()
    return LoopbackServer("dynalite", ["node", str(NODE_MODULES / "dynalite" / "cli.js"), "--host", "127.0.0.1",
                                       "--port", str(port)], port, workdir)


CEPH_CONF = """[global]
fsid = {fsid}
mon_host = v2:127.0.0.1:{mon_port}
public_network = 127.0.0.1/32
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_mon_client_mode = crc
ms_bind_ipv6 = false
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
osd_objectstore = memstore
memstore_device_bytes = 1073741824
run_dir = {dir}/run
admin_socket = {dir}/run/$name.asok
log_file = {dir}/log/$name.log
pid_file = {dir}/run/$name.pid
keyring = {dir}/keyring
[mon.a]
mon_data = {dir}/mon.a
[osd.0]
osd_data = {dir}/osd.0
[client.rgw]
rgw_frontends = beast endpoint=127.0.0.1:{rgw_port}
rgw_data = {dir}/rgw
"""


def ceph_rgw(workdir: Path, access_key: str, secret_key: str) -> list[LoopbackServer]:
    """Ceph (Debian's 16.2): monitor, memstore OSD and radosgw on loopback, no cephx, with
    one S3 user; returns the started processes, radosgw last (its ``endpoint_url``)."""
    for part in ("mon.a", "osd.0", "run", "log", "rgw"):
        (workdir / part).mkdir(parents=True, exist_ok=True)
    conf, mon_port, rgw_port, fsid = workdir / "ceph.conf", free_port(), free_port(), str(uuid.uuid4())
    conf.write_text(CEPH_CONF.format(fsid=fsid, mon_port=mon_port, rgw_port=rgw_port, dir=workdir))

    def run(*argv: str) -> str:
        done = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr[-2000:]}")
        return done.stdout

    run("ceph-authtool", "--create-keyring", str(workdir / "keyring"), "--gen-key", "-n", "mon.", "--cap", "mon", "allow *")
    run("monmaptool", "--create", "--addv", "a", f"[v2:127.0.0.1:{mon_port}]", "--fsid", fsid, str(workdir / "monmap"))
    run("ceph-mon", "-c", str(conf), "--mkfs", "-i", "a", "--monmap", str(workdir / "monmap"),
        "--keyring", str(workdir / "keyring"))
    started: list[LoopbackServer] = []
    try:
        started.append(LoopbackServer("ceph-mon", ["/usr/bin/ceph-mon", "-c", str(conf), "-f", "-i", "a"], mon_port,
                                      workdir, ready_path=None).start())
        run("ceph", "-c", str(conf), "--connect-timeout", "60", "osd", "create")
        run("ceph-osd", "-c", str(conf), "-i", "0", "--mkfs")
        started.append(LoopbackServer("ceph-osd", ["/usr/bin/ceph-osd", "-c", str(conf), "-f", "-i", "0"], 0, workdir,
                                      ready_path=None).start())
        started.append(LoopbackServer("radosgw", ["/usr/bin/radosgw", "-c", str(conf), "-f", "-n", "client.rgw"],
                                      rgw_port, workdir).start(timeout_seconds=180))
        run("radosgw-admin", "-c", str(conf), "user", "create", "--uid=vector-pipeline", "--display-name=vector-pipeline",
            f"--access-key={access_key}", f"--secret={secret_key}")
        return started
    except BaseException:
        for server in reversed(started):
            server.stop()
        raise


@dataclass
class Backend:
    """Endpoints per service and the credentials they take: what a user would export."""

    name: str
    endpoints: dict[str, str]
    access_key: str = "testing"
    secret_key: str = "testing"
    servers: tuple[LoopbackServer, ...] = ()
    sse: str = "AES256"  # VECTORS_SSE the store accepts
    etag_dialect: str = "quoted"  # the If-Match form the conditional-write check should find
    lock_table_ttl: bool = True  # whether the DynamoDB implementation has UpdateTimeToLive

    def settings(self, base: Settings) -> Settings:
        return base.replace(aws_endpoint_url=None, aws_service_endpoints=tuple(sorted(self.endpoints.items())),
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key, sse=self.sse)

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()


# Backend name → (S3 server, DynamoDB server, Backend options); SQS is always MiniStack's.
BACKENDS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "ministack": ("ministack", "ministack", {}),
    "ministack-dynalite": ("ministack", "dynalite", {"lock_table_ttl": False}),  # dynalite has no TTL
    "rgw": ("rgw", "ministack", {"sse": "none", "etag_dialect": "unquoted"}),  # stock RGW: no SSE headers
}


def start_backend(name: str, workdir: Path) -> Backend:
    """The servers of backend ``name`` (``BACKENDS``), started on loopback."""
    s3_server, table_server, options = BACKENDS[name]
    started: list[LoopbackServer] = []
    try:
        stack = ministack(workdir / "ministack")
        started.append(stack.start())
        table_url = stack.endpoint_url
        if table_server == "dynalite":
            started.append(dynalite(workdir / "dynalite").start())
            table_url = started[-1].endpoint_url
        s3_url = stack.endpoint_url
        if s3_server == "rgw":
            started.extend(ceph_rgw(workdir / "ceph", "testing", "testing"))
            s3_url = started[-1].endpoint_url
        return Backend(name, {"s3": s3_url, "sqs": stack.endpoint_url, "dynamodb": table_url},
                       servers=tuple(started), **options)
    except BaseException:
        for server in reversed(started):
            server.stop()
        raise


def unique_names(base: Settings, token: str) -> Settings:
    """Bucket, queue and table of one test (servers without a reset share the process)."""
    return base.replace(vectors_bucket=f"vp-{token}", delta_queue_name=f"vp-deltas-{token}",
                        dynamodb_table_name=f"vp-locks-{token}")
