"""Shared by the reliability tests: compactor subprocesses, invariants, the expected state."""

import os
import time
import subprocess
import sys

from vector_pipeline.config import Settings
from vector_pipeline.format.merge_state import replay, state_part_entries
from vector_pipeline.table.snapshot_store import SnapshotStore

from vector_pipeline_tests.helpers import all_keys


def compactor_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VECTORS_", "DELTA_", "DYNAMODB_"))}
    env.update(settings.local_aws_environment())
    env["VECTOR_PIPELINE_CACHE_DIR"] = settings.cache_dir
    env["COMPACTION_LOCK_TTL_SECONDS"] = str(settings.lock_ttl_seconds)
    env.update(extra)
    return env


def start_compactor(settings: Settings, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vector_pipeline.cli", "compact", "--json", *args],
                            env=compactor_env(settings, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def assert_pointer_names_a_complete_version(settings: Settings, collection: str = "words") -> str | None:
    store = SnapshotStore(settings)
    pointer = store.read_pointer(collection)
    if pointer is None:
        return None
    manifest = store.read_manifest(collection, pointer.version)
    for entry in manifest.files:
        head = store.s3.head_object(Bucket=store.bucket, Key=entry.key)
        assert head["ContentLength"] == entry.size, entry
    return pointer.version


def assert_state_parts_locate_the_live_ids(settings: Settings, live_ids: set[str], delta_ids: set[str],
                                           collection: str = "words") -> None:
    """The published version's merge state, replayed from its parts as stored (no cache),
    places exactly the live ids and lists every delta applied."""
    store = SnapshotStore(settings)
    manifest = store.read_manifest(collection, store.read_pointer(collection).version)
    state = replay([store.s3.get_object(Bucket=store.bucket, Key=e.key)["Body"].read()
                    for e in state_part_entries(manifest)])
    assert set(state.location) == live_ids, "the merge state does not place exactly the live ids"
    assert delta_ids <= state.applied_delta_ids, "the merge state lost an applied delta"


def applied_along_pointer_chain(settings: Settings, collection: str = "words") -> list[list[str]]:
    """applied_delta_ids of every version from the pointer back to the first."""
    store = SnapshotStore(settings)
    pointer = store.read_pointer(collection)
    chain, version = [], pointer.version if pointer else None
    while version:
        manifest = store.read_manifest(collection, version)
        chain.append(list(manifest.applied_delta_ids))
        version = manifest.parent_version
    return chain


def assert_each_delta_applied_once(settings: Settings, expected_delta_ids: set[str], collection: str = "words") -> None:
    chain = applied_along_pointer_chain(settings, collection)
    flat = [delta_id for applied in chain for delta_id in applied]
    assert len(flat) == len(set(flat)), "a delta was applied twice along the pointer chain"
    assert set(flat) == expected_delta_ids, "a delta was lost"
    assert all_keys(settings, f"delta/{collection}/") == []


def start_fold(settings: Settings, collection: str = "words", tiers: bool = False, **env: str) -> subprocess.Popen:
    """``vector-pipeline fold`` as a subprocess (a base fold, or with ``tiers`` a tier merge; off the lock)."""
    return subprocess.Popen([sys.executable, "-m", "vector_pipeline.cli", "fold", collection, "--json",
                             *(["--tiers"] if tiers else [])],
                            env=compactor_env(settings, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def wait_until_stopped(process: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until ``process`` stopped itself (a ``pause:`` fault: SIGSTOP); fails if it exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited ({process.returncode}) before its pause: {process.communicate()[1][-2000:]}"
        with open(f"/proc/{process.pid}/stat") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.1)
    raise AssertionError("the process did not reach its pause")


def folds_along_pointer_chain(settings: Settings, collection: str = "words") -> list[str]:
    """Each version's fold kind, from the published one back to the first."""
    from vector_pipeline.table.snapshot_store import SnapshotStore

    store = SnapshotStore(settings)
    folds, version = [], store.read_pointer(collection).version
    while version:
        manifest = store.read_manifest(collection, version)
        folds.append(manifest.fold)
        version = manifest.parent_version
    return folds
