"""The blocking audit of every snapshot candidate: a failure stops the publish step, so
readers stay on the previous version.

It is a check spec of the candidate asset itself, evaluated in the same step right after
the version is written: so it audits exactly the candidate of the run's collection
partition (a separate check step would load its input through the IO manager, which does
not follow the partition for checks).
"""


from typing import Any

import dagster as dg

from vector_pipeline.compaction.audit import audit_candidate, audited_copy
from vector_pipeline.config import Settings
from vector_pipeline.compaction.version_writer import Candidate
from vector_pipeline.read.recall import RecallReport, RecallVerdict, collection_config, judge, recall_of_local_copy

AUDIT_CHECK_NAME = "vector_count_matches_prior_plus_deltas"
audit_check = dg.AssetCheckSpec(
    AUDIT_CHECK_NAME, asset="snapshot_candidate", blocking=True,
    description="Candidate read back from S3: checksums, and its vector count equals the prior snapshot's "
                "plus the net effect of the applied deltas.")


def audit_check_result(settings: Settings, candidate: Candidate) -> dg.AssetCheckResult:
    report = audit_candidate(settings, candidate)
    metadata: dict[str, Any] = {k: v for k, v in report.facts.items() if isinstance(v, (int, float, str))}
    return dg.AssetCheckResult(
        check_name=AUDIT_CHECK_NAME, asset_key="snapshot_candidate",
        passed=report.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=report.problem or "candidate matches the prior snapshot plus its deltas",
        metadata={**metadata, "checks": dg.MetadataValue.json(report.checks)},
    )


# -- recall@k of every candidate (recall.py): warn below the collection's target, block below its floor --

RECALL_CHECK_NAME = "recall_at_k_meets_target"
recall_check = dg.AssetCheckSpec(
    RECALL_CHECK_NAME, asset="snapshot_candidate", blocking=True,
    description="recall@k of the candidate (every segment, masks applied) against exact search over its live "
                "records: warns below the collection's recall_target, blocks the publish below its recall_floor.")


def candidate_recall(settings: Settings, candidate: Candidate) -> RecallReport | None:
    """recall@k of the candidate, measured on the audit's copy (None: no candidate)."""
    if candidate.manifest is None:
        return None
    return recall_of_local_copy(settings, audited_copy(settings, candidate), candidate.manifest)


def recall_check_result(settings: Settings, candidate: Candidate, report: RecallReport | None) -> dg.AssetCheckResult:
    if report is None:  # nothing written, or the audit failed (and blocks the publish itself)
        return dg.AssetCheckResult(check_name=RECALL_CHECK_NAME, asset_key="snapshot_candidate",
                                   passed=candidate.manifest is None, severity=dg.AssetCheckSeverity.WARN,
                                   description="no new version: nothing to measure" if candidate.manifest is None
                                   else "not measured: the audit failed")
    config = collection_config(settings, candidate.collection)
    verdict = judge(report.recall_at_k, config)
    floor = "off" if config.recall_floor is None else config.recall_floor
    return dg.AssetCheckResult(
        check_name=RECALL_CHECK_NAME, asset_key="snapshot_candidate",
        passed=verdict is RecallVerdict.MEETS_TARGET,
        severity=dg.AssetCheckSeverity.ERROR if verdict is RecallVerdict.BELOW_FLOOR else dg.AssetCheckSeverity.WARN,
        description=f"recall@{report.k} {report.recall_at_k:.4f} over {report.queries} queries ({verdict}; target "
                    f"{config.recall_target}, floor {floor})",
        metadata={"recall_at_k": dg.MetadataValue.float(report.recall_at_k), "k": report.k,
                  "queries": report.queries, "recall_target": dg.MetadataValue.float(config.recall_target),
                  "verdict": str(verdict), "version": report.version, "search_ef": report.search_ef,
                  "exact_search_s": dg.MetadataValue.float(round(report.exact_seconds, 3))})
