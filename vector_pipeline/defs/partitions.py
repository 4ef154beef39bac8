"""Dynamic partitions: one per delta (the ``delta`` asset) and one per collection (the
snapshot assets and the compaction job), added by the sensors as deltas and collections
appear — collections are data, never code.

Delta keys are ``<collection>.<delta_id>``: collection names hold no ``..`` and delta ids no
dots, so the key splits unambiguously and passes Dagster's key rules.
"""


import dagster as dg

from vector_pipeline.format.keys import DeltaRef, parse_delta_key

delta_partitions = dg.DynamicPartitionsDefinition(name="delta")
collection_partitions = dg.DynamicPartitionsDefinition(name="collection")


def partition_key_for(ref: DeltaRef) -> str:
    return ref.partition_key


def ref_for_partition(partition_key: str) -> DeltaRef:
    collection, _, delta_id = partition_key.rpartition(".")
    return parse_delta_key(f"delta/{collection}/{delta_id}/")
