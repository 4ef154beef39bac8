"""The only importer of chromadb: the chroma client, embedding providers, segments (one
chroma persist directory each)."""
