"""The migration as a user runs it, on the shipped receipts with real MiniLM embeddings:
a Pinecone namespace (loopback endpoint, official SDK) → ``vector-pipeline pinecone
backfill`` → compaction → ``vector-pipeline pinecone compare`` → drift reported exactly →
the cutover router → ``vector-pipeline pinecone export``, verified.

Not covered here: crash/resume of the backfill and the dual-write mirror (their own modules).
The CLI runs in process (``cli.main``) with the environment a user would export.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from vector_pipeline import ChromaCompactor, produce_embedding_delta, query_snapshot
from vector_pipeline.io.aws import client
from vector_pipeline.cli import main
from vector_pipeline.config import Settings
from vector_pipeline.migration.router import Backend, CutoverRouter
from vector_pipeline.migration.pinecone_client import PineconeIndex
from vector_pipeline.migration.pinecone_filters import UntranslatableFilterError

from devtools.pinecone_server import PineconeServer

QUERIES = ["walmart", "milk", "coffee", "total amount due", "gasoline", "rotisserie chicken", "bananas",
           "sales tax", "thank you for shopping", "credit card payment", "main street", "kirkland water"]


def _seed(settings: Settings, lines: list[dict[str, Any]]) -> None:
    PineconeIndex(settings).upsert("lines", [_record(r) for r in lines])


def _record(row: dict[str, Any]) -> Any:
    from vector_pipeline.migration.pinecone_client import PineconeRecord

    return PineconeRecord(row["id"], row["values"], row["metadata"])


def _compare(tmp_path: Path, name: str, *args: str) -> tuple[int, dict[str, Any], Path]:
    out = tmp_path / name
    code = main(["pinecone", "compare", "--collection", "lines", "--out", str(out), *args])
    return code, json.loads((out / "report.json").read_text()), out


def test_backfill_compact_compare_drift_route_export(pinecone_env: Settings, pinecone_server: PineconeServer,
                                                     receipt_lines: list[dict[str, Any]], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    settings = pinecone_env
    _seed(settings, receipt_lines)
    assert main(["pinecone", "backfill", "--collection", "lines", "--batch", "100"]) == 0
    assert "page 4: 73 vectors" in capsys.readouterr().out  # 373 lines, 4 pages, progress printed
    [compacted] = ChromaCompactor(settings=settings).compact_pending()
    assert compacted.status.value == "ok" and compacted.vector_count == len(receipt_lines)
    hit = query_snapshot(query_texts=["ROTISSERIE CHICKEN"], n_results=1, collection_name="lines", settings=settings)
    assert "ROTISSERIE CHICKEN" in hit["documents"][0][0]  # the document came from metadata "text"
    assert "text" not in hit["metadatas"][0][0] and hit["metadatas"][0][0]["merchant"]

    queries = tmp_path / "queries.txt"
    queries.write_text("\n".join(QUERIES) + "\n")
    code, report, out = _compare(tmp_path, "first", "--queries", str(queries), "--k", "10")
    assert code == 0
    assert {"collection", "namespace", "queries", "k", "recall_at_k", "overlap_at_k", "ids_only_in_chroma",
            "ids_only_in_pinecone", "latency_ms"} <= set(report)
    assert (report["collection"], report["namespace"], report["queries"], report["k"]) == ("lines", "lines", 12, 10)
    assert report["recall_at_k"]["pinecone"] == 1.0  # the loopback endpoint searches exactly
    assert report["recall_at_k"]["chroma"] >= 0.95
    assert report["overlap_at_k"] >= 0.8  # below 1 only where duplicate lines tie at the k-th distance
    assert report["overlap_at_k_counting_ties"] == 1.0
    assert report["ids_only_in_chroma"] == report["ids_only_in_pinecone"] == 0
    assert report["max_distance_gap"] < 1e-4  # d = 1 - s: both stores on one scale
    assert set(report["latency_ms"]["chroma"]) == {"p50", "p95"}
    per_query = pd.read_csv(out / "per_query.csv")
    assert list(per_query["query"]) == QUERIES and per_query["overlap"].between(0, 1).all()
    assert "recall@10" in (out / "report.md").read_text()

    # Drift: two ids deleted in Pinecone only, one deleted in Chroma only.
    gone_from_pinecone = [receipt_lines[5]["id"], receipt_lines[200]["id"]]
    PineconeIndex(settings).delete("lines", gone_from_pinecone)
    gone_from_chroma = receipt_lines[300]["id"]
    produce_embedding_delta([], [], collection_name="lines", delete_ids=[gone_from_chroma], settings=settings)
    ChromaCompactor(settings=settings).compact_pending()
    code, report, out = _compare(tmp_path, "drift", "--sample", "20")
    assert code == 0 and report["queries"] == 20
    assert report["ids_only_in_chroma"] == 2 and report["ids_only_in_pinecone"] == 1
    assert sorted(report["ids_only_in_chroma_sample"]) == sorted(gone_from_pinecone)
    assert report["ids_only_in_pinecone_sample"] == [gone_from_chroma]
    markdown = (out / "report.md").read_text()
    assert all(f"`{i}`" in markdown for i in [*gone_from_pinecone, gone_from_chroma])

    # A bar above what any store reaches fails the command.
    code, _, _ = _compare(tmp_path, "strict", "--sample", "5", "--min-recall", "1.01")
    assert code == 1

    # Phase 2: routing is deterministic per key, answers are chroma-shaped either way.
    router = CutoverRouter(settings, "lines", chroma_share=0.5, shadow=True)
    users = [f"user-{n}" for n in range(40)]
    routes = {u: router.route(u) for u in users}
    assert set(routes.values()) == {Backend.CHROMA, Backend.PINECONE}
    assert all(CutoverRouter(settings, "lines", chroma_share=0.5).route(u) is routes[u] for u in users)
    assert all(router.route(u) is Backend.CHROMA for u in users if routes[u] is Backend.CHROMA
               and CutoverRouter(settings, "lines", chroma_share=0.9).route(u) is Backend.CHROMA)
    for user in users[:6]:
        answer = router.query(query_texts=["milk"], n_results=5, where={"merchant": {"$ne": "NOBODY"}}, routing_key=user)
        assert set(answer) >= {"ids", "distances", "documents", "metadatas"} and len(answer["ids"][0]) == 5
        assert all(0 <= d <= 2 for d in answer["distances"][0]) and answer["documents"][0][0]
    with pytest.raises(UntranslatableFilterError, match="contains"):  # refused, never silently dropped
        router.query(query_texts=["milk"], where={"merchant": {"$contains": "MART"}}, routing_key=users[0])
    counters = router.counters.as_dict()
    assert sum(counters["queries"].values()) == 6 and counters["shadowed"] == 6
    assert 0 < counters["mean_overlap_at_k"] <= 1

    capsys.readouterr()
    assert main(["pinecone", "query", "milk", "--collection", "lines", "--routing-key", "user-1",
                 "--chroma-share", "0.5", "--shadow", "-n", "3"]) == 0
    printed = capsys.readouterr().out
    assert f"'user-1' → {routes['user-1'].value}" in printed and '"shadowed": 1' in printed

    # Phase 3: the export, verified against describe_index_stats and a listing.
    assert main(["pinecone", "export", "--collection", "lines", "--json"]) == 0
    [exported] = json.loads(capsys.readouterr().out)  # --json: the answer alone on stdout
    assert exported["outcome"] == "verified" and exported["rows"] == len(receipt_lines) - 2
    bucket, key = exported["uri"][5:].split("/", 1)
    assert key.startswith("exports/pinecone/lines/") and key.endswith(".parquet")
    frame = pd.read_parquet(io.BytesIO(client("s3", settings).get_object(Bucket=bucket, Key=key)["Body"].read()))
    assert len(frame) == len(receipt_lines) - 2 and len(frame["values"][0]) == 384
    assert json.loads(frame["metadata"][0])["text"]
