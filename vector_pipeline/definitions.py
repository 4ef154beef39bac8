"""The Dagster code location: one ``defs`` assembled from ``vector_pipeline.defs``."""

from vector_pipeline.defs import build_definitions

defs = build_definitions()
