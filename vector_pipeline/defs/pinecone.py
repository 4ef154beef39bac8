"""Pinecone migration in Dagster: per collection, the dual-write mirror and the comparison.

``<collection>/pinecone_mirror`` (downstream of the published snapshot) sends the deltas it
applied to Pinecone; ``<collection>/pinecone_comparison`` runs the same comparison as
``vector-pipeline pinecone compare`` and records recall/overlap as float metadata (plotted
over time), with the check ``recall_at_least_bar``. Built only when ``PINECONE_INDEX_HOST``
is set; configured from ``Settings`` (through the ``vector_pipeline`` resource) like every
asset. Factories take the collection, so they port to a collection-partitioned layout.
"""


import json

import dagster as dg

from vector_pipeline.config import Settings
from vector_pipeline.migration.compare import compare_collection, read_query_file, render_markdown, summary_frame
from vector_pipeline.migration.mirror import MirrorOutcome, mirror
from vector_pipeline.migration.state import MigrationState, migration_key, utc_stamp

from .resources import VectorPipelineResource


class ComparisonConfig(dg.Config):
    """Queries: a file of texts (default PINECONE_COMPARE_QUERIES), else a sample of stored vectors."""

    k: int = 10
    sample: int | None = None
    queries_file: str | None = None


def pinecone_assets(collection: str) -> list[dg.AssetsDefinition]:
    mirror_key = dg.AssetKey([collection, "pinecone_mirror"])
    comparison_key = dg.AssetKey([collection, "pinecone_comparison"])

    @dg.asset(key=mirror_key, deps=[dg.AssetKey([collection, "snapshot"])], group_name=f"{collection}_pinecone",
              kinds={"pinecone", "s3"},
              check_specs=[dg.AssetCheckSpec("mirror_caught_up", asset=mirror_key,
                                             description="Every delta of the published snapshot reached Pinecone.")],
              description=f"Dual-write: the {collection} deltas the published snapshot applied, sent to Pinecone.")
    def pinecone_mirror(context: dg.AssetExecutionContext, vector_pipeline: VectorPipelineResource) -> dg.MaterializeResult:
        settings = vector_pipeline.settings()
        result = mirror(settings, collection, say=context.log.info)
        return dg.MaterializeResult(
            metadata={"outcome": result.outcome.value, "lag_deltas": dg.MetadataValue.int(result.lag_deltas),
                      "lag_s": dg.MetadataValue.float(result.lag_seconds),
                      "deltas_mirrored": dg.MetadataValue.int(result.deltas_mirrored),
                      "upserts": result.upserts, "deletes": result.deletes, "watermark": result.watermark or "",
                      "snapshot_version": result.version or "", "error": result.error or ""},
            check_results=[dg.AssetCheckResult(
                check_name="mirror_caught_up", passed=result.outcome is not MirrorOutcome.BEHIND,
                severity=dg.AssetCheckSeverity.WARN,
                description=result.error or f"lag {result.lag_deltas} deltas",
                metadata={"lag_deltas": result.lag_deltas})])

    @dg.asset(key=comparison_key, deps=[mirror_key], group_name=f"{collection}_pinecone", kinds={"pinecone", "chromadb"},
              check_specs=[dg.AssetCheckSpec("recall_at_least_bar", asset=comparison_key,
                                             description="recall@k of the Chroma snapshot against exact search "
                                                         "is at least the bar (PINECONE_MIN_RECALL).")],
              description=f"The {collection} snapshot against Pinecone: recall@k of each vs exact search, overlap@k, drift.")
    def pinecone_comparison(context: dg.AssetExecutionContext, config: ComparisonConfig,
                            vector_pipeline: VectorPipelineResource) -> dg.MaterializeResult:
        settings = vector_pipeline.settings()
        queries_file = config.queries_file or settings.pinecone_compare_queries
        texts = read_query_file(queries_file) if queries_file else None
        comparison = compare_collection(settings, collection, texts=texts, k=config.k,
                                        sample=None if texts else (config.sample or settings.pinecone_compare_sample))
        report, frame = comparison.report, comparison.per_query
        prefix = migration_key(collection, f"comparisons/{utc_stamp()}/")
        state = MigrationState(settings)
        state.put_bytes(prefix + "report.json", json.dumps(report, indent=2).encode(), "application/json")
        state.put_bytes(prefix + "report.md", render_markdown(comparison).encode(), "text/markdown")
        state.put_bytes(prefix + "per_query.csv", frame.to_csv(index=False).encode(), "text/csv")
        context.log.info(f"report in s3://{settings.vectors_bucket}/{prefix}")
        return dg.MaterializeResult(
            metadata={
                "recall_at_k_chroma": dg.MetadataValue.float(report["recall_at_k"]["chroma"]),
                "recall_at_k_pinecone": dg.MetadataValue.float(report["recall_at_k"]["pinecone"]),
                "overlap_at_k": dg.MetadataValue.float(report["overlap_at_k"]),
                "ids_only_in_chroma": dg.MetadataValue.int(report["ids_only_in_chroma"]),
                "ids_only_in_pinecone": dg.MetadataValue.int(report["ids_only_in_pinecone"]),
                "latency_p50_ms_chroma": dg.MetadataValue.float(report["latency_ms"]["chroma"]["p50"]),
                "latency_p50_ms_pinecone": dg.MetadataValue.float(report["latency_ms"]["pinecone"]["p50"]),
                "queries": report["queries"], "k": report["k"], "snapshot_version": report["snapshot_version"] or "",
                "summary": dg.MetadataValue.md(summary_frame(report).to_markdown(index=False)),
                "report": dg.MetadataValue.path(f"s3://{settings.vectors_bucket}/{prefix}report.md"),
            },
            check_results=[dg.AssetCheckResult(
                check_name="recall_at_least_bar", passed=comparison.passed(), severity=dg.AssetCheckSeverity.ERROR,
                description=f"recall@{report['k']} of the snapshot {report['recall_at_k']['chroma']} "
                            f"(bar {report['min_recall']})",
                metadata={"recall_at_k_chroma": float(report["recall_at_k"]["chroma"]),
                          "min_recall": float(report["min_recall"])})])

    return [pinecone_mirror, pinecone_comparison]


MIRROR_CRON = "*/10 * * * *"


def pinecone_definitions(settings: Settings) -> dg.Definitions:
    """Per collection: mirror + comparison assets, job ``pinecone_<c>`` running both, job
    ``pinecone_mirror_<c>`` scheduled every 10 minutes (so the mirror catches up after an
    outage by itself). Settings, the API key among them, come through the ``vector_pipeline``
    resource."""
    assets = [a for c in settings.collections for a in pinecone_assets(c)]
    jobs, schedules = [], []
    for c in settings.collections:
        mirror_key = dg.AssetKey([c, "pinecone_mirror"])
        jobs.append(dg.define_asset_job(f"pinecone_{c}", selection=[mirror_key, dg.AssetKey([c, "pinecone_comparison"])],
                                        description=f"Mirror the {c} deltas to Pinecone, then compare the two stores."))
        mirror_job = dg.define_asset_job(f"pinecone_mirror_{c}", selection=[mirror_key],
                                         description=f"Dual-write: send the published {c} deltas to Pinecone.")
        jobs.append(mirror_job)
        schedules.append(dg.ScheduleDefinition(job=mirror_job, cron_schedule=MIRROR_CRON, name=f"pinecone_mirror_{c}_schedule",
                                               default_status=dg.DefaultScheduleStatus.RUNNING))
    return dg.Definitions(assets=assets, jobs=jobs, schedules=schedules)
