"""``status`` after ``gc``: stored versions are those with a manifest; a deleted version whose
segments a kept version reads is named as such (shared by that version), and a prefix nothing
reads as a write in progress or a crash's leftovers. The CLI as a subprocess against moto."""

from __future__ import annotations

import json

import numpy as np

from vector_pipeline import ChromaCompactor
from vector_pipeline.config import Settings
from vector_pipeline.table.snapshot_store import SnapshotStore, next_version, version_prefix

from vector_pipeline_tests.test_cli.test_commands import plain_table, run
from vector_pipeline_tests.test_compaction.test_compactor import produce


def test_status_counts_versions_with_a_manifest_and_names_the_deleted_ones_whose_segments_are_shared(
        settings: Settings, rng: np.random.Generator) -> None:
    compactor = ChromaCompactor(settings=settings)
    versions = [compactor.compact_deltas([produce(settings, [f"r{n}-{i}" for i in range(3)], rng)["delta_key"]],
                                         "words").version for n in range(3)]
    gc = run(settings, "gc", "words", "--keep-versions", "1", "--grace-hours", "0", "--json")
    assert gc.returncode == 0, gc.stderr
    [report] = json.loads(gc.stdout)
    assert sorted(report["deleted_versions"]) == versions[:2] and report["kept_versions"] == versions[2:]
    store = SnapshotStore(settings)
    assert store.list_versions("words") == versions  # the deleted ones' prefixes hold the shared segments
    orphan = next_version(versions[2])  # objects of a write that never got its manifest
    store.s3.put_object(Bucket=store.bucket, Key=version_prefix("words", orphan) + "segments/x/data.bin", Body=b"x")

    status = run(settings, "status", "--json")
    assert status.returncode == 0, status.stderr
    words = json.loads(status.stdout)["collections"]["words"]
    assert words["versions_stored"] == 1
    leftovers = {entry["version"]: entry for entry in words["version_leftovers"]}
    assert {v: (e["kind"], e["shared_by"]) for v, e in leftovers.items()} == {
        versions[0]: ("shared", [versions[2]]), versions[1]: ("shared", [versions[2]]), orphan: ("unreferenced", [])}
    assert all(entry["objects"] > 0 for entry in leftovers.values())

    table = run(settings, "status")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("collection"))
    [row] = plain_table([line for line in lines[header:] if line.startswith(("collection", "words "))])
    assert row["stored"] == "1"
    assert "words: 2 deleted versions' segments kept (1, 2): shared by version 3; not counted as stored" in lines
    assert any(line.startswith("words: 1 version prefix without a manifest (4)") for line in lines)
