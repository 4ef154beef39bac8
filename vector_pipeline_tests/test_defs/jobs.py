"""What the writer-job tests share: produce a delta, run a job in process (the compaction job
for one collection partition), read its checks, corrupt a delta's pack."""

import io
import tarfile

import dagster as dg
import numpy as np

from vector_pipeline import produce_embedding_delta
from vector_pipeline.config import Settings
from vector_pipeline.defs.jobs import compaction_run_config
from vector_pipeline.io.aws import client

from vector_pipeline_tests.helpers import vectors


def run_job(defs: dg.Definitions, instance: dg.DagsterInstance, job: str, **kwargs: object) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False, **kwargs)


def compact(defs: dg.Definitions, instance: dg.DagsterInstance, collection: str = "words",
            **candidate_config: object) -> dg.ExecuteInProcessResult:
    """The compaction job for one collection partition (rebuild or fold by config)."""
    instance.add_dynamic_partitions("collection", [collection])
    return run_job(defs, instance, "compaction", partition_key=collection,
                   run_config=compaction_run_config(**candidate_config))


def produce(settings: Settings, rng: np.random.Generator, ids: list[str], **extra: object) -> dict:
    return produce_embedding_delta(ids, vectors(rng, len(ids)), documents=[f"doc {i}" for i in ids],
                                   metadatas=[{"n": n} for n in range(len(ids))], settings=settings, **extra)


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def corrupt(settings: Settings, produced: dict) -> None:
    """Replace a file of the delta's pack: its manifest still lists the real file's sha256."""
    s3 = client("s3", settings)
    pack_key = produced["delta_key"] + "delta.tar"
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=settings.vectors_bucket, Key=pack_key)["Body"].read())) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}
    members["chroma.sqlite3"] = b"not sqlite"
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    s3.put_object(Bucket=settings.vectors_bucket, Key=pack_key, Body=packed.getvalue())
