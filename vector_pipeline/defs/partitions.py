"""One dynamic partition per delta, shared by the ``delta`` asset and the sensors.

Keys are ``<collection>.<delta_id>``: collection names hold no ``..`` and delta ids no
dots, so the key splits unambiguously and passes Dagster's key rules.
"""


import dagster as dg

from vector_pipeline.delta import DeltaRef, parse_delta_key

delta_partitions = dg.DynamicPartitionsDefinition(name="delta")


def partition_key_for(ref: DeltaRef) -> str:
    return ref.partition_key


def ref_for_partition(partition_key: str) -> DeltaRef:
    collection, _, delta_id = partition_key.rpartition(".")
    return parse_delta_key(f"delta/{collection}/{delta_id}/")
