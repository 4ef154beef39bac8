"""moto's server for the IAM tests, with DynamoDB requests authorized against their table.

moto 5 authorizes SQS requests against the queue's ARN and S3 requests against the
object's ARN, but DynamoDB requests against ``"*"``: a least-privilege statement naming
its table (as AWS evaluates it, and as deploy/template.yaml writes it) matches no
DynamoDB request at all, so stock moto refuses the compactor every lock operation. This
launcher gives DynamoDB requests their table's ARN, the way moto's SQS handler already
does for queues. It only makes authorization closer to AWS (a statement must now name the
right table); it allows nothing stock moto would refuse to a ``"*"`` statement.

Run as a script: ``python moto_iam_server.py -H 127.0.0.1 -p PORT``.
"""

from __future__ import annotations

import sys
from typing import Any

from moto.dynamodb.responses import DynamoHandler
from moto.server import main


def _table_resource(self: Any) -> str:
    params = self.body if isinstance(self.body, dict) else {}
    name = params.get("TableName")
    if not isinstance(name, str):
        return "*"
    return f"arn:aws:dynamodb:{self.region}:{self.current_account}:table/{name}"


DynamoHandler._determine_resource = _table_resource  # type: ignore[attr-defined]

if __name__ == "__main__":
    main(sys.argv[1:])
