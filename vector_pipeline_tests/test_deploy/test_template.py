"""deploy/template.yaml: clean under cfn-lint; deploys into the moto server's CloudFormation
(create_stack) with the resources and settings the design asks for; the KMS parameter
reaches the bucket and the functions' encryption setting; the alarms carry the original
thresholds and CloudWatch accepts them; the dashboard exists.

moto's CloudFormation materialises only part of some resources (it drops the bucket's
public access block, lifecycle, versioning and notification, the table's TTL and SSE, a
function's PackageType, and creates no alarms): for those, the test reads the template's
resolved properties instead, and says so in each assertion's message. The IAM policies
are enforced in test_iam.py.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest

from vector_pipeline.io.aws import sse_args
from vector_pipeline.config import Settings
from vector_pipeline.cli.local_aws import MotoServer

from vector_pipeline_tests.test_deploy.cfn import IMAGE_URI, TEMPLATE_PATH, Resolver, boto, deploy_stack, deployed_role_policy, load_template

STACK = "vp"
BUCKET = "vp-vectors-test"
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/0a1b2c3d-0000-4000-8000-000000000000"


@pytest.fixture
def endpoint(moto_server: MotoServer) -> str:
    moto_server.reset()
    return moto_server.endpoint_url


def test_template_is_clean_under_cfn_lint() -> None:
    from cfnlint.api import lint, lint_file

    assert [str(m) for m in lint_file(TEMPLATE_PATH)] == []
    # The linter does look: the same template with one bad value is refused.
    broken = TEMPLATE_PATH.read_text().replace("maxReceiveCount: 5", "maxReceiveCount: five")
    assert any("five" in str(m) for m in lint(broken))


def test_stack_deploys_with_bucket_queue_table_roles_functions_and_dashboard(endpoint: str) -> None:
    outputs = deploy_stack(endpoint, STACK, {"BucketName": BUCKET, "ImageUri": IMAGE_URI})
    s3, sqs, dynamodb = boto("s3", endpoint), boto("sqs", endpoint), boto("dynamodb", endpoint)

    encryption = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert encryption["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"

    queue = sqs.get_queue_attributes(QueueUrl=outputs["DeltaQueueUrl"], AttributeNames=["All"])["Attributes"]
    redrive = json.loads(queue["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 5 and redrive["deadLetterTargetArn"].endswith(f"{STACK}-deltas-dlq")
    assert queue["SqsManagedSseEnabled"] == "true"
    assert int(queue["VisibilityTimeout"]) >= 900  # at least the compactor's timeout

    table = dynamodb.describe_table(TableName=outputs["LockTableName"])["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "lock_id", "KeyType": "HASH"}]

    iam = boto("iam", endpoint)
    roles = {r["RoleName"].split("-")[1]: r["RoleName"] for r in iam.list_roles()["Roles"]}
    assert set(roles) == {"ProducerRole", "QueryRole", "CompactorRole"}  # one role per function
    for role in roles.values():
        assert len(iam.list_role_policies(RoleName=role)["PolicyNames"]) == 1
        assert not iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]

    lambda_ = boto("lambda", endpoint)
    for kind, handler in (("producer", "producer_handler"), ("query", "query_handler"),
                          ("compactor", "compactor_handler")):
        function = lambda_.get_function(FunctionName=f"{STACK}-{kind}")
        assert function["Code"]["ImageUri"] == IMAGE_URI
        assert function["Configuration"]["Role"].split("/")[-1] == roles[f"{kind.capitalize()}Role"]
        assert function["Configuration"]["Environment"]["Variables"]["VECTORS_BUCKET"] == BUCKET
    mappings = lambda_.list_event_source_mappings(FunctionName=f"{STACK}-compactor")["EventSourceMappings"]
    assert [m["FunctionResponseTypes"] for m in mappings] == [["ReportBatchItemFailures"]]

    dashboards = boto("cloudwatch", endpoint).list_dashboards()["DashboardEntries"]
    assert [d["DashboardName"] for d in dashboards] == [f"{STACK}-operations"]
    body = json.loads(boto("cloudwatch", endpoint).get_dashboard(DashboardName=f"{STACK}-operations")["DashboardBody"])
    titles = " ".join(w["properties"]["title"] for w in body["widgets"])
    for watched in ("lock busy", "duration", "queue depth", "growth", "error rate"):
        assert watched in titles.lower()


def test_what_moto_cloudformation_leaves_out_is_declared_in_the_template() -> None:
    resolver = Resolver(load_template(), {"BucketName": BUCKET, "ImageUri": IMAGE_URI}, STACK,
                        {"DeltaQueue.Arn": "arn:queue", "LockTable.Arn": "arn:table"})
    bucket = resolver.properties("VectorsBucket")
    assert all(bucket["PublicAccessBlockConfiguration"].values()), "template: public access blocked"
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}, "template: versioning for noncurrent rules"
    rules = {r.get("Prefix"): r for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["archive/"]["Transitions"][0]["StorageClass"] == "STANDARD_IA", "template: archive/ lifecycle"
    assert rules["quarantine/"]["ExpirationInDays"] == "90", "template: quarantine/ lifecycle"
    assert rules[""]["NoncurrentVersionExpiration"]["NoncurrentDays"] == "30", "template: noncurrent versions"
    notifications = bucket["NotificationConfiguration"]["QueueConfigurations"]
    assert [{r["Name"]: r["Value"] for r in n["Filter"]["S3Key"]["Rules"]} for n in notifications] == [
        {"prefix": "delta/", "suffix": "delta.tar"}, {"prefix": "delta/", "suffix": "manifest.json"}], \
        "template: S3 event notifications on packed deltas and on format-1 delta manifests"
    assert {n["Queue"] for n in notifications} == {"arn:queue"}

    table = resolver.properties("LockTable")
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires", "Enabled": True}, "template: TTL"
    assert table["SSESpecification"]["SSEEnabled"] is True, "template: table encryption"

    for kind, handler in (("Producer", "producer_handler"), ("Query", "query_handler"),
                          ("Compactor", "compactor_handler")):
        function = resolver.properties(f"{kind}Function")
        assert function["PackageType"] == "Image", "template: container image"
        [command] = function["ImageConfig"]["Command"]
        module, name = command.rsplit(".", 1)
        assert (module, name) == ("vector_pipeline.aws_lambda.handlers", handler)
    # The command names real callables (imported here: handlers read settings at import).
    assert callable(getattr(importlib.import_module("vector_pipeline.aws_lambda.handlers"), "compactor_handler"))


def test_kms_parameter_reaches_the_bucket_and_the_encryption_setting_of_every_function(endpoint: str) -> None:
    deploy_stack(endpoint, STACK, {"BucketName": BUCKET, "ImageUri": IMAGE_URI, "EncryptionMode": "aws:kms",
                                   "KmsKeyArn": KMS_KEY})
    rule = boto("s3", endpoint).get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    resolver = Resolver(load_template(), {"BucketName": BUCKET, "ImageUri": IMAGE_URI, "EncryptionMode": "aws:kms",
                                          "KmsKeyArn": KMS_KEY}, STACK, {"DeltaQueue.Arn": "q", "LockTable.Arn": "t"})
    default = resolver.properties("VectorsBucket")["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert default["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == KMS_KEY, "template: the key"

    lambda_ = boto("lambda", endpoint)
    for kind in ("producer", "compactor"):  # the writers: every object they put honours the key
        variables = lambda_.get_function_configuration(FunctionName=f"{STACK}-{kind}")["Environment"]["Variables"]
        settings = Settings.from_env({k: str(v) for k, v in variables.items()})
        assert sse_args(settings) == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": KMS_KEY}
    roles = {r["RoleName"].split("-")[1]: r["RoleName"] for r in boto("iam", endpoint).list_roles()["Roles"]}
    for role, action in (("ProducerRole", "kms:GenerateDataKey"), ("QueryRole", "kms:Decrypt"),
                         ("CompactorRole", "kms:Decrypt")):
        statements = deployed_role_policy(boto("iam", endpoint), roles[role], _policy_name(role))["Statement"]
        assert any(action in _as_list(s["Action"]) and s["Resource"] == KMS_KEY for s in statements), role


def test_alarms_carry_the_original_thresholds_and_cloudwatch_accepts_them(endpoint: str) -> None:
    template = load_template()
    resolver = Resolver(template, {"BucketName": BUCKET, "ImageUri": IMAGE_URI}, STACK,
                        {"AlarmTopic": "arn:aws:sns:us-east-1:123456789012:vp-alarms",
                         "DeltaQueue.QueueName": f"{STACK}-deltas",
                         "DeltaDeadLetterQueue.QueueName": f"{STACK}-deltas-dlq"})
    alarms = {name: resolver.properties(name) for name, r in template["Resources"].items()
              if r["Type"] == "AWS::CloudWatch::Alarm"}
    expected = {  # name: (metric or expression, threshold)
        "LockBusyAlarm": ("100 * busy / attempts", 10),
        "CompactionDurationAlarm": ("CompactionDuration", 60),
        "QueueDepthAlarm": ("ApproximateNumberOfMessagesVisible", 1000),
        "SnapshotGrowthAlarm": ("SnapshotGrowthPercent", 20),
        "ProducerErrorRateAlarm": ("100 * errors / calls", 1),
        "DeadLetterAlarm": ("ApproximateNumberOfMessagesVisible", 0),
        "ReaderRecallAlarm": ("ReaderRecallAtK", 0.9),  # a floor: it fires below
    }
    assert set(alarms) == set(expected)
    for name, (watched, threshold) in expected.items():
        alarm = alarms[name]
        below = "LessThanThreshold" if name == "ReaderRecallAlarm" else "GreaterThanThreshold"
        assert float(alarm["Threshold"]) == threshold and alarm["ComparisonOperator"] == below
        shown = alarm.get("MetricName") or next(m["Expression"] for m in alarm["Metrics"] if m.get("ReturnData"))
        assert shown == watched, name
    assert alarms["CompactionDurationAlarm"]["ExtendedStatistic"] == "p99"
    assert alarms["SnapshotGrowthAlarm"]["Period"] == 86400 and alarms["SnapshotGrowthAlarm"]["Statistic"] == "Sum"
    assert alarms["ReaderRecallAlarm"]["Statistic"] == "Average"  # the running recall of the sampled queries

    cloudwatch = boto("cloudwatch", endpoint)
    for alarm in alarms.values():  # the same properties, as the API takes them
        cloudwatch.put_metric_alarm(**_api_shape(alarm))
    described = cloudwatch.describe_alarms()["MetricAlarms"]
    assert sorted(a["AlarmName"] for a in described) == sorted(a["AlarmName"] for a in alarms.values())


def _api_shape(alarm: dict[str, Any]) -> dict[str, Any]:
    numbers = {"Threshold": float, "EvaluationPeriods": int, "Period": int}
    shaped = {k: numbers[k](v) if k in numbers else v for k, v in alarm.items()}
    for metric in shaped.get("Metrics", []):
        if "MetricStat" in metric:
            metric["MetricStat"]["Period"] = int(metric["MetricStat"]["Period"])
    return shaped


def _policy_name(role: str) -> str:
    return "vector-pipeline-" + role.removesuffix("Role").lower()


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
