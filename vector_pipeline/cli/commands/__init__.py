"""The command groups, one module each; ``app.py`` registers them in this order (the order of
``vector-pipeline --help``). A module imports only the standard library at the top: the
library (and chromadb) load when a command runs, so ``--help`` stays fast."""

from __future__ import annotations

from . import aws, collections, compact, history, pinecone, produce, query, status, versions

GROUPS = (aws, produce, compact, query, status, collections, versions, history, pinecone)
