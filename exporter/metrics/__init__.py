"""Exposition: which series a target publishes (``families``), the pre-rendered
``/metrics`` body (``exposition``), the exporter's own counters (``stats``) and
collectors (``collector``), and rendering that data cannot kill (``render_guard``)."""
