"""Asset checks, every one partitioned by collection (the UI shows each collection's result).

- ``vector_count_matches_prior_plus_deltas`` (blocking): the candidate read back from S3;
  a failure stops the publish step, so readers stay on the previous version.
- ``deltas_valid`` (warn): the deltas the candidate's intake took were all valid; the
  quarantined ones are named with their reason (validation happens once, in the intake).
- ``recall_at_k_meets_target``: recall@k of the candidate (every segment, masks applied)
  against exact search over its live records (read/recall.py); warns below the collection's
  ``recall_target``, blocks the publish below its ``recall_floor``.

All are check specs of the candidate asset, evaluated in its step right after the version
is written: they judge exactly the candidate of the run's collection partition. A new
check: its spec and its result function here, the spec listed in ``CANDIDATE_CHECKS``.
"""

from typing import Any

import dagster as dg

from vector_pipeline.compaction.audit import audit_candidate, audited_copy
from vector_pipeline.compaction.version_writer import Candidate
from vector_pipeline.config import Settings
from vector_pipeline.read.recall import RecallReport, RecallVerdict, collection_config, judge, recall_of_local_copy

from .partitions import collection_partitions

CANDIDATE = "snapshot_candidate"

AUDIT_CHECK_NAME = "vector_count_matches_prior_plus_deltas"
audit_check = dg.AssetCheckSpec(
    AUDIT_CHECK_NAME, asset=CANDIDATE, blocking=True, partitions_def=collection_partitions,
    description="Candidate read back from S3: checksums, and its vector count equals the prior snapshot's "
                "plus the net effect of the applied deltas.")

DELTAS_VALID_CHECK_NAME = "deltas_valid"
deltas_valid_check = dg.AssetCheckSpec(
    DELTAS_VALID_CHECK_NAME, asset=CANDIDATE, partitions_def=collection_partitions,
    description="Every delta the compaction took was valid; quarantined ones (under quarantine/<c>/, "
                "with reason.json) are listed with their reason.")

RECALL_CHECK_NAME = "recall_at_k_meets_target"
recall_check = dg.AssetCheckSpec(
    RECALL_CHECK_NAME, asset=CANDIDATE, blocking=True, partitions_def=collection_partitions,
    description="recall@k of the candidate (every segment, masks applied) against exact search over its live "
                "records: warns below the collection's recall_target, blocks the publish below its recall_floor.")

CANDIDATE_CHECKS = [audit_check, deltas_valid_check, recall_check]


def audit_check_result(settings: Settings, candidate: Candidate) -> dg.AssetCheckResult:
    report = audit_candidate(settings, candidate)
    metadata: dict[str, Any] = {k: v for k, v in report.facts.items() if isinstance(v, (int, float, str))}
    return dg.AssetCheckResult(
        check_name=AUDIT_CHECK_NAME, asset_key=CANDIDATE,
        passed=report.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=report.problem or "candidate matches the prior snapshot plus its deltas",
        metadata={**metadata, "checks": dg.MetadataValue.json(report.checks)},
    )


def deltas_valid_result(candidate: Candidate) -> dg.AssetCheckResult:
    quarantined = candidate.quarantined
    return dg.AssetCheckResult(
        check_name=DELTAS_VALID_CHECK_NAME, asset_key=CANDIDATE,
        passed=not quarantined, severity=dg.AssetCheckSeverity.WARN,
        description=(f"{len(quarantined)} delta(s) quarantined" if quarantined
                     else f"all {len(candidate.applied) + len(candidate.already_applied)} deltas valid"),
        metadata={"quarantined": dg.MetadataValue.int(len(quarantined)),
                  "deltas_taken": dg.MetadataValue.int(len(candidate.applied) + len(candidate.already_applied)),
                  "reasons": dg.MetadataValue.json(quarantined)},
    )


def candidate_recall(settings: Settings, candidate: Candidate) -> RecallReport | None:
    """recall@k of the candidate, measured on the audit's copy (None: no candidate)."""
    if candidate.manifest is None:
        return None
    return recall_of_local_copy(settings, audited_copy(settings, candidate), candidate.manifest)


def recall_check_result(settings: Settings, candidate: Candidate, report: RecallReport | None) -> dg.AssetCheckResult:
    if report is None:  # nothing written, or the audit failed (and blocks the publish itself)
        return dg.AssetCheckResult(check_name=RECALL_CHECK_NAME, asset_key=CANDIDATE,
                                   passed=candidate.manifest is None, severity=dg.AssetCheckSeverity.WARN,
                                   description="no new version: nothing to measure" if candidate.manifest is None
                                   else "not measured: the audit failed")
    config = collection_config(settings, candidate.collection)
    verdict = judge(report.recall_at_k, config)
    floor = "off" if config.recall_floor is None else config.recall_floor
    return dg.AssetCheckResult(
        check_name=RECALL_CHECK_NAME, asset_key=CANDIDATE,
        passed=verdict is RecallVerdict.MEETS_TARGET,
        severity=dg.AssetCheckSeverity.ERROR if verdict is RecallVerdict.BELOW_FLOOR else dg.AssetCheckSeverity.WARN,
        description=f"recall@{report.k} {report.recall_at_k:.4f} over {report.queries} queries ({verdict}; target "
                    f"{config.recall_target}, floor {floor})",
        metadata={"recall_at_k": dg.MetadataValue.float(report.recall_at_k), "k": report.k,
                  "queries": report.queries, "recall_target": dg.MetadataValue.float(config.recall_target),
                  "verdict": str(verdict), "version": report.version, "search_ef": report.search_ef,
                  "exact_search_s": dg.MetadataValue.float(round(report.exact_seconds, 3))})


def candidate_check_results(settings: Settings,
                            candidate: Candidate) -> tuple[list[dg.AssetCheckResult], RecallReport | None]:
    """Every check of the candidate, in ``CANDIDATE_CHECKS`` order, and its recall (measured
    only when the audit passed)."""
    audit = audit_check_result(settings, candidate)
    recall = candidate_recall(settings, candidate) if audit.passed else None
    return [audit, deltas_valid_result(candidate), recall_check_result(settings, candidate, recall)], recall
