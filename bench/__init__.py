"""Benchmark harness for the exporter at fleet scale (``python -m bench.run``)."""
