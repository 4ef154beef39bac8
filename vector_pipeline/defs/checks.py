"""The blocking audit of every snapshot candidate: a failure stops the publish step, so
readers stay on the previous version.

It is a check spec of the candidate asset itself, evaluated in the same step right after
the version is written: so it audits exactly the candidate of the run's collection
partition (a separate check step would load its input through the IO manager, which does
not follow the partition for checks).
"""


from typing import Any

import dagster as dg

from vector_pipeline.compaction.audit import audit_candidate
from vector_pipeline.config import Settings
from vector_pipeline.compaction.version_writer import Candidate

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
