"""Reports computed from a Prometheus server's history (``nayax-ev-exporter report ...``).

``uptime``: per charger and month, minutes communicating, in outage, unknown and
excluded, and the uptime percentage as 23 CFR 680.116(b) counts it. The modules,
in the order the data flows: ``periods`` (months and minutes) → ``excluded``
(the operator's excluded windows) → ``plan`` (which PromQL queries, pure) →
``promapi`` / ``httpconfig`` (the HTTP edge) → ``collect`` (runs the plan) →
``uptime`` (the minutes and the formula, pure) → ``render`` (CSV / JSON) →
``command`` (the command line).
"""
