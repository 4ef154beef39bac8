"""The template's IAM policies, enforced: a separate moto server (moto_aws_like_server.py: stock
moto, with DynamoDB requests authorized against their table as AWS does) deploys the
stack, then turns IAM authorization on (``/moto-api/reset-auth``); one IAM user per function role holds
exactly that role's policy document, resolved from deploy/template.yaml with the deployed
resources' ARNs (not retyped). Each function's credentials do their job through the
library, and every action that matters outside that job is refused with AccessDenied.

Not covered: KMS key policies (moto does not enforce them), Lambda's own invoke
permissions, the logs statements (nothing here writes CloudWatch Logs).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from vector_pipeline.io.aws import client, error_code
from vector_pipeline.compaction.compactor import ChromaCompactor, CompactionStatus
from vector_pipeline.config import Settings
from vector_pipeline.delta.produce import produce_embedding_delta
from vector_pipeline.cli.local_aws import MotoServer
from vector_pipeline.io.lock import CompactionLock, lock_id_for
from vector_pipeline.read.reader import close_readers, query_snapshot

from vector_pipeline_tests.helpers import vectors
from vector_pipeline_tests.test_deploy.cfn import IMAGE_URI, Resolver, boto, deploy_stack, load_template

STACK = "vpiam"
BUCKET = "vp-iam-vectors"
ROLES = ("ProducerRole", "QueryRole", "CompactorRole")
DENIED = {"AccessDenied", "AccessDeniedException"}


@pytest.fixture(scope="module")
def enforcing_aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Settings]]:
    """Settings per role (its user's keys) on a moto server that enforces IAM."""
    with MotoServer(server_command=[str(Path(__file__).with_name("moto_aws_like_server.py"))]) as server:
        endpoint = server.endpoint_url
        outputs = deploy_stack(endpoint, STACK, {"BucketName": BUCKET, "ImageUri": IMAGE_URI})
        sqs, dynamodb = boto("sqs", endpoint), boto("dynamodb", endpoint)
        # moto would run the compactor function on each message (it needs Docker for that):
        # the queue's trigger is disabled, the policies under test stay.
        lambda_ = boto("lambda", endpoint)
        for mapping in lambda_.list_event_source_mappings()["EventSourceMappings"]:
            lambda_.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
        attributes = {
            "DeltaQueue.Arn": _queue_arn(sqs, outputs["DeltaQueueUrl"]),
            "DeltaDeadLetterQueue.Arn": _queue_arn(sqs, outputs["DeadLetterQueueUrl"]),
            "LockTable.Arn": dynamodb.describe_table(TableName=outputs["LockTableName"])["Table"]["TableArn"],
        }
        resolver = Resolver(load_template(), {"BucketName": BUCKET, "ImageUri": IMAGE_URI}, STACK, attributes)
        iam = boto("iam", endpoint)
        base = Settings(vectors_bucket=BUCKET, delta_queue_url=outputs["DeltaQueueUrl"],
                        delta_queue_name=f"{STACK}-deltas", dynamodb_table_name=outputs["LockTableName"],
                        aws_endpoint_url=endpoint, lock_ttl_seconds=60, reader_pointer_ttl_seconds=0)
        per_role = {}
        for role in ROLES:
            [policy] = resolver.properties(role)["Policies"]
            user = f"{role.lower()}-user"
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName=policy["PolicyName"],
                                PolicyDocument=json.dumps(policy["PolicyDocument"]))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            per_role[role] = base.replace(aws_access_key_id=key["AccessKeyId"],
                                          aws_secret_access_key=key["SecretAccessKey"],
                                          cache_dir=str(tmp_path_factory.mktemp(role)))
        _enforce_iam(endpoint)
        try:
            yield per_role
        finally:
            close_readers()


def _queue_arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _enforce_iam(endpoint: str) -> None:
    """From now on every request is authenticated and authorized (moto's reset-auth)."""
    request = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(request, timeout=10).close()


def is_access_denied(exc: BaseException) -> bool:
    # moto answers JSON-protocol SQS calls with an XML error botocore cannot parse: the
    # code is then the HTTP status, and the message says who was refused what.
    code = error_code(exc)
    return code in DENIED or (code == "403" and "is not authorized to perform" in str(exc))


def assert_denied(action: Callable[[], Any]) -> None:
    with pytest.raises(Exception) as raised:
        action()
    assert is_access_denied(raised.value), f"expected AccessDenied, got {raised.value!r}"


def test_each_role_does_its_job_and_is_denied_the_rest(enforcing_aws: dict[str, Settings], rng: Any) -> None:
    producer, query, compactor = (enforcing_aws[r] for r in ROLES)

    # producer: writes a delta under delta/ and announces it — nothing else
    produced = produce_embedding_delta([f"v{i}" for i in range(4)], vectors(rng, 4), settings=producer)
    delta_key = produced["delta_key"]
    s3p, sqsp, ddbp = client("s3", producer), client("sqs", producer), client("dynamodb", producer)
    assert_denied(lambda: s3p.get_object(Bucket=BUCKET, Key=delta_key + "delta.tar"))     # s3:GetObject delta/
    assert_denied(lambda: s3p.put_object(Bucket=BUCKET, Key="snapshot/words/latest.json", Body=b"{}"))
    assert_denied(lambda: s3p.put_object(Bucket=BUCKET, Key="archive/words/x", Body=b"x"))  # outside delta/
    assert_denied(lambda: s3p.delete_object(Bucket=BUCKET, Key=delta_key + "delta.tar"))
    assert_denied(lambda: s3p.list_objects_v2(Bucket=BUCKET, Prefix="delta/"))
    assert_denied(lambda: sqsp.receive_message(QueueUrl=producer.delta_queue_url))
    assert_denied(lambda: ddbp.get_item(TableName=producer.dynamodb_table_name,
                                        Key={"lock_id": {"S": lock_id_for("words")}}))
    assert_denied(lambda: CompactionLock(lock_id_for("words"), settings=producer).acquire())

    # compactor: reads the delta, takes the lock, publishes, acknowledges and archives
    result = ChromaCompactor(settings=compactor).compact_deltas([delta_key], "words")
    assert result.status is CompactionStatus.OK, result.error
    assert result.deltas_processed == 1 and result.error is None, result.error
    s3c = client("s3", compactor)
    assert s3c.get_object(Bucket=BUCKET, Key="snapshot/words/latest.json")["Body"].read()
    archived = s3c.list_objects_v2(Bucket=BUCKET, Prefix="archive/words/")["Contents"]
    assert any(o["Key"].endswith("/delta.tar") for o in archived)
    # The sources are gone: moto authorizes DeleteObjects against the bucket's ARN and answers
    # per-key AccessDenied (AWS authorizes each key); the keys it leaves are deleted one by one.
    assert not s3c.list_objects_v2(Bucket=BUCKET, Prefix="delta/").get("KeyCount")

    # producer cannot read what the compactor published
    assert_denied(lambda: s3p.get_object(Bucket=BUCKET, Key="snapshot/words/latest.json"))
    with pytest.raises(Exception) as raised:
        query_snapshot(query_embeddings=vectors(rng, 1), collection_name="words", settings=producer)
    assert is_access_denied(raised.value)

    # Readers are kept per credentials: the query role gets a reader of its own.
    # query: reads the published version — and cannot write or reach anything else
    answer = query_snapshot(query_embeddings=vectors(rng, 1), n_results=4, collection_name="words", settings=query)
    assert sorted(answer["ids"][0]) == ["v0", "v1", "v2", "v3"]
    s3q, sqsq, ddbq = client("s3", query), client("sqs", query), client("dynamodb", query)
    assert_denied(lambda: s3q.put_object(Bucket=BUCKET, Key="snapshot/words/latest.json", Body=b"{}"))
    assert_denied(lambda: s3q.put_object(Bucket=BUCKET, Key="delta/words/x/manifest.json", Body=b"{}"))
    assert_denied(lambda: s3q.delete_object(Bucket=BUCKET, Key="snapshot/words/latest.json"))
    assert_denied(lambda: s3q.get_object(Bucket=BUCKET, Key=result_archive_key(s3c)))      # archive/
    assert_denied(lambda: s3q.list_objects_v2(Bucket=BUCKET, Prefix="snapshot/"))
    assert_denied(lambda: sqsq.send_message(QueueUrl=query.delta_queue_url, MessageBody="{}"))
    assert_denied(lambda: ddbq.update_item(TableName=query.dynamodb_table_name,
                                           Key={"lock_id": {"S": lock_id_for("words")}}))
    with pytest.raises(Exception) as raised:
        produce_embedding_delta(["q0"], vectors(rng, 1), settings=query)
    assert is_access_denied(raised.value)

    # compactor: no way to other buckets' objects, or to delete the queue or the table
    assert_denied(lambda: client("sqs", compactor).delete_queue(QueueUrl=compactor.delta_queue_url))
    assert_denied(lambda: client("dynamodb", compactor).delete_table(TableName=compactor.dynamodb_table_name))
    assert_denied(lambda: s3c.delete_bucket(Bucket=BUCKET))


def result_archive_key(s3: Any) -> str:
    return s3.list_objects_v2(Bucket=BUCKET, Prefix="archive/")["Contents"][0]["Key"]


def test_credentials_of_no_user_are_refused(enforcing_aws: dict[str, Settings]) -> None:
    stranger = enforcing_aws["QueryRole"].replace(aws_access_key_id="AKIASTRANGER00000000",
                                                  aws_secret_access_key="not-a-secret")
    with pytest.raises(Exception) as raised:
        client("s3", stranger).get_object(Bucket=BUCKET, Key="snapshot/words/latest.json")
    assert error_code(raised.value) in {"InvalidAccessKeyId", "InvalidClientTokenId", *DENIED}
