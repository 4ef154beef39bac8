"""Settings come from one place: the environment (or defaults), read by config.py alone, and
reach the CLI's subprocesses and the Dagster resource the same way. Not covered here: what
each setting does (the tests of the modules that use it)."""

import dataclasses

import pytest

from vector_pipeline.io.aws import sse_args
from vector_pipeline.config import SECRET_ENV_KEYS, HnswSettings, Settings, _memory_backed_tmp


def test_segment_policy_and_scratch_dir_come_from_the_environment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings.from_env({"SEGMENT_MAX_COUNT": "6", "SEGMENT_FOLD_RATIO": "0.5",
                                  "VECTOR_PIPELINE_SCRATCH_DIR": str(tmp_path)})
    assert (settings.segment_max_count, settings.segment_fold_ratio, settings.scratch_dir) == (6, 0.5, str(tmp_path))
    defaults = Settings.from_env({})
    assert (defaults.segment_max_count, defaults.segment_fan_in, defaults.segment_fold_ratio) == (10, 4, 0.25)


def test_small_shared_memory_is_not_used_as_scratch() -> None:
    # A container's default /dev/shm (64 MB) would run out while large deltas are read.
    assert _memory_backed_tmp(min_free_bytes=1 << 60) is None


def _other_value(field: dataclasses.Field, default: object) -> object:  # type: ignore[type-arg]
    """A valid value unlike the default, for every kind of field Settings has."""
    special = {"sse": "aws:kms", "pinecone_namespaces": (("words", "receipt-words"), ("lines", "ns-2")),
               "aws_service_endpoints": (("dynamodb", "http://127.0.0.1:8001"), ("s3", "http://127.0.0.1:8002")),
               "lock_heartbeat_seconds": 12.5, "metrics_sink": "cloudwatch"}
    if field.name in special:
        return special[field.name]
    if isinstance(default, HnswSettings):
        return HnswSettings(space="l2", search_ef=default.search_ef + 1, construction_ef=default.construction_ef + 1,
                            max_neighbors=default.max_neighbors + 1)
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 7
    if isinstance(default, float):
        return default + 0.5
    if isinstance(default, tuple):
        return ("alpha", "beta-2")
    if default is None or isinstance(default, str):
        return f"other-{field.name}"
    raise AssertionError(f"Settings.{field.name}: no test value for {type(default).__name__}; extend _other_value")


def _every_field_changed() -> Settings:
    defaults = Settings()
    values = {f.name: _other_value(f, getattr(defaults, f.name)) for f in dataclasses.fields(Settings)}
    changed = Settings(**values)
    same = [f.name for f in dataclasses.fields(Settings) if getattr(changed, f.name) == getattr(defaults, f.name)]
    assert not same, same
    return changed


def test_every_setting_round_trips_through_the_environment() -> None:
    changed = _every_field_changed()
    assert Settings.from_env(changed.to_env()) == changed
    assert Settings.from_env(Settings().to_env()) == Settings()


def test_every_setting_reaches_the_dagster_resource_and_secrets_stay_out_of_its_plain_config(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import dagster as dg
    import pytest

    from vector_pipeline.defs.resources import MissingSecretError, pipeline_resource

    changed = _every_field_changed()
    with pytest.raises(MissingSecretError, match="EnvVar"):  # a secret never falls back to its plain value
        pipeline_resource(changed)
    for key in SECRET_ENV_KEYS:
        monkeypatch.setenv(key, changed.to_env()[key])
    resource = pipeline_resource(changed)
    assert not SECRET_ENV_KEYS & set(resource.environment)
    with dg.build_resources({"vector_pipeline": resource}) as resolved:  # EnvVars resolved, as in a run
        assert resolved.vector_pipeline.settings() == changed
    assert resource.s3.endpoint_url == "http://127.0.0.1:8002"
    assert resource.dynamodb_lock.endpoint_url == "http://127.0.0.1:8001"
    assert resource.sqs.endpoint_url == changed.aws_endpoint_url
    # The AWS resources are the ones used: the queue, table and TTL come from their fields.
    from vector_pipeline.defs.resources import DynamoDBLockResource, SQSResource, VectorPipelineResource

    moved = VectorPipelineResource(
        s3=resource.s3, environment=resource.environment, openai_api_key=resource.openai_api_key,
        pinecone_api_key=resource.pinecone_api_key,
        sqs=SQSResource(queue_name="other-queue", endpoint_url=resource.sqs.endpoint_url),
        dynamodb_lock=DynamoDBLockResource(table_name="other-locks", ttl_seconds=77,
                                           endpoint_url=resource.dynamodb_lock.endpoint_url))
    with dg.build_resources({"vector_pipeline": moved}) as resolved:
        used = resolved.vector_pipeline.settings()
    assert (used.delta_queue_name, used.dynamodb_table_name, used.lock_ttl_seconds) == ("other-queue", "other-locks", 77)
    assert isinstance(pipeline_resource(changed).pinecone_api_key, dg.EnvVar)


def test_per_service_endpoints_win_over_the_general_one() -> None:
    settings = Settings.from_env({"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:2"})
    assert settings.endpoint_url_for("s3") == "http://127.0.0.1:2"
    assert settings.endpoint_url_for("sqs") == "http://127.0.0.1:1"
    assert Settings.from_env({"AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:3"}).describe_endpoints() != "real AWS"
    assert Settings.from_env({}).describe_endpoints() == "real AWS"


def test_encryption_follows_the_setting() -> None:
    assert sse_args(Settings()) == {"ServerSideEncryption": "AES256"}
    assert sse_args(Settings.from_env({"VECTORS_SSE": "none"})) == {}
    kms = Settings.from_env({"VECTORS_SSE": "aws:kms", "VECTORS_SSE_KMS_KEY_ID": "alias/vectors"})
    assert sse_args(kms) == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/vectors"}


@pytest.mark.parametrize("environment, named", [
    ({"VECTORS_SSE": "aes"}, "VECTORS_SSE"),
    ({"COMPACTION_LOCK_TTL_SECONDS": "soon"}, "COMPACTION_LOCK_TTL_SECONDS"),
    ({"VECTORS_SSE_KMS_KEY_ID": "k"}, "VECTORS_SSE"),
])
def test_a_bad_value_is_refused_naming_its_key(environment: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Settings.from_env(environment)
