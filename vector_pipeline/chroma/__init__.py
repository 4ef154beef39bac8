"""The only importer of chromadb: the chroma client (``client``: modes, reads, writes; the
directory and its collections in ``directory``, record shapes in ``shapes``, a delta's
description in ``written_delta``), the killable host chroma runs in (``host``: the call
protocol; ``host_lifecycle``, ``remote``, ``host_process``), embedding providers, segments."""
