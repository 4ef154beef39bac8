"""The Pinecone migration on the shipped receipts, end to end, with the figures docs/migration.md
quotes: a loopback Pinecone index (the tests' endpoint, official SDK) holding every word and
line of the receipts (all-MiniLM-L6-v2), backfilled into deltas, compacted on the embedded AWS,
then compared with the CLI's own code — text queries and a sample of stored vectors.

    .venv/bin/python scripts/pinecone_comparison.py [--out DIR] [--sample N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vector_pipeline.compaction.compactor import ChromaCompactor  # noqa: E402
from vector_pipeline.config import Settings  # noqa: E402
from vector_pipeline.cli.demo import QUERIES, load_receipts, receipt_records  # noqa: E402
from vector_pipeline.chroma.embeddings import MiniLMProvider  # noqa: E402
from vector_pipeline.cli.local_aws import MotoServer, setup_resources  # noqa: E402
from vector_pipeline.migration.backfill import backfill  # noqa: E402
from vector_pipeline.migration.compare import compare_collection, write_report  # noqa: E402
from vector_pipeline.migration.pinecone_client import PineconeIndex, PineconeRecord  # noqa: E402
from vector_pipeline_tests.pinecone_server import DEFAULT_API_KEY, PineconeServer  # noqa: E402

TEXT_QUERIES = [*QUERIES, "rotisserie chicken", "bananas", "sales tax", "thank you for shopping",
                "credit card payment", "main street", "kirkland water", "grande latte", "ibuprofen",
                "lumber", "organic avocados", "unleaded gas", "dark chocolate", "paper towels", "subtotal"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="vp-pinecone-comparison-")))
    parser.add_argument("--sample", type=int, default=200)
    args = parser.parse_args()
    pinecone = PineconeServer().start()
    try:
        with MotoServer() as aws:
            settings = aws.settings(Settings(cache_dir=str(args.out / "cache"), pinecone_index_host=pinecone.host,
                                             pinecone_api_key=DEFAULT_API_KEY))
            setup_resources(settings)
            provider = MiniLMProvider()
            index = PineconeIndex(settings)
            for collection in ("words", "lines"):
                records = [r for receipt in load_receipts() for r in receipt_records(receipt)[collection]]
                vectors = provider.embed([text for _, text, _ in records])
                index.upsert(collection, [PineconeRecord(i, list(map(float, v)), {**m, "text": t})
                                          for (i, t, m), v in zip(records, vectors)])
                backfill(settings, collection, 100, say=lambda _: None)
            ChromaCompactor(settings=settings).compact_pending()
            figures = {}
            for collection in ("words", "lines"):
                for name, kwargs in (("texts", {"texts": TEXT_QUERIES}), ("sample", {"sample": args.sample})):
                    comparison = compare_collection(settings, collection, k=10, **kwargs)
                    write_report(comparison, args.out / f"{collection}-{name}")
                    report = comparison.report
                    figures[f"{collection} / {report['query_source']}"] = {
                        "vectors": report["vectors"]["chroma"], "recall@10 chroma": report["recall_at_k"]["chroma"],
                        "recall@10 pinecone": report["recall_at_k"]["pinecone"],
                        "overlap@10": report["overlap_at_k"],
                        "overlap@10 counting ties": report["overlap_at_k_counting_ties"], "p50 ms chroma": report["latency_ms"]["chroma"]["p50"],
                        "p50 ms pinecone": report["latency_ms"]["pinecone"]["p50"]}
            print(json.dumps(figures, indent=2))
            print(f"reports under {args.out}")
    finally:
        pinecone.stop()


if __name__ == "__main__":
    main()
