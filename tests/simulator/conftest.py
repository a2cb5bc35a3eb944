"""Fixtures shared by the simulator's own tests: a running simulator whose
machines never go silent by chance, and a keep-alive HTTP session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from exporter.simulator import Fleet, FleetSpec, SimulatorServer


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    """Lenient: these tests send raw requests that exercise the simulator's own
    parameter handling (defaulted windows, TimePeriod echoed beside dates), which
    the vendor's rule would cut short with a 400; tests/test_vendor_errors.py
    covers the strict mode every exporter-facing test runs against."""
    with SimulatorServer(Fleet(FleetSpec(silent_probability=0.0)), strict=False) as server:
        yield server


@pytest.fixture
def client() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session
