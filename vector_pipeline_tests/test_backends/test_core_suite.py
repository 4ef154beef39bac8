"""The core suite on independent AWS implementations (``conftest.INDEPENDENT_BACKENDS``):
produce, compact (with archiving), query, the lock, a conflicting publish, a paused holder
(in-process and as a SIGSTOPped process), a crash before publish (in-process and SIGKILL),
the CLI as a subprocess (endpoints per service passed on), and the collection catalog's
conditional writes. The tests are those of the moto suite, collected again here with this
package's ``settings``; what they cover is said in their own modules. Not covered here: Dagster, Pinecone, the full reliability counts."""

import numpy as np

from vector_pipeline.config import Settings

from vector_pipeline_tests.test_table.test_catalog import test_collections_are_created_listed_shown_and_set_from_the_command_line  # noqa: F401
from vector_pipeline_tests.test_table.test_catalog import test_concurrent_changes_never_overwrite_each_other  # noqa: F401
from vector_pipeline_tests.test_cli.test_commands import test_produce_compact_query_status_round_trip  # noqa: F401
from vector_pipeline_tests.test_compaction.test_compactor import (  # noqa: F401
    test_a_lost_publish_leaves_the_delta_pending_and_the_next_run_applies_it,
    test_busy_lock_leaves_everything_unchanged,
    test_compaction_publishes_a_version_and_archives_deltas,
    test_crash_after_upload_before_publish_changes_nothing_visible,
    test_deletes_remove_vectors_and_delete_wins_inside_one_delta,
    test_paused_lock_holder_cannot_publish_over_newer_pointer,
    test_redelivered_delta_is_a_noop,
)
from vector_pipeline_tests.test_io.test_lock import (  # noqa: F401
    test_expired_lock_is_taken_over_and_old_holder_cannot_heartbeat,
    test_fence_grows_on_every_acquire,
    test_only_the_owner_can_release,
    test_second_acquirer_is_refused_while_lock_is_live,
)
from vector_pipeline_tests.test_read.test_reader import test_query_returns_nearest_with_exact_documents_and_metadata  # noqa: F401
from vector_pipeline_tests.test_read.test_reader import test_reader_moves_to_the_new_version_after_publish  # noqa: F401
from vector_pipeline_tests.test_reliability.test_concurrency import test_paused_holder_resumed_after_takeover_cannot_publish  # noqa: F401
from vector_pipeline_tests.test_reliability import test_crash_matrix as crash_matrix  # its 7 steps run on moto


def test_compactor_killed_after_upload_before_publish_converges(settings: Settings, rng: np.random.Generator) -> None:
    crash_matrix.test_compactor_killed_at_any_step_converges(settings, rng, "after_upload", "append")
