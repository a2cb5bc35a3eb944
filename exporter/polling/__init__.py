"""Polling: the schedule (``schedule``), the poller that runs it (``poller``), the
snapshot store its outcomes land in (``store``) and the request budget (``budget``)."""
