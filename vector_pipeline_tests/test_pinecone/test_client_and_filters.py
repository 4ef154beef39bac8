"""The Pinecone client (official SDK → loopback endpoint) and the where → filter translation.

Covers: the data-plane round trip the SDK makes (upsert, list pages, fetch, query with
d = 1 − s, delete, stats, its API-version header); errors naming the host for a wrong API
key, an unreachable host and a dimension mismatch; retries through a brief outage; every
supported operator translated and evaluated by the endpoint; refusals of filters with no
Pinecone equivalent. Not covered here: backfill, mirror, compare (their own modules).
"""

from __future__ import annotations

import socket

import numpy as np
import pytest

from vector_pipeline.config import Settings
from vector_pipeline.migration.pinecone_client import PineconeIndex, PineconeIndexError, PineconeProblem, PineconeRecord
from vector_pipeline.migration.pinecone_filters import UntranslatableFilterError, to_pinecone_filter

from ..pinecone_server import PineconeServer


def _records(count: int, dimension: int = 4) -> list[PineconeRecord]:
    rng = np.random.default_rng(7)
    return [PineconeRecord(f"r{n:03d}", rng.random(dimension).tolist(),
                           {"n": n, "merchant": ["COSTCO", "TARGET", "WALMART"][n % 3], "paid": n % 2 == 0})
            for n in range(count)]


def test_sdk_round_trip_pages_and_scores_on_chroma_scale(pinecone_settings: Settings,
                                                         pinecone_server: PineconeServer) -> None:
    index = PineconeIndex(pinecone_settings)
    records = _records(230)
    assert index.upsert("ns", records) == 230
    pages = list(index.list_ids("ns", limit=100))
    assert [len(p) for p in pages] == [100, 100, 30]
    assert [i for p in pages for i in p] == sorted(r.id for r in records)
    fetched = index.fetch("ns", ["r005", "missing", "r001"])
    assert [r.id for r in fetched] == ["r005", "r001"] and fetched[0].metadata["merchant"] == "WALMART"
    query = np.asarray(records[10].values)
    [best, *_] = index.query("ns", query.tolist(), 3)
    assert best.id == "r010" and best.distance == pytest.approx(0.0, abs=1e-9)  # d = 1 - s
    index.delete("ns", ["r000", "r001"])
    assert index.stats() == {"dimension": 4, "total": 228, "namespaces": {"ns": 228}}
    assert index.namespace_count("other") == 0
    assert all(h.get("x-pinecone-api-version") for h in pinecone_server.state.headers_seen)


def test_wrong_api_key_is_refused_naming_the_host(pinecone_settings: Settings) -> None:
    index = PineconeIndex(pinecone_settings.with_overrides(pinecone_api_key="not-the-key"))
    with pytest.raises(PineconeIndexError) as raised:
        index.stats()
    assert raised.value.problem is PineconeProblem.UNAUTHORIZED
    assert pinecone_settings.pinecone_index_host in str(raised.value) and "PINECONE_API_KEY" in str(raised.value)


def test_unreachable_host_is_named_after_the_sdk_retries(pinecone_settings: Settings) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    host = f"http://127.0.0.1:{port}"
    index = PineconeIndex(pinecone_settings.with_overrides(pinecone_index_host=host, pinecone_max_attempts=1))
    with pytest.raises(PineconeIndexError) as raised:
        index.stats()
    assert raised.value.problem is PineconeProblem.UNREACHABLE and host in str(raised.value)


def test_dimension_mismatch_is_named_with_both_dimensions(pinecone_settings: Settings) -> None:
    index = PineconeIndex(pinecone_settings)
    index.upsert("ns", _records(3, dimension=4))
    with pytest.raises(PineconeIndexError) as raised:
        index.check_dimension(384, "words")
    assert raised.value.problem is PineconeProblem.DIMENSION_MISMATCH
    assert "4" in str(raised.value) and "384" in str(raised.value) and index.host in str(raised.value)
    with pytest.raises(PineconeIndexError) as rejected:  # the endpoint's own refusal maps the same way
        index.upsert("ns", _records(1, dimension=8))
    assert rejected.value.problem is PineconeProblem.DIMENSION_MISMATCH


def test_an_endpoint_breaking_the_protocol_is_named(pinecone_settings: Settings,
                                                     pinecone_server: PineconeServer) -> None:
    pinecone_server.state.breaks_protocol = True  # 200 with an HTML page, as a captive proxy answers
    with pytest.raises(PineconeIndexError) as raised:
        PineconeIndex(pinecone_settings).stats()
    assert raised.value.problem is PineconeProblem.REJECTED
    assert pinecone_server.host in str(raised.value)


def test_missing_settings_say_which_key_to_set(settings: Settings) -> None:
    with pytest.raises(PineconeIndexError, match="PINECONE_INDEX_HOST"):
        PineconeIndex(settings)
    with pytest.raises(PineconeIndexError, match="PINECONE_API_KEY"):
        PineconeIndex(settings.with_overrides(pinecone_index_host="http://127.0.0.1:9"))


@pytest.mark.parametrize("status", [503, 429])
def test_brief_outage_is_retried_through(pinecone_settings: Settings, pinecone_server: PineconeServer,
                                         status: int) -> None:
    index = PineconeIndex(pinecone_settings.with_overrides(pinecone_max_attempts=5))
    index.upsert("ns", _records(5))
    pinecone_server.state.refuse(6, status)  # more than the SDK's own retries: ours carry it through
    assert index.namespace_count("ns") == 5
    assert pinecone_server.state.refusals_left == 0


WHERE_CASES = [
    ({"merchant": "COSTCO"}, lambda m: m["merchant"] == "COSTCO"),
    ({"merchant": {"$ne": "COSTCO"}}, lambda m: m["merchant"] != "COSTCO"),
    ({"n": {"$gt": 10}}, lambda m: m["n"] > 10),
    ({"n": {"$gte": 10}}, lambda m: m["n"] >= 10),
    ({"n": {"$lt": 5}}, lambda m: m["n"] < 5),
    ({"n": {"$lte": 5}}, lambda m: m["n"] <= 5),
    ({"merchant": {"$in": ["TARGET", "WALMART"]}}, lambda m: m["merchant"] in ("TARGET", "WALMART")),
    ({"merchant": {"$nin": ["TARGET"]}}, lambda m: m["merchant"] != "TARGET"),
    ({"$and": [{"paid": True}, {"n": {"$lt": 12}}]}, lambda m: m["paid"] and m["n"] < 12),
    ({"$or": [{"merchant": "TARGET"}, {"n": {"$gte": 25}}]}, lambda m: m["merchant"] == "TARGET" or m["n"] >= 25),
    ({"merchant": "COSTCO", "paid": False}, lambda m: m["merchant"] == "COSTCO" and not m["paid"]),
]


def test_every_supported_operator_selects_what_chroma_would(pinecone_settings: Settings) -> None:
    index = PineconeIndex(pinecone_settings)
    records = _records(30)
    index.upsert("ns", records)
    for where, expected in WHERE_CASES:
        matches = index.query("ns", records[0].values, 30, to_pinecone_filter(where))
        assert {m.id for m in matches} == {r.id for r in records if expected(r.metadata)}, where


@pytest.mark.parametrize("where, where_document, problem", [
    (None, {"$contains": "MILK"}, "where_document"),
    ({"merchant": {"$contains": "CO"}}, None, "$contains"),
    ({"$not": [{"n": 1}]}, None, "$not"),
    ({"merchant": {"$gt": "A"}}, None, "numbers only"),
    ({"n": {"$in": []}}, None, "non-empty list"),
    ({"n": {"$gt": 1, "$lt": 3}}, None, "one operator"),
    ({"$and": []}, None, "non-empty list"),
    ({"tags": {"$eq": ["a"]}}, None, "not a string, number or boolean"),
])
def test_filters_without_a_pinecone_equivalent_are_refused(where: dict | None, where_document: dict | None,
                                                           problem: str) -> None:
    with pytest.raises(UntranslatableFilterError, match=problem.replace("$", r"\$")):
        to_pinecone_filter(where, where_document)
