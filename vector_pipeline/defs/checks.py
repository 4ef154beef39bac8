"""Asset checks, every one partitioned by collection (the UI shows each collection's result).

- ``vector_count_matches_prior_plus_deltas`` (blocking): the candidate read back from S3;
  a failure stops the publish step, so readers stay on the previous version.
- ``deltas_valid`` (warn): the deltas the candidate's intake took were all valid; the
  quarantined ones are named with their reason (validation happens once, in the intake).

Both are check specs of the candidate asset, evaluated in its step right after the version
is written: they judge exactly the candidate of the run's collection partition. A new
check: its spec and its result function here, the spec listed in ``CANDIDATE_CHECKS``.
"""

from typing import Any

import dagster as dg

from vector_pipeline.compaction.audit import audit_candidate
from vector_pipeline.compaction.version_writer import Candidate
from vector_pipeline.config import Settings

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

CANDIDATE_CHECKS = [audit_check, deltas_valid_check]


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


def candidate_check_results(settings: Settings, candidate: Candidate) -> list[dg.AssetCheckResult]:
    """Every check of the candidate, in ``CANDIDATE_CHECKS`` order."""
    return [audit_check_result(settings, candidate), deltas_valid_result(candidate)]
