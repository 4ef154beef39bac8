"""Fast tests of the pure layer (``vector_pipeline/format/`` and the record rules): no server,
no moto, no chroma client, no network; the folder runs in seconds."""
