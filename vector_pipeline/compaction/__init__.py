"""Compaction and maintenance: intake -> merge -> write -> audit -> publish -> archive,
folds, rebuilds, rollback and GC, each under the collection's lock."""
