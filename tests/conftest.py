"""Fixtures shared by the suite. Real sockets on loopback; no mocks at the edges."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from exporter.simulator import Fleet, FleetSpec, SimulatorServer
from tests import tiers

IN_CI = bool(os.environ.get("CI"))


def require_tool(name: str) -> str:
    """The path of an external tool. In CI a missing tool fails the test: CI must
    never skip the Prometheus, container or browser tests; locally it skips."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed; .ci/run must install it")
        pytest.skip(f"{name} is not installed")
    return path


def pytest_configure(config: pytest.Config) -> None:
    tiers.install_guard()


@pytest.hookimpl(tryfirst=True)  # before -m selects by the markers it adds
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tiers.classify(items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    with tiers.unit_test_running(item):
        return (yield)


@pytest.fixture
def fleet() -> Fleet:
    return Fleet(FleetSpec(seed=7, actors=2, machines_per_actor=4))


@pytest.fixture
def simulator(fleet: Fleet) -> Iterator[SimulatorServer]:
    server = SimulatorServer(fleet, tokens="sim-token")
    server.start()
    try:
        yield server
    finally:
        server.stop()
