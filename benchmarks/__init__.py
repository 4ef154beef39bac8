"""Benchmarks of vector_pipeline against the original design's algorithm, side by side.

``python -m benchmarks [--quick]`` (or ``./dev bench``) starts its own moto server, runs every
figure for ours and for ``baseline.py`` in the same process run, and writes
``benchmarks/results/<stamp>/results.json`` and ``report.md`` with plots.
"""
