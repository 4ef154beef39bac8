"""The benchmarks' moto server answers as stock moto does: the same messages over HTTP, and the
same retention decision as moto's own check (which it replaces only to stop rebuilding every
queue attribute per message returned)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import boto3

from vector_pipeline.cli.local_aws import MotoServer

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "benchmarks" / "moto_bench_server.py"


def test_bench_server_receives_and_deletes_the_messages_sent() -> None:
    with MotoServer(server_command=[str(SERVER)]) as moto:
        sqs = boto3.client("sqs", endpoint_url=moto.endpoint_url, region_name="us-east-1",
                           aws_access_key_id="test", aws_secret_access_key="test")
        url = sqs.create_queue(QueueName="bench", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
        sent = {f"delta-{i}" for i in range(35)}
        for start in range(0, 35, 10):
            bodies = sorted(sent)[start:start + 10]
            sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)])
        received: list[str] = []
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            received += [m["Body"] for m in batch]
            sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                              for i, m in enumerate(batch)])
        assert sorted(received) == sorted(sent)
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["ApproximateNumberOfMessages"] == "0"


def test_bench_server_keeps_moto_retention_decision() -> None:
    """Fresh and expired messages, decided by moto's stock check and by the server's (in a child
    process: importing the server patches moto's classes)."""
    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        from benchmarks import moto_bench_server as server
        from moto.sqs.models import Message, SQSBackend
        backend = SQSBackend("us-east-1", "123456789012")
        backend.create_queue("q", MessageRetentionPeriod="60")
        decisions = []
        for age_s in (0, 59, 61, 3600):
            message = backend.send_message("q", "body")
            message.sent_timestamp -= age_s * 1000
            decisions.append((server.stock_is_retained(backend, "q", message), server.is_retained(backend, "q", message)))
        print(decisions)
    """)
    result = subprocess.run([sys.executable, "-c", script, str(ROOT)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[(True, True), (True, True), (False, False), (False, False)]"
