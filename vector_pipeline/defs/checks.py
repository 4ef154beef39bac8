"""The blocking audit of every snapshot candidate: a failure stops the publish step, so
readers stay on the previous version."""


from typing import Any

import dagster as dg

from vector_pipeline.audit import audit_candidate

from .resources import VectorPipelineResource


def snapshot_checks(collection: str) -> list[dg.AssetChecksDefinition]:
    candidate_key = dg.AssetKey([collection, "snapshot_candidate"])

    @dg.asset_check(asset=candidate_key, name="vector_count_matches_prior_plus_deltas", blocking=True,
                    description="Candidate read back from S3: checksums, and its vector count equals "
                                "the prior snapshot's plus the net effect of the applied deltas.")
    def vector_count_matches(vector_pipeline: VectorPipelineResource,
                             candidate: dict[str, Any]) -> dg.AssetCheckResult:
        report = audit_candidate(vector_pipeline.settings(), candidate["candidate"])
        return dg.AssetCheckResult(
            passed=report.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=report.problem or "candidate matches the prior snapshot plus its deltas",
            metadata={**{k: v for k, v in report.facts.items() if isinstance(v, (int, float, str))},
                      "checks": dg.MetadataValue.json(report.checks)},
        )

    return [vector_count_matches]
