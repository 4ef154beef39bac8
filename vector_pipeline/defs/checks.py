"""The blocking audit of every snapshot candidate: a failure stops the publish step, so
readers stay on the previous version."""


import dagster as dg

from vector_pipeline.audit import audit_candidate
from vector_pipeline.version_writer import Candidate

from .resources import VectorPipelineResource


@dg.asset_check(asset="snapshot_candidate", name="vector_count_matches_prior_plus_deltas", blocking=True,
                description="Candidate read back from S3: checksums, and its vector count equals "
                            "the prior snapshot's plus the net effect of the applied deltas.")
def vector_count_matches(vector_pipeline: VectorPipelineResource, snapshot_candidate: Candidate) -> dg.AssetCheckResult:
    report = audit_candidate(vector_pipeline.settings(), snapshot_candidate)
    return dg.AssetCheckResult(
        passed=report.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=report.problem or "candidate matches the prior snapshot plus its deltas",
        metadata={**{k: v for k, v in report.facts.items() if isinstance(v, (int, float, str))},
                  "checks": dg.MetadataValue.json(report.checks)},
    )
