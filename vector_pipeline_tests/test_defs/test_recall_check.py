"""The recall check of every candidate (defs/checks.py): its figure as metadata of the
candidate, a warning below the collection's recall_target, a blocked publish below its
recall_floor. Executed in process against the moto server."""

import dagster as dg

from vector_pipeline import produce_embedding_delta
from vector_pipeline.table.catalog import CollectionCatalog
from vector_pipeline.config import Settings
from vector_pipeline.defs.checks import RECALL_CHECK_NAME
from vector_pipeline.table.snapshot_store import SnapshotStore

from vector_pipeline_tests.helpers import hard_collection
from .jobs import compact


def _recall_check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == RECALL_CHECK_NAME]
    return evaluation


def test_recall_check_warns_below_the_target_and_blocks_below_the_floor(
        defs: dg.Definitions, instance: dg.DagsterInstance, settings: Settings) -> None:
    hard_collection(settings, "hard")
    first = compact(defs, instance, "hard")
    assert first.success and _recall_check(first).passed
    [materialization] = first.asset_materializations_for_node("snapshot_candidate")
    assert materialization.metadata["recall_at_k"].value >= 0.95  # the figure Dagster plots over versions
    [published] = first.asset_materializations_for_node("snapshot")
    assert published.metadata["recall_at_k"].value == materialization.metadata["recall_at_k"].value

    catalog = CollectionCatalog(settings)
    catalog.update("hard", hnsw_search_ef=1)
    produce_embedding_delta(["late-1"], [[0.5] * 32], collection_name="hard", settings=settings)
    warned = compact(defs, instance, "hard")
    check = _recall_check(warned)
    assert warned.success and not check.passed and check.severity is dg.AssetCheckSeverity.WARN
    assert check.metadata["recall_at_k"].value < 0.95
    published = SnapshotStore(settings).read_pointer("hard").version

    catalog.update("hard", recall_floor=0.95)
    produce_embedding_delta(["late-2"], [[0.25] * 32], collection_name="hard", settings=settings)
    blocked = compact(defs, instance, "hard")
    check = _recall_check(blocked)
    assert not blocked.success and not check.passed and check.severity is dg.AssetCheckSeverity.ERROR
    assert SnapshotStore(settings).read_pointer("hard").version == published  # readers stay where they were
