"""Partitions = collections: one dynamic partition per collection, for every asset, check
and job that touches a collection (``delta``, the snapshot assets, the Pinecone assets).
The sensors add a collection's partition when its first delta appears — collections are
data, never code — so the partition count grows with collections, never with deltas.
"""

import warnings

import dagster as dg

collection_partitions = dg.DynamicPartitionsDefinition(name="collection")

# The per-delta layout's partitions (``<collection>.<delta_id>``), gone since; the upgrade
# job (``jobs.upgrade_from_per_delta_layout``) removes them from an instance that has them.
LEGACY_DELTA_PARTITIONS = "delta"

# Checks partitioned like their asset (AssetCheckSpec(partitions_def=...)) are a preview in
# Dagster 1.13: used knowingly (each collection's result is the point), warned about once here.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning)
