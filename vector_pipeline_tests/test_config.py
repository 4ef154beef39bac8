"""Settings come from one place: the fields of ``Settings`` (key, meaning, default), read from the
environment by config.py alone, and reach the CLI's subprocesses, the Dagster resource (whose
fields are made from the model) and docs/configuration.md the same way; secrets never show.
Not covered here: what each setting does (the tests of the modules that use it)."""

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


def _other_value(name: str, default: object) -> object:
    """A valid value unlike the default, for every kind of field Settings has."""
    special = {"sse": "aws:kms", "pinecone_namespaces": (("words", "receipt-words"), ("lines", "ns-2")),
               "aws_service_endpoints": (("dynamodb", "http://127.0.0.1:8001"), ("s3", "http://127.0.0.1:8002")),
               "lock_heartbeat_seconds": 12.5, "metrics_sink": "cloudwatch", "hnsw_space": "l2"}
    if name in special:
        return special[name]
    if isinstance(default, bool):
        return not default
    if isinstance(default, int):
        return default + 7
    if isinstance(default, float):
        return default + 0.5
    if isinstance(default, tuple):
        return ("alpha", "beta-2")
    if default is None or isinstance(default, str):
        return f"other-{name}"
    raise AssertionError(f"Settings.{name}: no test value for {type(default).__name__}; extend _other_value")


def _every_field_changed() -> Settings:
    defaults = Settings()
    changed = Settings(**{name: _other_value(name, getattr(defaults, name)) for name in Settings.model_fields})
    same = [name for name in Settings.model_fields if getattr(changed, name) == getattr(defaults, name)]
    assert not same, same
    return changed


def test_every_setting_round_trips_through_the_environment() -> None:
    changed = _every_field_changed()
    assert Settings.from_env(changed.to_env()) == changed
    assert Settings.from_env(Settings().to_env()) == Settings()


def test_secrets_never_show_in_a_repr_but_travel_to_subprocesses() -> None:
    changed = _every_field_changed()
    assert SECRET_ENV_KEYS == {"AWS_SECRET_ACCESS_KEY", "OPENAI_API_KEY", "PINECONE_API_KEY"}
    for key in SECRET_ENV_KEYS:
        value = changed.to_env()[key]  # a subprocess's environment carries the value itself
        assert value.startswith("other-") and value not in repr(changed) and value not in str(changed)
    assert changed.openai_api_key is not None and changed.openai_api_key.get_secret_value() == "other-openai_api_key"


def test_copies_are_checked_and_take_hnsw_settings_whole() -> None:
    hnsw = HnswSettings(space="l2", search_ef=7, construction_ef=9, max_neighbors=4)
    assert Settings().replace(hnsw=hnsw).hnsw == hnsw
    assert Settings().with_overrides(vectors_bucket=None, segment_fan_in=3).segment_fan_in == 3
    with pytest.raises(ValueError, match="VECTORS_SSE_KMS_KEY_ID"):
        Settings().replace(sse_kms_key_id="alias/k")
    with pytest.raises(ValueError, match="no_such_setting"):
        Settings().replace(no_such_setting=1)


def test_settings_without_from_env_never_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VECTORS_BUCKET", "from-the-environment")
    assert Settings().vectors_bucket == "vector-pipeline"
    assert Settings.from_env().vectors_bucket == "from-the-environment"
    assert Settings.from_env({"AWS_REGION": "eu-west-1"}).aws_region == "eu-west-1"  # boto3's other name
    assert Settings.from_env({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "us-west-2"}).aws_region == "us-west-2"


def test_the_docs_table_is_the_one_the_model_renders() -> None:
    from devtools.settings_table import documented, table

    assert documented() == table(), "docs/configuration.md is stale: run python -m devtools.settings_table"


def test_every_setting_is_a_field_of_the_dagster_resource_described_as_in_the_model() -> None:
    from vector_pipeline.defs.resources import SETTING_KEYS, VectorPipelineResource

    described = {name: field.description for name, field in VectorPipelineResource.model_fields.items()}
    assert {key: described.get(key.lower()) for key in SETTING_KEYS} == \
        {key: Settings.model_fields[name].description for key, name in Settings.env_keys().items() if key in SETTING_KEYS}
    # Only the keys the AWS resources hold (queue, table, TTL, region, credentials) are not fields of their own.
    assert set(Settings.env_keys()) - set(SETTING_KEYS) == {
        "DELTA_QUEUE_NAME", "DYNAMODB_TABLE_NAME", "COMPACTION_LOCK_TTL_SECONDS", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY"}


def test_every_setting_reaches_the_dagster_resource_and_secrets_only_as_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    import dagster as dg
    import pytest

    from vector_pipeline.defs.resources import MissingSecretError, pipeline_resource

    changed = _every_field_changed()
    with pytest.raises(MissingSecretError, match="EnvVar"):  # a secret never falls back to its plain value
        pipeline_resource(changed)
    for key in SECRET_ENV_KEYS:
        monkeypatch.setenv(key, changed.to_env()[key])
    resource = pipeline_resource(changed)
    assert isinstance(resource.s3.aws_secret_access_key, dg.EnvVar)
    for key in SECRET_ENV_KEYS - {"AWS_SECRET_ACCESS_KEY"}:  # that one is the AWS resources' field
        assert isinstance(getattr(resource, key.lower()), dg.EnvVar), key
    with dg.build_resources({"vector_pipeline": resource}) as resolved:  # EnvVars resolved, as in a run
        assert resolved.vector_pipeline.settings() == changed
    assert resource.s3.endpoint_url == "http://127.0.0.1:8002"
    assert resource.dynamodb_lock.endpoint_url == "http://127.0.0.1:8001"
    assert resource.sqs.endpoint_url == changed.aws_endpoint_url
    # The AWS resources are the ones used: the queue, table and TTL come from their fields.
    from vector_pipeline.defs.resources import DynamoDBLockResource, SQSResource, VectorPipelineResource

    moved = VectorPipelineResource(**{
        **{name: getattr(resource, name) for name in VectorPipelineResource.model_fields},
        "sqs": SQSResource(queue_name="other-queue", endpoint_url=resource.sqs.endpoint_url),
        "dynamodb_lock": DynamoDBLockResource(table_name="other-locks", ttl_seconds=77,
                                              endpoint_url=resource.dynamodb_lock.endpoint_url)})
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
    ({"PINECONE_NAMESPACES": "words"}, "PINECONE_NAMESPACES='words': expected collection=namespace"),
    ({"READER_RECALL_SAMPLE_RATE": "2"}, "READER_RECALL_SAMPLE_RATE"),
    ({"READER_FOLLOW_POINTER": "maybe"}, "READER_FOLLOW_POINTER"),
    ({"AWS_READ_TIMEOUT_SECONDS": "5"}, "must exceed COMPACT_WATCH_WAIT_SECONDS"),
])
def test_a_bad_value_is_refused_naming_its_key(environment: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        Settings.from_env(environment)
