"""The production Dagster deployment (deploy/dagster/dagster.yaml, used byte for byte):
a real PostgreSQL server holds the instance's storage, S3 (moto) its compute logs, and
the EcsRunLauncher — run by a daemon that believes it is an ECS task (its task metadata
endpoint served on loopback) — registers a task definition for the run and starts it in
the embedded ECS with the run's command. The test then plays that container: it runs the
task's command, and the compaction job runs against Postgres, publishes, uploads its
compute logs and reports its metrics to CloudWatch.

Also: the publish step works from S3 alone when it runs in another process than the write
step (two processes, two cache directories, the writer's directory deleted in between).

Not covered: a container image actually built and pulled (no Docker here), the daemon's
queue and sensors, RDS specifics (TLS, IAM auth).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from vector_pipeline.io.aws import client
from vector_pipeline.config import Settings
from vector_pipeline.delta.produce import produce_embedding_delta
from vector_pipeline.cli.local_aws import MotoServer, setup_resources
from vector_pipeline.delta.queue import DeltaQueue
from vector_pipeline.table.snapshot_store import SnapshotStore

from vector_pipeline_tests.helpers import vectors
from vector_pipeline_tests.test_deploy.postgres_server import PostgresServer, postgres_bin_dir

REPO = Path(__file__).resolve().parents[2]
PRODUCTION_YAML = REPO / "deploy" / "dagster" / "dagster.yaml"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/vector-pipeline:test"
LOGS_BUCKET = "dagster-compute-logs"

pytestmark = pytest.mark.skipif(postgres_bin_dir() is None and os.environ.get("CI") != "true",
                                reason="PostgreSQL not installed (./dev test installs it)")


@pytest.fixture(scope="module")
def aws() -> Iterator[MotoServer]:
    with MotoServer(server_command=[str(Path(__file__).with_name("moto_aws_like_server.py"))]) as server:
        yield server


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


def daemon_task(endpoint: str) -> tuple[str, str]:
    """The daemon's own Fargate task in the embedded ECS (as the infrastructure runs it)."""
    ec2, ecs = (_boto(s, endpoint) for s in ("ec2", "ecs"))
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="dagster", Description="dagster", VpcId=vpc)["GroupId"]
    cluster = ecs.create_cluster(clusterName="dagster")["cluster"]["clusterArn"]
    definition = ecs.register_task_definition(
        family="dagster-daemon", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256",
        memory="512", containerDefinitions=[{"name": "daemon", "image": IMAGE, "essential": True}],
    )["taskDefinition"]["taskDefinitionArn"]
    [task] = ecs.run_task(cluster=cluster, taskDefinition=definition, launchType="FARGATE", networkConfiguration={
        "awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group], "assignPublicIp": "DISABLED"}})["tasks"]
    return task["taskArn"], cluster


def _boto(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.session.Session().client(service, endpoint_url=endpoint, region_name="us-east-1",
                                          aws_access_key_id="testing", aws_secret_access_key="testing")


def test_compaction_run_launched_on_ecs_runs_against_postgres_and_s3(aws: MotoServer, postgres: PostgresServer,
                                                                     tmp_path: Path, rng: Any) -> None:
    aws.reset()
    settings = aws.settings(Settings(cache_dir=str(tmp_path / "cache"), lock_ttl_seconds=60, metrics_sink="cloudwatch"))
    setup_resources(settings)
    client("s3", settings).create_bucket(Bucket=LOGS_BUCKET)
    for batch in range(2):
        produce_embedding_delta([f"d{batch}-{i}" for i in range(5)], vectors(rng, 5), settings=settings)
    daemon_arn, cluster = daemon_task(aws.endpoint_url)

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(PRODUCTION_YAML, home / "dagster.yaml")
    environment = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/tmp"), "DAGSTER_HOME": str(home), "DAGSTER_CURRENT_IMAGE": IMAGE,
        "DAGSTER_COMPUTE_LOGS_BUCKET": LOGS_BUCKET, "DAGSTER_ECS_LOG_GROUP": "/ecs/dagster-runs",
        "DAGSTER_ECS_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/dagster-execution",
        "DAGSTER_ECS_TASK_ROLE_ARN": "arn:aws:iam::123456789012:role/vector-pipeline-compactor",
        **postgres.environment(), **settings.local_aws_environment(),
        "DELTA_QUEUE_URL": DeltaQueue(settings).url, "VECTORS_SSE": settings.sse, "METRICS_SINK": "cloudwatch",
        "METRICS_NAMESPACE": settings.metrics_namespace,
    }
    launched = subprocess.run([sys.executable, str(Path(__file__).with_name("ecs_daemon_launch.py")), "compaction",
                               "words", daemon_arn, cluster], cwd=REPO, env=environment, capture_output=True, text=True,
                              timeout=600)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-5000:]
    [answer] = [line for line in launched.stdout.splitlines() if line.startswith('{"run_id"')]
    assert json.loads(answer)["launcher"] == "EcsRunLauncher"
    run_id = json.loads(answer)["run_id"]

    # The launcher registered a task definition for the run and started it in the daemon's cluster.
    ecs = _boto("ecs", aws.endpoint_url)
    tasks = ecs.describe_tasks(cluster=cluster, tasks=ecs.list_tasks(cluster=cluster)["taskArns"],
                               include=["TAGS"])["tasks"]
    [run_task] = [t for t in tasks if t["taskArn"] != daemon_arn]
    assert {"key": "dagster/run_id", "value": run_id} in run_task["tags"]
    definition = ecs.describe_task_definition(taskDefinition=run_task["taskDefinitionArn"])["taskDefinition"]
    [container] = definition["containerDefinitions"]
    assert (container["name"], container["image"]) == ("run", IMAGE)
    assert definition["requiresCompatibilities"] == ["FARGATE"]
    assert definition["taskRoleArn"].endswith("role/vector-pipeline-compactor")
    container_env = {e["name"]: e["value"] for e in container["environment"]}
    assert container_env["VECTORS_BUCKET"] == settings.vectors_bucket
    [override] = run_task["overrides"]["containerOverrides"]
    command = override["command"]
    assert command[:3] == ["dagster", "api", "execute_run"] and run_id in command[3]

    # Play the container: its command, its environment (the task definition's + the image's).
    container_run = subprocess.run(command, cwd=REPO, env={**environment, **container_env}, capture_output=True,
                                   text=True, timeout=600)
    assert container_run.returncode == 0, container_run.stderr[-5000:]

    with postgres.connect() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))
        assert cursor.fetchone() == ("SUCCESS",)
        cursor.execute("SELECT count(*) FROM event_logs WHERE run_id = %s", (run_id,))
        assert cursor.fetchone()[0] > 10
    pointer = SnapshotStore(settings).read_pointer("words")
    assert pointer is not None and pointer.document.vector_count == 10
    logs = client("s3", settings).list_objects_v2(Bucket=LOGS_BUCKET, Prefix="dagster/compute-logs/")
    assert any(o["Key"].endswith(".out") or o["Key"].endswith(".err") for o in logs.get("Contents", [])), logs

    # The run's metrics, in the namespace the handlers use.
    now = datetime.now(timezone.utc)
    cloudwatch = client("cloudwatch", settings)
    stats = cloudwatch.get_metric_statistics(
        Namespace=settings.metrics_namespace, MetricName="DeltasProcessed", Statistics=["Sum"], Period=3600,
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=5),
        Dimensions=[{"Name": "service", "Value": "vector-pipeline"}])["Datapoints"]
    assert sum(p["Sum"] for p in stats) == 2
    names = {m["MetricName"] for m in cloudwatch.list_metrics(Namespace=settings.metrics_namespace)["Metrics"]}
    assert {"CompactionAttempts", "CompactionLockBusy", "CompactionDuration", "SnapshotBytes"} <= names


_WRITE = """
import pickle, sys
from vector_pipeline.compaction.compactor import ChromaCompactor
from vector_pipeline.config import Settings
settings = Settings.from_env()
compactor = ChromaCompactor(settings=settings)
candidate = compactor.write_candidate("words", compactor.list_pending_delta_keys("words"))
open(sys.argv[1], "wb").write(pickle.dumps(candidate))
print(candidate.local_dir)
"""

_AUDIT_AND_PUBLISH = """
import pickle, sys
from vector_pipeline.compaction.audit import audit_candidate
from vector_pipeline.compaction.compactor import ChromaCompactor
from vector_pipeline.config import Settings
from vector_pipeline.read.reader import open_snapshot
settings = Settings.from_env()
candidate = pickle.loads(open(sys.argv[1], "rb").read())
report = audit_candidate(settings, candidate)
assert report.passed, report.problem
compactor = ChromaCompactor(settings=settings)
print(compactor.publish_candidate(candidate).name)
compactor.acknowledge(candidate, {})
print(open_snapshot("words", settings=settings).count("words"))
"""


def test_publish_step_works_from_s3_in_another_process_with_its_own_cache(settings: Settings, tmp_path: Path,
                                                                          rng: Any) -> None:
    produce_embedding_delta([f"h{i}" for i in range(6)], vectors(rng, 6), settings=settings)
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
            **settings.local_aws_environment()}
    handoff = tmp_path / "candidate.pickle"  # what an IO manager would carry between steps
    writer_cache, publisher_cache = tmp_path / "writer-cache", tmp_path / "publisher-cache"
    write = subprocess.run([sys.executable, "-c", _WRITE, str(handoff)], capture_output=True, text=True,
                           env={**base, "VECTOR_PIPELINE_CACHE_DIR": str(writer_cache)}, timeout=300)
    assert write.returncode == 0, write.stderr[-3000:]
    assert write.stdout.strip().startswith(str(writer_cache))
    shutil.rmtree(writer_cache)  # the writer's container is gone: nothing local survives
    publish = subprocess.run([sys.executable, "-c", _AUDIT_AND_PUBLISH, str(handoff)], capture_output=True, text=True,
                             env={**base, "VECTOR_PIPELINE_CACHE_DIR": str(publisher_cache)}, timeout=300)
    assert publish.returncode == 0, publish.stderr[-3000:]
    assert publish.stdout.split() == ["PUBLISHED", "6"]
    assert not writer_cache.exists()
    assert not client("s3", settings).list_objects_v2(Bucket=settings.vectors_bucket, Prefix="delta/").get("KeyCount")
