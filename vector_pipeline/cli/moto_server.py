"""moto's server with AWS's atomicity: the embedded AWS of the tests, ``local-aws`` and the demo.

Invariant: in this server, no two requests that could change the same DynamoDB item or S3
object are processed at once. Every DynamoDB request (reads included) runs alone, and every
S3 request that changes an object or a bucket (PUT, POST, DELETE: conditional PUTs with
``If-Match`` / ``If-None-Match``, copies, multipart completions, deletes) runs alone among
them. So a conditional write's check and its write have nothing in between, as on AWS,
where conditional writes are atomic per item and per object: two acquirers of one lock, or
two publishers of one pointer, can never both win.

Why it is needed: stock moto 5 checks a condition and then applies the write with nothing
serialising the two (``DynamoDBBackend.update_item`` reads the item, evaluates the
``ConditionExpression``, then mutates it; ``S3Response.put_object`` looks the key up for
``If-None-Match`` / ``If-Match``, then stores), and its werkzeug server answers each request
on a thread of its own. Released together on one lock key, two to four acquirers won two or
more at a time in 22-29 % of the rounds (docs/reliability.md, "moto's conditional writes";
``scripts/lock_contest.py`` reproduces it).

Why this way: one WSGI wrapper around each of moto's per-service apps, made where moto's
dispatcher creates them (``DomainDispatcherApplication``'s ``create_app``), so moto itself
decides which service a request is for and nothing of moto is patched. One lock per service
rather than per item: moto answers under one GIL anyway, and the lock is held only while
moto computes (the request body is read before it is taken, the response is sent after it
is released), so it costs the suite nothing measurable. Locking only the requests that
carry a condition would not do: an unconditional write landing between a conditional one's
check and write breaks the conditional one all the same. Reads of DynamoDB are serialised
too, so a ``GetItem`` never sees half of an ``UpdateItem``; S3 reads are not (moto swaps a
whole new object in, and readers must stay parallel for large downloads). Part uploads
(``PUT ?partNumber&uploadId``) change no visible object and are not serialised either.
``moto.server.ThreadedMotoServer`` builds its dispatcher inside a private method, with no
place for this wrapper; ``serve`` makes the same werkzeug server around the wrapped one.

Run as ``python -m vector_pipeline.cli.moto_server -H HOST -p PORT`` (``MotoServer`` does),
or call ``main`` from a script that adjusts moto first (the IAM and scale servers).
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
import threading
from typing import Any, Callable, Iterable

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# moto's backend names whose requests this server serialises.
DYNAMODB_BACKENDS = frozenset({"dynamodb", "dynamodb_v20111205"})
S3_BACKENDS = frozenset({"s3"})
S3_CHANGING_METHODS = frozenset({"PUT", "POST", "DELETE"})


class SerialisedWrites:
    """A moto service app whose requests that must be atomic run one at a time."""

    def __init__(self, service: str, app: WsgiApp) -> None:
        self.service, self.app = service, app
        self.lock = threading.Lock()

    def must_run_alone(self, environ: dict[str, Any]) -> bool:
        if self.service in DYNAMODB_BACKENDS:
            return True
        if self.service in S3_BACKENDS and environ.get("REQUEST_METHOD") in S3_CHANGING_METHODS:
            query = environ.get("QUERY_STRING", "")
            return not ("partNumber=" in query and "uploadId=" in query)  # a part upload
        return False

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self.must_run_alone(environ):
            return self.app(environ, start_response)
        _read_body_now(environ)  # never hold the lock while a client sends its body
        with self.lock:
            response = self.app(environ, start_response)
            try:  # moto's answers are computed in full; all the same, none is computed unlocked
                return list(response)
            finally:
                getattr(response, "close", lambda: None)()


def _read_body_now(environ: dict[str, Any]) -> None:
    stream = environ.get("wsgi.input")
    if stream is None:
        return
    if environ.get("wsgi.input_terminated"):  # chunked: werkzeug ends the stream for us
        body = stream.read()
    else:
        length = environ.get("CONTENT_LENGTH") or "0"
        body = stream.read(int(length)) if length.isdigit() and int(length) > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)


def serialised_app() -> Any:
    """moto's dispatcher with each service's app wrapped in ``SerialisedWrites``."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    return DomainDispatcherApplication(lambda service: SerialisedWrites(service, create_backend_app(service)))


def serve(host: str, port: int) -> Any:
    """A threaded werkzeug server of ``serialised_app`` bound to ``host:port`` (not yet serving)."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    return make_server(host, port, serialised_app(), threaded=True, request_handler=MotoRequestHandler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto addresses itself through it
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: sys.exit(0))
    server = serve(args.host, args.port)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
