"""Readers: one whole version (segments fetched once, masks applied), plus on request the
deltas not yet compacted."""
