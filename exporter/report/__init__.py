"""Reports computed from a Prometheus server's history (``nayax-ev-exporter report ...``).

``uptime``: per charger and month, minutes communicating, in outage, unknown and
excluded, and the uptime percentage as 23 CFR 680.116(b) counts it
(docs/uptime-report.md). The modules, in the order the data flows:
``periods`` (months and minutes) and ``charger`` (identity) → ``excluded`` (the
operator's excluded windows) → ``plan`` (which PromQL queries, pure) →
``promapi`` / ``httpconfig`` (the HTTP edge) → ``collect`` (runs the plan,
folds the answers) → ``uptime`` (the minutes and the formula, pure) → ``rows``
→ ``render`` (CSV / JSON); ``progress`` draws the bar, ``command`` is the
command line that ``exporter.cli`` hands ``report ...`` to.
"""
