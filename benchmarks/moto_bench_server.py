"""moto's server for the benchmarks: ranged GETs that read only their range, and a
``ReceiveMessage`` whose cost follows the messages it returns. Answers are the same bytes.

**Ranged GETs** (the ``--scale`` and ``--fold`` profiles).

Stock moto 5 answers a ranged GET by reading the whole object (``FakeKey.value``) and then
slicing it. A client downloads a large object in parallel 16 MB ranges (boto3's transfer
manager, as on AWS), so a 1.7 GB HNSW file of a million-vector version costs moto ~100 full
reads, and up to eight copies of the whole object in its memory at once: that measures moto,
not the pipeline, and can exhaust a shared machine. Here a GET with one plain byte range
(``bytes=a-b`` or ``bytes=a-``) reads just those bytes from the object's spooled file, under
the object's lock. Everything else is the embedded server (``vector_pipeline.cli.moto_server``:
conditional writes atomic); responses are byte-for-byte the same.

**ReceiveMessage** (the ``--ingest`` profile). Stock moto 5 checks each message it returns
against the queue's retention period through ``get_queue_attributes``, which builds every
attribute of the queue, three of them by scanning all its messages
(``ApproximateNumberOfMessages*``). A receive of 10 thus scans the queue 30 times: measured,
0.13 s at a depth of 100, 0.73 s at 1,000 and 2.6 s at 3,000 on an idle core. A consumer that
falls behind gets slower the further behind it is; SQS's receive does not grow with depth. Here
the check reads the retention period alone (``queue.message_retention_period``, the value the
stock path returns), so a receive scans the queue once, as moto's own visibility filter does.

Run as a script: ``python moto_bench_server.py -H HOST -p PORT``.
"""

from __future__ import annotations

import re
import sys
import threading
from typing import Any

from moto.core.utils import unix_time
from moto.s3.models import FakeKey
from moto.s3.responses import S3Response
from moto.sqs.models import Message, SQSBackend

from vector_pipeline.cli.moto_server import main

_PLAIN_RANGE = re.compile(r"bytes=\d+-\d*$")
_ranged = threading.local()


class _ObjectBytes:
    """An object's content, read by slices from its spooled file (what the range handler takes)."""

    def __init__(self, key: FakeKey) -> None:
        self.key = key

    def __len__(self) -> int:
        return int(self.key.contentsize)

    def __getitem__(self, wanted: slice) -> bytes:
        start, stop, _ = wanted.indices(len(self))
        with self.key.lock:
            self.key._value_buffer.seek(start)
            return bytes(self.key._value_buffer.read(max(0, stop - start)))


_stock_value = FakeKey.value
_stock_get_object = S3Response.get_object
_stock_range = S3Response._handle_range_header


def _value(self: FakeKey) -> Any:
    return _ObjectBytes(self) if getattr(_ranged, "on", False) else _stock_value.fget(self)  # type: ignore[attr-defined]


def _get_object(self: S3Response) -> Any:
    plain = _PLAIN_RANGE.match(self.headers.get("range", "") or "") and not self._get_int_param("partNumber")
    _ranged.on = bool(plain)
    try:
        return _stock_get_object(self)
    finally:
        _ranged.on = False


def _handle_range_header(self: S3Response, request: Any, headers: dict[str, Any], content: Any) -> Any:
    status, headers, body = _stock_range(self, request, headers, content)
    return status, headers, body[:] if isinstance(body, _ObjectBytes) else body


stock_is_retained = SQSBackend.is_message_valid_based_on_retention_period


def is_retained(self: SQSBackend, queue_name: str, message: Message) -> bool:
    retention = int(self.get_queue(queue_name).message_retention_period)
    return retention + message.sent_timestamp / 1000 > unix_time()  # type: ignore[operator]


FakeKey.value = property(_value, _stock_value.fset)  # type: ignore[method-assign,assignment]
S3Response.get_object = _get_object  # type: ignore[method-assign]
S3Response._handle_range_header = _handle_range_header  # type: ignore[method-assign]
SQSBackend.is_message_valid_based_on_retention_period = is_retained  # type: ignore[method-assign]

if __name__ == "__main__":
    main(sys.argv[1:])
