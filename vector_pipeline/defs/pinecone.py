"""Pinecone migration in Dagster, partitioned by collection like the snapshot assets.

``pinecone_mirror`` (downstream of the published ``snapshot``) sends the deltas that version
applied to Pinecone; it follows publishes by declarative automation (``eager``: a run for
collection c once ``snapshot[c]`` was published, none while one is in progress, so a burst of
publishes coalesces into the next run, which sends everything the mirror lacks);
``pinecone_comparison`` runs the same comparison as ``vector-pipeline pinecone compare`` and
records recall/overlap as float metadata (plotted over time), with the check
``recall_at_least_bar``. Built only when ``PINECONE_INDEX_HOST`` is set; configured from
``Settings`` (through the ``vector_pipeline`` resource) like every asset.
"""


import json

import dagster as dg

from vector_pipeline.migration.compare import compare_collection, read_query_file, render_markdown, summary_frame
from vector_pipeline.migration.mirror import MirrorOutcome, mirror
from vector_pipeline.migration.state import MigrationState, migration_key, utc_stamp

from .assets import snapshot
from .partitions import collection_partitions
from .resources import VectorPipelineResource


class ComparisonConfig(dg.Config):
    """Queries: a file of texts (default PINECONE_COMPARE_QUERIES), else a sample of stored vectors."""

    k: int = 10
    sample: int | None = None
    queries_file: str | None = None


@dg.asset(key="pinecone_mirror", partitions_def=collection_partitions, deps=[snapshot], group_name="pinecone",
          kinds={"pinecone", "s3"}, automation_condition=dg.AutomationCondition.eager(),
          check_specs=[dg.AssetCheckSpec("mirror_caught_up", asset="pinecone_mirror", partitions_def=collection_partitions,
                                         description="Every delta of the published snapshot reached Pinecone.")])
def pinecone_mirror(context: dg.AssetExecutionContext, vector_pipeline: VectorPipelineResource) -> dg.MaterializeResult:
    """Dual-write: the deltas the collection's published snapshot applied, sent to Pinecone."""
    result = mirror(vector_pipeline.settings(), context.partition_key, say=context.log.info)
    return dg.MaterializeResult(
        metadata={"outcome": result.outcome.value, "lag_deltas": dg.MetadataValue.int(result.lag_deltas),
                  "lag_s": dg.MetadataValue.float(result.lag_seconds),
                  "deltas_mirrored": dg.MetadataValue.int(result.deltas_mirrored),
                  "upserts": result.upserts, "deletes": result.deletes, "watermark": result.watermark or "",
                  "snapshot_version": result.version or "", "error": result.error or ""},
        check_results=[dg.AssetCheckResult(
            check_name="mirror_caught_up", passed=result.outcome is not MirrorOutcome.BEHIND,
            severity=dg.AssetCheckSeverity.WARN, description=result.error or f"lag {result.lag_deltas} deltas",
            metadata={"lag_deltas": result.lag_deltas})])


@dg.asset(key="pinecone_comparison", partitions_def=collection_partitions, deps=[pinecone_mirror],
          group_name="pinecone", kinds={"pinecone", "chromadb"},
          check_specs=[dg.AssetCheckSpec("recall_at_least_bar", asset="pinecone_comparison",
                                         partitions_def=collection_partitions,
                                         description="recall@k of the Chroma snapshot against exact search "
                                                     "is at least the bar (PINECONE_MIN_RECALL).")])
def pinecone_comparison(context: dg.AssetExecutionContext, config: ComparisonConfig,
                        vector_pipeline: VectorPipelineResource) -> dg.MaterializeResult:
    """The collection's snapshot against Pinecone: recall@k of each vs exact search, overlap@k, drift."""
    collection = context.partition_key
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
            "overlap_at_k_counting_ties": dg.MetadataValue.float(report["overlap_at_k_counting_ties"]),
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


pinecone_job = dg.define_asset_job("pinecone", selection=[pinecone_mirror, pinecone_comparison],
                                   description="Mirror a collection's deltas to Pinecone, then compare the two stores.")
pinecone_mirror_job = dg.define_asset_job("mirror_to_pinecone", selection=[pinecone_mirror],
                                          description="Dual-write: send a collection's published deltas to Pinecone.")


# The mirror's automation, on by default (Dagster's own default automation sensor starts stopped).
mirror_follows_publishes = dg.AutomationConditionSensorDefinition(
    "pinecone_mirror_follows_publishes", target=dg.AssetSelection.assets(pinecone_mirror), minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests pinecone_mirror[c] once snapshot[c] was published (eager), none while one is in progress.")


def pinecone_definitions() -> dg.Definitions:
    """The assets and jobs above; their settings, the API key among them, come through the
    ``vector_pipeline`` resource. The Pinecone jobs take no writer key: they never write a collection."""
    return dg.Definitions(assets=[pinecone_mirror, pinecone_comparison], jobs=[pinecone_job, pinecone_mirror_job],
                          sensors=[mirror_follows_publishes])
