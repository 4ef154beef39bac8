"""Settings come from one place: the environment (or defaults), read by config.py alone."""

from vector_pipeline.config import Settings, _memory_backed_tmp


def test_segment_policy_and_scratch_dir_come_from_the_environment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings.from_env({"SEGMENT_MAX_COUNT": "6", "SEGMENT_FOLD_RATIO": "0.5",
                                  "VECTOR_PIPELINE_SCRATCH_DIR": str(tmp_path)})
    assert (settings.segment_max_count, settings.segment_fold_ratio, settings.scratch_dir) == (6, 0.5, str(tmp_path))
    defaults = Settings.from_env({})
    assert (defaults.segment_max_count, defaults.segment_fold_ratio) == (4, 0.25)


def test_small_shared_memory_is_not_used_as_scratch() -> None:
    # A container's default /dev/shm (64 MB) would run out while large deltas are read.
    assert _memory_backed_tmp(min_free_bytes=1 << 60) is None
