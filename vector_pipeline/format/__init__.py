"""The pure layer: manifest and pointer types, keys, delta packs, merge, merge state.

No I/O, no boto3, no chromadb: everything here is tested without a server and imported by
every other layer."""
