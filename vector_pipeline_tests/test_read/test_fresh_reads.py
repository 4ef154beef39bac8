"""Fresh reads (query_snapshot(include_pending=True)) and query_snapshot(include=...).

Covers: a produced but uncompacted upsert and delete are visible; a pending update
replaces the snapshot's record; last-writer-wins by delta id among pending deltas and
against the snapshot (a late delta loses to a newer write the snapshot holds); a delete
wins over its own delta's upsert; ``where`` applies to pending records; distances of
pending records are on chroma's scale (the same record gives the same distance once
compacted); later looks list only what is new (StartAfter) and fetch each delta once, and
drop it once a version holds it; ``include`` variants across segments and with pending
records, and a bad ``include`` refused by name. Not covered: consistency of the pointer
(test_reader_consistency.py)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from vector_pipeline import ChromaCompactor, ChromaDBClient, produce_embedding_delta, query_snapshot
from vector_pipeline.config import Settings
from vector_pipeline.chroma.embeddings import provider_name
from vector_pipeline.delta.upload import delta_manifest, upload_delta
from vector_pipeline.format.keys import new_delta_id
from vector_pipeline.read.snapshot_reader import SnapshotReader

from vector_pipeline_tests.helpers import vectors


def _compact(settings: Settings, *keys: str) -> None:
    result = ChromaCompactor(settings=settings).compact_deltas(list(keys), "words")
    assert result.status == "ok", result


def _produce(settings: Settings, ids: list[str], embeddings: list[list[float]], **extra: object) -> str:
    return produce_embedding_delta(ids, embeddings, settings=settings, notify=False, **extra)["delta_key"]


def _base(settings: Settings, rng: np.random.Generator, count: int = 10) -> list[list[float]]:
    embeddings = vectors(rng, count)
    _compact(settings, _produce(settings, [f"a{i}" for i in range(count)], embeddings,
                                documents=[f"doc a{i}" for i in range(count)],
                                metadatas=[{"n": i, "kind": "base"} for i in range(count)]))
    return embeddings


def _ids(settings: Settings, tmp_path: Path, query: list[float], n: int = 50, **options: object) -> list[str]:
    return query_snapshot(query_embeddings=[query], n_results=n, snapshot_path=tmp_path, settings=settings,
                          **options)["ids"][0]


def test_pending_upsert_and_delete_are_visible_before_compaction(settings: Settings, rng: np.random.Generator,
                                                                 tmp_path: Path) -> None:
    base = _base(settings, rng)
    fresh = vectors(rng, 1)
    _produce(settings, ["new"], fresh, delete_ids=["a3"], documents=["doc new"])
    assert "new" not in _ids(settings, tmp_path, fresh[0]) and "a3" in _ids(settings, tmp_path, fresh[0])
    seen = query_snapshot(query_embeddings=[fresh[0]], n_results=50, snapshot_path=tmp_path, settings=settings,
                          include_pending=True)
    assert seen["ids"][0][0] == "new" and seen["documents"][0][0] == "doc new"
    assert sorted(seen["ids"][0]) == sorted(["new"] + [f"a{i}" for i in range(10) if i != 3])
    assert seen["distances"][0] == sorted(seen["distances"][0])
    assert _ids(settings, tmp_path, base[3], n=1, include_pending=True) != ["a3"]


def test_pending_update_replaces_the_snapshot_record(settings: Settings, rng: np.random.Generator,
                                                     tmp_path: Path) -> None:
    base = _base(settings, rng)
    moved = vectors(rng, 1)
    _produce(settings, ["a5"], moved, documents=["doc a5 v2"])
    seen = query_snapshot(query_embeddings=[moved[0]], n_results=50, snapshot_path=tmp_path, settings=settings,
                          include_pending=True)
    assert seen["ids"][0].count("a5") == 1 and seen["ids"][0][0] == "a5"
    assert seen["documents"][0][0] == "doc a5 v2" and seen["distances"][0][0] == pytest.approx(0, abs=1e-5)
    near_old = _ids(settings, tmp_path, base[5], n=1, include_pending=True)
    assert near_old != ["a5"] or base[5] == moved[0]


def test_last_writer_wins_among_pending_deltas_and_against_the_snapshot(settings: Settings, rng: np.random.Generator,
                                                                         tmp_path: Path) -> None:
    _base(settings, rng)
    # A late delta: minted a minute ago, uploaded only now, never compacted. It writes a1
    # (which a newer delta, compacted below, also writes) and z (which nothing else writes).
    with ChromaDBClient(Path(tempfile.mkdtemp()) / "late", mode="delta", settings=settings) as late:
        late.upsert_vectors("words", ["a1", "z"], vectors(rng, 2), documents=["late a1", "late z"])
        written = late.close_and_describe()
    upload_delta(settings, settings.vectors_bucket, written.directory,
                 delta_manifest(written, provider_name(settings), new_delta_id(int(time.time() * 1000) - 60_000)))
    _compact(settings, _produce(settings, ["a1"], vectors(rng, 1), documents=["newer a1"]))
    # Two pending deltas on one id: the newer wins; inside one delta a delete wins over its upsert.
    probe = vectors(rng, 1)
    _produce(settings, ["x", "y"], vectors(rng, 2), documents=["x first", "y first"])
    _produce(settings, ["x", "y"], vectors(rng, 2), delete_ids=["y"], documents=["x second", "y second"])
    seen = query_snapshot(query_embeddings=probe, n_results=50, snapshot_path=tmp_path, settings=settings,
                          include_pending=True)
    documents = dict(zip(seen["ids"][0], seen["documents"][0]))
    assert documents["a1"] == "newer a1"  # the late pending delta lost to the snapshot's newer write
    assert documents["z"] == "late z"  # ... but its other id has no newer writer
    assert documents["x"] == "x second" and "y" not in documents
    assert len(seen["ids"][0]) == len(set(seen["ids"][0]))


def test_where_filters_pending_records(settings: Settings, rng: np.random.Generator, tmp_path: Path) -> None:
    _base(settings, rng)
    _produce(settings, ["p1", "p2"], vectors(rng, 2), metadatas=[{"kind": "fresh", "n": 1}, {"kind": "fresh", "n": 7}])
    probe = vectors(rng, 1)[0]
    assert sorted(_ids(settings, tmp_path, probe, include_pending=True, where={"kind": "fresh"})) == ["p1", "p2"]
    assert _ids(settings, tmp_path, probe, include_pending=True,
                where={"$and": [{"kind": "fresh"}, {"n": {"$gt": 3}}]}) == ["p2"]
    assert sorted(_ids(settings, tmp_path, probe, include_pending=True, where={"n": {"$in": [1, 2]}})) == \
        ["a1", "a2", "p1"]


def test_pending_distances_match_chroma_once_compacted(settings: Settings, rng: np.random.Generator,
                                                       tmp_path: Path) -> None:
    _base(settings, rng)
    key = _produce(settings, ["p"], vectors(rng, 1))
    probes = vectors(rng, 3)
    pending = query_snapshot(query_embeddings=probes, n_results=50, snapshot_path=tmp_path, settings=settings,
                             include_pending=True)
    _compact(settings, key)
    compacted = query_snapshot(query_embeddings=probes, n_results=50, snapshot_path=tmp_path, settings=settings)
    for row in range(3):
        before = dict(zip(pending["ids"][row], pending["distances"][row]))
        after = dict(zip(compacted["ids"][row], compacted["distances"][row]))
        assert before.keys() == after.keys()
        assert before["p"] == pytest.approx(after["p"], abs=1e-4)


def test_later_looks_list_only_what_is_new_and_fetch_each_delta_once(settings: Settings, rng: np.random.Generator,
                                                                     tmp_path: Path) -> None:
    _base(settings, rng)
    first = _produce(settings, ["p1"], vectors(rng, 1))
    reader = SnapshotReader("words", tmp_path, settings)
    listed: list[dict] = []
    handler = lambda params, **_: listed.append(dict(params))  # noqa: E731
    reader.store.s3.meta.events.register("provide-client-params.s3.ListObjectsV2", handler)
    try:
        probe = vectors(rng, 1)
        assert "p1" in reader.query(None, probe, 50, None, include_pending=True)["ids"][0]
        _produce(settings, ["p2"], vectors(rng, 1))
        assert {"p1", "p2"} <= set(reader.query(None, probe, 50, None, include_pending=True)["ids"][0])
        assert "StartAfter" not in listed[0] and listed[-1]["StartAfter"].startswith("delta/words/")
        assert reader.pending.fetched == 2 and reader.pending.held() == sorted(reader.pending.held())
        _compact(settings, first)
        assert {"p1", "p2"} <= set(reader.query(None, probe, 50, None, include_pending=True)["ids"][0])
        assert len(reader.pending.held()) == 1 and reader.pending.fetched == 2  # p1's delta dropped, none refetched
    finally:
        reader.store.s3.meta.events.unregister("provide-client-params.s3.ListObjectsV2", handler)
        reader.close()


@pytest.mark.parametrize("include", [["embeddings"], ["distances"], ["documents", "metadatas"],
                                     ["documents", "metadatas", "distances", "embeddings"]])
def test_include_variants_across_segments_and_pending(settings: Settings, rng: np.random.Generator, tmp_path: Path,
                                                      include: list[str]) -> None:
    base = _base(settings, rng)
    recent = vectors(rng, 2)
    _compact(settings, _produce(settings, ["r0", "r1"], recent, documents=["doc r0", "doc r1"],
                                metadatas=[{"n": 100}, {"n": 101}]))  # a second segment
    pending = vectors(rng, 1)
    _produce(settings, ["p0"], pending, documents=["doc p0"], metadatas=[{"n": 200}])
    stored = {**{f"a{i}": (base[i], f"doc a{i}", {"n": i, "kind": "base"}) for i in range(10)},
              "r0": (recent[0], "doc r0", {"n": 100}), "r1": (recent[1], "doc r1", {"n": 101}),
              "p0": (pending[0], "doc p0", {"n": 200})}
    probe = vectors(rng, 1)[0]
    for include_pending in (False, True):
        seen = query_snapshot(query_embeddings=[probe], n_results=20, snapshot_path=tmp_path, settings=settings,
                              include=include, include_pending=include_pending)
        assert set(seen) - {"included"} == {"ids", *include}
        assert ("p0" in seen["ids"][0]) is include_pending and {"r0", "r1", "a0"} <= set(seen["ids"][0])
        for at, record_id in enumerate(seen["ids"][0]):
            embedding, document, metadata = stored[record_id]
            if "embeddings" in include:
                assert np.allclose(seen["embeddings"][0][at], embedding, atol=1e-6)
            if "documents" in include:
                assert seen["documents"][0][at] == document
            if "metadatas" in include:
                assert seen["metadatas"][0][at] == metadata
            if "distances" in include:
                cosine = 1 - np.dot(probe, embedding) / (np.linalg.norm(probe) * np.linalg.norm(embedding))
                assert seen["distances"][0][at] == pytest.approx(cosine, abs=1e-4)


def test_a_bad_include_is_refused_by_name(settings: Settings, rng: np.random.Generator, tmp_path: Path) -> None:
    _base(settings, rng, 2)
    with pytest.raises(ValueError, match="unknown field.*'uris'"):
        query_snapshot(query_embeddings=vectors(rng, 1), snapshot_path=tmp_path, settings=settings, include=["uris"])
    with pytest.raises(ValueError, match="list of fields"):
        query_snapshot(query_embeddings=vectors(rng, 1), snapshot_path=tmp_path, settings=settings,
                       include="documents")
