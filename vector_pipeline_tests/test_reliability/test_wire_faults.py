"""Faults on the wire: producers, two compactor processes at once and a reader process over
several collections, every AWS call through the fault proxy (``fault_proxy.py``) in front of
the moto server, which at a configured rate per service adds latency, resets connections,
answers 500 and 503 SlowDown / ThrottlingException, holds answers past the read timeout and
drops answers after the server applied the request; and drops the answer of a share of the
conditional PUTs (pointer, catalog) after S3 applied them.

It ends with 0 deltas lost and 0 applied twice (along each pointer chain), every collection
equal to its model, every answer the reader saw equal to a state its model passed through,
no producer call, compaction run or read failed (botocore's retries and the conditional
writes' read-back absorb every fault), and every throttled call resent after a backoff.
CI runs it small; ``./dev reliability`` runs the full counts (``VP_WIRE_*``) and prints the
table of faults injected per kind (docs/reliability.md). Not covered: the Dagster sensor
path, the Lambda handlers."""

import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from vector_pipeline import ChromaCompactor, produce_embedding_delta
from vector_pipeline.cli.local_aws import MotoServer, stop_process_group
from vector_pipeline.config import Settings
from vector_pipeline.io.conditional_writes import PROBE_PREFIX
from vector_pipeline.read.reader import close_readers, open_snapshot

from ..helpers import vectors
from ..fault_proxy import FaultProxy
from ..fault_rules import Fault, FaultRule, rules_from_spec
from .helpers import assert_each_delta_applied_once, compactor_env

COLLECTIONS = int(os.environ.get("VP_WIRE_COLLECTIONS", "3"))
ROUNDS = int(os.environ.get("VP_WIRE_ROUNDS", "4"))  # deltas per collection
# Per service: (these rates keep botocore's retry quota, 14 tokens per retry and 1 back per
# clean call, from draining: a client that ran dry would stop retrying, as on AWS).
FAULTS = os.environ.get("VP_WIRE_FAULTS", ",".join(
    f"{service}.{fault}" for service in ("s3", "sqs", "dynamodb")
    for fault in ("latency=0.03", "reset=0.01", "error_500=0.01", "throttle=0.02", "timeout=0.003", "drop=0.01")))
# And the answer of this share of conditional PUTs (pointer, catalog) dropped after S3 applied them.
LOST_CONDITIONAL = float(os.environ.get("VP_WIRE_LOST_CONDITIONAL", "0.25"))
READ_TIMEOUT = 3.0

COMPACTOR = """
import json, pathlib, sys, time
from vector_pipeline.compaction.compactor import ChromaCompactor
compactor, stop = ChromaCompactor(), pathlib.Path(sys.argv[1])
pathlib.Path(sys.argv[2]).touch()  # ready
while not stop.exists():
    try:
        for result in compactor.compact_pending():
            print(json.dumps({"collection": result.collection, "status": str(result.status),
                              "deltas": result.deltas_processed, "error": result.error}), flush=True)
    except Exception as exc:
        print(json.dumps({"status": "raised", "error": f"{type(exc).__name__}: {exc}"}), flush=True)
    time.sleep(0.2)
"""

READER = """
import json, pathlib, sys, time
from vector_pipeline.read.reader import open_snapshot
from vector_pipeline.table.snapshot_store import SnapshotNotFoundError
stop, names = pathlib.Path(sys.argv[1]), sys.argv[3].split(",")
pathlib.Path(sys.argv[2]).touch()  # ready
answers, errors, seen = 0, [], {name: [] for name in names}
while not stop.exists():
    for name in names:
        try:
            got = open_snapshot(name, consistency="strong").get_vectors(name, include=["documents"])
        except SnapshotNotFoundError:
            continue
        except Exception as exc:
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        answers += 1
        answer = dict(zip(got["ids"], got["documents"]))
        if answer not in seen[name]:
            seen[name].append(answer)
    time.sleep(0.1)
print(json.dumps({"answers": answers, "errors": errors, "seen": seen}))
"""


@pytest.fixture
def proxy(moto_server: MotoServer) -> Iterator[FaultProxy]:
    with FaultProxy(moto_server.endpoint_url, hold_seconds=READ_TIMEOUT + 1) as started:
        yield started


def _start(script: str, settings: Settings, *args: str, cache: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *args],
                            env=compactor_env(settings, VECTOR_PIPELINE_CACHE_DIR=str(cache)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _collect(process: subprocess.Popen) -> tuple[str, str]:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return out, err


def test_workload_under_wire_faults_loses_nothing_and_applies_nothing_twice(
        settings: Settings, proxy: FaultProxy, rng: np.random.Generator, tmp_path: Path) -> None:
    names = [f"w{n:02d}" for n in range(COLLECTIONS)]
    settings = settings.with_overrides(lock_ttl_seconds=30)
    proxied = proxy.settings(settings).with_overrides(aws_read_timeout_seconds=READ_TIMEOUT, compact_watch_wait_seconds=1)
    proxy.add(FaultRule(Fault.DROP, LOST_CONDITIONAL, "s3", match=lambda request: request.is_conditional_put),
              *rules_from_spec(FAULTS))
    stop = tmp_path / "stop"
    ready = [tmp_path / f"ready{n}" for n in range(3)]
    workers = [_start(COMPACTOR, proxied, str(stop), str(ready[n]), cache=tmp_path / f"compactor{n}") for n in range(2)]
    reader = _start(READER, proxied, str(stop), str(ready[2]), ",".join(names), cache=tmp_path / "reader")
    model = {name: {} for name in names}
    states: dict[str, list[dict[str, str]]] = {name: [{}] for name in names}  # every state each model passed through
    delta_ids: dict[str, set[str]] = {name: set() for name in names}
    try:
        deadline = time.monotonic() + 120
        while not all(path.exists() for path in ready):  # imports done: the workload starts for all at once
            assert all(p.poll() is None for p in (*workers, reader)) and time.monotonic() < deadline
            time.sleep(0.2)
        for round_number in range(ROUNDS):
            for name in names:  # one producer per collection in turn: a collection's deltas in order
                ids = [f"{name}-{(round_number + k) % 5}" for k in range(2)]
                doomed = [f"{name}-{(round_number + 2) % 5}"] if round_number % 2 else None
                model[name].update({i: f"r{round_number}" for i in ids})
                for gone in doomed or []:
                    model[name].pop(gone, None)
                states[name].append(dict(model[name]))  # before the call: a compactor may publish it first
                produced = produce_embedding_delta(ids, vectors(rng, 2), documents=[f"r{round_number}"] * 2,
                                                   delete_ids=doomed, collection_name=name, settings=proxied)
                delta_ids[name].add(produced["delta_id"])
            time.sleep(0.5)
        deadline = time.monotonic() + 120 + 10 * ROUNDS * COLLECTIONS
        while _pending(settings, names) and time.monotonic() < deadline:  # the loops finish the work
            time.sleep(1.0)
    finally:
        stop.touch()
        outputs = [_collect(worker) for worker in workers]
        seen = json.loads(_collect(reader)[0].strip().splitlines()[-1])
        for process in (*workers, reader):
            stop_process_group(process, grace_seconds=5)

    results = [json.loads(line) for out, _ in outputs for line in out.splitlines() if line.startswith("{")]
    # put_document_resolving_ambiguity's warning: a conditional PUT refused against its own landed write
    recognised = sum(err.count("but the key holds this write") for _, err in outputs)
    failures = [r for r in results if r["status"] in ("failed", "raised") or r["error"]]
    assert failures == [], f"runs failed under retryable faults: {failures[:5]}"
    assert seen["errors"] == [], f"reads failed under retryable faults: {seen['errors'][:5]}"
    for name in names:
        assert all(answer in states[name] for answer in seen["seen"][name]), f"{name}: a read no model state matches"

    proxy.clear()  # whatever the loops left (nothing, when they finished in time), without faults
    for result in ChromaCompactor(settings=settings).compact_pending():
        assert result.status in ("ok", "noop"), result
    close_readers()
    for name in names:
        got = open_snapshot(name, settings=settings).get_vectors(name, include=["documents"])
        assert dict(zip(got["ids"], got["documents"])) == model[name], name
        assert_each_delta_applied_once(settings, delta_ids[name], name)

    throttle_gaps = proxy.retry_gaps(Fault.THROTTLE)
    assert proxy.injected(Fault.THROTTLE) == 0 or throttle_gaps, "throttled calls were never resent"
    if len(throttle_gaps) >= 5:  # rand(0, 1) × 2^attempt s: a mean under 0.1 s means no backoff
        assert statistics.mean(throttle_gaps) >= 0.1, f"throttled calls resent without backoff: {throttle_gaps}"
    _report(proxy, results, seen, names, recognised)


def _pending(settings: Settings, names: list[str]) -> bool:
    return any(ChromaCompactor(settings=settings).list_pending_delta_keys(name) for name in names)


def _report(proxy: FaultProxy, results: list[dict], seen: dict, names: list[str], recognised: int) -> None:
    statuses: dict[str, int] = {}
    for result in results:
        statuses[result["status"]] = statuses.get(result["status"], 0) + 1
    print(f"\nFIGURE wire faults: {len(names)} collections × {ROUNDS} deltas, 2 compactor processes, 1 reader; "
          f"runs {statuses}, published deltas {sum(r['deltas'] for r in results if r['status'] == 'ok')}, "
          f"reads {seen['answers']} ({sum(len(v) for v in seen['seen'].values())} distinct states), faults: {FAULTS}, "
          f"conditional PUT answers dropped: {LOST_CONDITIONAL}")
    lost = Counter("pointer" if path.endswith("/latest.json") else "probe" if PROBE_PREFIX in path
                   else "catalog" if "/collections/" in path else path for path in proxy.tally.lost_conditional_answers.values())
    print(f"FIGURE wire faults: conditional PUT calls with an answer lost after S3 applied it: {dict(lost)}; "
          f"recognised by the compactors as their own write: {recognised}")
    for service, kind, count in proxy.table():
        print(f"FIGURE wire faults: {service:9s} {kind:10s} {count}")
    for fault in Fault:
        gaps = proxy.retry_gaps(fault)
        if gaps:
            print(f"FIGURE wire faults: resent after {fault.value}: {len(gaps)} calls, gap mean "
                  f"{statistics.mean(gaps):.3f} s, max {max(gaps):.3f} s")
