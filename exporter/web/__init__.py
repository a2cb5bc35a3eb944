"""The HTTP edge: connections, limits and framing (``server``), basic auth
(``basicauth``), what each path answers (``routes``), and the landing page
(``landing``, ``fleet_summary``)."""
