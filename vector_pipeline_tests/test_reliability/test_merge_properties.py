"""Property-based test of the merge (hypothesis): random sequences of upserts and deletes,
split into random deltas, compacted in random batches and orders, always give the snapshot
of the sequential model (last writer per id wins; inside one delta a delete wins), whatever
the segment policy: exact reads, counts and queries over segments with masked ids agree."""

import os
import tempfile

from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from vector_pipeline import ChromaCompactor, open_snapshot, produce_embedding_delta
from vector_pipeline.config import Settings
from vector_pipeline.cli.local_aws import MotoServer, setup_resources
from vector_pipeline.read.reader import close_readers

EXAMPLES = int(os.environ.get("VP_PROPERTY_EXAMPLES", "20"))
IDS = ["a", "b", "c", "d", "e"]

operation = st.tuples(st.sampled_from(IDS), st.sampled_from(["upsert", "delete"]), st.integers(0, 99))


@st.composite
def histories(draw):  # type: ignore[no-untyped-def]
    operations = draw(st.lists(operation, min_size=1, max_size=14))
    cuts = sorted(draw(st.sets(st.integers(1, len(operations) - 1), max_size=5))) if len(operations) > 1 else []
    bounds = [0, *cuts, len(operations)]
    deltas = [operations[start:stop] for start, stop in zip(bounds, bounds[1:])]
    order = draw(st.permutations(range(len(deltas))))
    batch_cuts = sorted(draw(st.sets(st.integers(1, len(deltas) - 1), max_size=3))) if len(deltas) > 1 else []
    batch_bounds = [0, *batch_cuts, len(deltas)]
    batches = [list(order[start:stop]) for start, stop in zip(batch_bounds, batch_bounds[1:])]
    return deltas, batches


def _collapse(delta: list[tuple[str, str, int]]) -> tuple[dict[str, int], set[str]]:
    """One delta as a producer writes it: the last upsert per id, and its tombstones."""
    upserts: dict[str, int] = {}
    deletes: set[str] = set()
    for record_id, kind, value in delta:
        if kind == "upsert":
            upserts[record_id] = value
        else:
            deletes.add(record_id)
    return upserts, deletes


def _sequential_model(deltas: list[list[tuple[str, str, int]]]) -> dict[str, str]:
    state: dict[str, str] = {}
    for delta in deltas:
        upserts, deletes = _collapse(delta)
        state.update({i: str(v) for i, v in upserts.items() if i not in deletes})
        for record_id in deletes:
            state.pop(record_id, None)
    return state


@hypothesis_settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                                  HealthCheck.too_slow])
@given(history=histories(), max_segments=st.sampled_from([1, 2, 3, 4]), fold_ratio=st.sampled_from([0.25, 100.0]))
def test_any_split_and_order_equals_the_sequential_model(moto_server: MotoServer, history, max_segments: int,
                                                         fold_ratio: float) -> None:  # type: ignore[no-untyped-def]
    deltas, batches = history
    moto_server.reset()
    config = moto_server.settings(Settings(cache_dir=tempfile.mkdtemp(prefix="vp-prop-"), lock_ttl_seconds=60,
                                           segment_max_count=max_segments, segment_fold_ratio=fold_ratio))
    setup_resources(config)
    keys = []
    for delta in deltas:  # produced in order: delta ids grow with it
        upserts, deletes = _collapse(delta)
        keys.append(produce_embedding_delta(
            list(upserts), [[float(v), 1.0, 0.5] for v in upserts.values()],
            documents=[str(v) for v in upserts.values()], delete_ids=sorted(deletes) or None,
            settings=config, notify=False)["delta_key"])
    compactor = ChromaCompactor(settings=config)
    results = []
    for batch in batches:
        results.append(compactor.compact_deltas([keys[i] for i in batch], "words"))
        assert results[-1].status in ("ok", "noop"), results[-1]
        assert results[-1].segments is None or results[-1].segments <= max(max_segments, 1)
    close_readers()
    expected = _sequential_model(deltas)
    snapshot = open_snapshot(settings=config)
    got = snapshot.get_vectors("words", include=["documents"])
    assert dict(zip(got["ids"], got["documents"])) == expected
    assert snapshot.count("words") == len(expected)
    picked = snapshot.get_vectors("words", ids=IDS, include=["documents"])
    assert dict(zip(picked["ids"], picked["documents"])) == expected
    if expected:  # a query for more than all returns each live id once, never a replaced copy
        found = snapshot.query("words", query_embeddings=[[1.0, 1.0, 0.5]], n_results=len(IDS))
        assert sorted(zip(found["ids"][0], found["documents"][0])) == sorted(expected.items())
