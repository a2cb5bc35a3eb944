"""Fixtures shared by the simulator's own tests: a running simulator whose
machines never go silent by chance, and a keep-alive HTTP session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from exporter.simulator import Fleet, FleetSpec, SimulatorServer


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(Fleet(FleetSpec(silent_probability=0.0))) as server:
        yield server


@pytest.fixture
def client() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session
