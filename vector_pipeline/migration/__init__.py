"""Migrating from Pinecone, in three phases (docs/migration.md).

1. parallel operation: ``backfill`` (Pinecone → deltas, resumable), ``mirror`` (every applied
   delta → Pinecone, from a watermark in the bucket), ``compare`` (recall@k of each store
   against exact search, overlap@k between them);
2. gradual cutover: ``router.CutoverRouter`` sends a share of queries to Chroma;
3. cleanup: ``export`` the namespace to Parquet, verified before the index may go.

State lives in the bucket under ``migration/<collection>/`` (checkpoints, watermark, reports).
"""
