"""The table: the pointer (``latest.json``) as the one commit path, versions and their
manifests, the collection catalog, read consistency."""
