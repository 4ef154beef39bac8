"""deploy/template.yaml for tests: load it (cfn-lint's own decoder, short-form tags and
all), deploy it into a moto server, and resolve the few intrinsic functions it uses
(Ref, Fn::Sub, Fn::GetAtt, Fn::If) for what moto's CloudFormation does not materialise."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import boto3

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "deploy" / "template.yaml"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
IMAGE_URI = f"{ACCOUNT_ID}.dkr.ecr.{REGION}.amazonaws.com/vector-pipeline:test"


def load_template() -> dict[str, Any]:
    from cfnlint.decode import decode_str

    template, problems = decode_str(TEMPLATE_PATH.read_text())
    assert not problems, problems
    return template


def boto(service: str, endpoint_url: str, access_key: str = "testing", secret_key: str = "testing") -> Any:
    return boto3.session.Session().client(service, endpoint_url=endpoint_url, region_name=REGION,
                                          aws_access_key_id=access_key, aws_secret_access_key=secret_key)


def deploy_stack(endpoint_url: str, stack_name: str, parameters: dict[str, str]) -> dict[str, str]:
    """create_stack of the template; returns the stack's outputs."""
    cloudformation = boto("cloudformation", endpoint_url)
    cloudformation.create_stack(
        StackName=stack_name, TemplateBody=TEMPLATE_PATH.read_text(), Capabilities=["CAPABILITY_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()])
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


class Resolver:
    """Resolves the template's intrinsic functions for given parameters and attributes."""

    NO_VALUE = object()

    def __init__(self, template: dict[str, Any], parameters: dict[str, str], stack_name: str,
                 attributes: dict[str, str] | None = None) -> None:
        self.template = template
        self.values = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
        self.values.update(parameters)
        self.values.update({"AWS::StackName": stack_name, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT_ID,
                            "AWS::Partition": "aws"})
        self.attributes = attributes or {}

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self.resolve(item) for item in node]
            return [item for item in items if item is not self.NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, value), = node.items()
            if key == "Ref":
                return self.NO_VALUE if value == "AWS::NoValue" else self.values.get(value, self.attributes.get(value))
            if key == "Fn::Sub":
                text, extra = (value, {}) if isinstance(value, str) else (value[0], self.resolve(value[1]))
                return re.sub(r"\$\{([^}]+)\}", lambda m: str(extra.get(m.group(1), self.values.get(
                    m.group(1), self.attributes.get(m.group(1))))), text)
            if key == "Fn::GetAtt":
                name = ".".join(value) if isinstance(value, list) else value
                return self.attributes.get(name, f"<{name}>")  # placeholders for what a test ignores
            if key == "Fn::If":
                return self.resolve(value[1] if self.condition(value[0]) else value[2])
            if key == "Fn::Equals":
                return self.resolve(value[0]) == self.resolve(value[1])
            if key == "Fn::And":
                return all(self.resolve(v) for v in value)
            if key == "Fn::Not":
                return not self.resolve(value[0])
            if key == "Condition":
                return self.condition(value)
        resolved = {k: self.resolve(v) for k, v in node.items()}
        return {k: v for k, v in resolved.items() if v is not self.NO_VALUE}

    def properties(self, logical_id: str) -> dict[str, Any]:
        return self.resolve(self.template["Resources"][logical_id]["Properties"])


def deployed_role_policy(iam: Any, role_name: str, policy_name: str) -> dict[str, Any]:
    """A role's inline policy as moto's CloudFormation stored it: a Python repr rather than
    JSON, with AWS::NoValue left as None in lists (AWS drops it): read and cleaned."""
    import ast
    import json

    document = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            document = ast.literal_eval(document)
    document["Statement"] = [s for s in document["Statement"] if s is not None]
    return document
