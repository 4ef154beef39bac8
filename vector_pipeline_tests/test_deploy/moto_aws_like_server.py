"""moto's server with two corrections toward AWS, for the IAM and ECS-launcher tests.

1. IAM for DynamoDB. moto 5 authorizes SQS requests against the queue's ARN and S3
   requests against the object's ARN, but DynamoDB requests against ``"*"``: a
   least-privilege statement naming its table (as AWS evaluates it, and as
   deploy/template.yaml writes it) then matches no DynamoDB request at all. Here a
   DynamoDB request carries its table's ARN, the way moto's SQS handler already does for
   queues. This only makes authorization closer to AWS: a statement must name the right
   table; nothing stock moto refuses to a ``"*"`` statement is allowed.
2. ECS on Fargate. moto sums container-level memory to place a task and crashes (HTTP
   500) on a container definition without one; AWS accepts such definitions on Fargate,
   where the task-level memory counts (Dagster's EcsRunLauncher registers exactly those).
   Here a container without memory counts as 0 for placement, which Fargate does not use.

Everything else is the embedded server (moto, conditional writes atomic: ``vector_pipeline.cli.moto_server``).
Run as a script: ``python moto_aws_like_server.py -H HOST -p PORT``.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

from moto.dynamodb.responses import DynamoHandler
from moto.ecs.models import EC2ContainerServiceBackend

from vector_pipeline.cli.moto_server import main

_MEMORY_KEYS = ("memory", "memoryReservation", "Memory", "MemoryReservation")


def _table_resource(self: Any) -> str:
    params = self.body if isinstance(self.body, dict) else {}
    name = params.get("TableName")
    if not isinstance(name, str):
        return "*"
    return f"arn:aws:dynamodb:{self.region}:{self.current_account}:table/{name}"


_stock_requirements = EC2ContainerServiceBackend._calculate_task_resource_requirements


def _requirements_without_container_memory(task_definition: Any) -> dict[str, Any]:
    containers = [c if any(c.get(k) is not None for k in _MEMORY_KEYS) else {**c, "memoryReservation": 0}
                  for c in task_definition.container_definitions]
    return _stock_requirements(SimpleNamespace(container_definitions=containers))


DynamoHandler._determine_resource = _table_resource  # type: ignore[attr-defined]
EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(  # type: ignore[method-assign]
    _requirements_without_container_memory)

if __name__ == "__main__":
    main(sys.argv[1:])
