"""The Lynx API client: one GET with retries and pacing (``client``), the bounded HTTP
exchange under it (``transport``), its typed errors (``errors``), scoped tokens
(``tokens``), the rate limit and 429 holds (``ratelimit``), and the one boundary
every value the API sends crosses (``upstream``)."""
