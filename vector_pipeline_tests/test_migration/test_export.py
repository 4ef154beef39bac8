"""Phase 3, the export: the namespace to Parquet in the bucket (default key and ``--out``),
said safe to delete only when the object read back matches ``describe_index_stats`` and a
listing of the index; an index whose listing loses ids (counted, never listed) is a
mismatch and the command exits 1. Also: the ``pinecone`` command group's help.

Not covered here: exports of the receipts (test_end_to_end.py).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from vector_pipeline.io.aws import client
from vector_pipeline.cli import main
from vector_pipeline.config import Settings
from vector_pipeline.migration.export import ExportOutcome, export_namespace, ids_checksum
from vector_pipeline.migration.pinecone_client import PineconeIndex, PineconeRecord

from devtools.pinecone_server import PineconeServer


def _seed(settings: Settings, count: int = 120) -> list[PineconeRecord]:
    rng = np.random.default_rng(5)
    records = [PineconeRecord(f"e{n:04d}", rng.random(6).tolist(), {"n": n, "text": f"row {n}"}) for n in range(count)]
    PineconeIndex(settings).upsert("words", records)
    return records


def test_export_to_a_chosen_key_is_verified(pinecone_settings: Settings) -> None:
    records = _seed(pinecone_settings)
    uri = f"s3://{pinecone_settings.vectors_bucket}/archive-of/words.parquet"
    result = export_namespace(pinecone_settings, "words", uri, say=lambda _: None)
    assert result.outcome is ExportOutcome.VERIFIED and result.uri == uri and result.rows == 120
    assert result.ids_sha256 == ids_checksum(r.id for r in records)
    body = client("s3", pinecone_settings).get_object(Bucket=pinecone_settings.vectors_bucket,
                                                      Key="archive-of/words.parquet")["Body"].read()
    frame = pd.read_parquet(io.BytesIO(body))
    assert list(frame.columns) == ["id", "values", "metadata"]
    assert np.allclose(frame.set_index("id").loc["e0007", "values"], records[7].values)


def test_a_listing_that_loses_ids_is_a_mismatch(pinecone_env: Settings, pinecone_server: PineconeServer,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    _seed(pinecone_env)
    pinecone_server.state.unlisted.update({"e0003", "e0100"})  # counted by the index, never listed
    assert main(["pinecone", "export", "--collection", "words", "--json"]) == 1
    out, err = capsys.readouterr()
    [result] = json.loads(out)
    assert (result["outcome"], result["rows"], result["index_count"]) == ("mismatch", 118, 120)
    assert "keep the index" in err


@pytest.mark.parametrize("out", ["not-s3.parquet", "s3://bucket-only", "s3://b/../x.parquet"])
def test_export_refuses_a_malformed_destination(pinecone_settings: Settings, out: str) -> None:
    with pytest.raises(ValueError, match="--out"):
        export_namespace(pinecone_settings, "words", out, say=lambda _: None)


def test_pinecone_help_names_every_action_and_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["pinecone", "--help"])
    assert exited.value.code == 0
    printed = capsys.readouterr().out
    for word in ("backfill", "mirror", "compare", "export", "PINECONE_API_KEY", "PINECONE_INDEX_HOST"):
        assert word in printed
