"""The test tiers (tests/tiers.py): what a test uses decides its tier, and a unit
test that starts a child process or listens on a socket fails."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from exporter.simulator import SimulatorServer
from tests import tiers


def _starts_a_process() -> None:
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def _waits() -> None:
    time.sleep(0.01)


def _runs_the_simulator() -> None:
    SimulatorServer  # noqa: B018 - referenced is enough


def _through_a_helper() -> None:
    _starts_a_process()


def _pure() -> int:
    return sum(range(3))


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        (_starts_a_process, {"process"}),
        (_waits, {"realtime"}),
        (_runs_the_simulator, {"server"}),
        (_through_a_helper, {"process"}),  # followed through tests/ functions
        (_pure, set()),
    ],
)
def test_a_function_is_classified_by_what_it_references(
    function: object, expected: set[str]
) -> None:
    assert tiers.Classifier().markers([function]) == frozenset(expected)


def test_this_file_is_in_the_unit_tier(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("unit") is not None


class _UnitItem:
    """As much of a pytest item as the guard reads: one in the unit tier."""

    nodeid = "tests/test_example.py::test_example"

    def get_closest_marker(self, name: str) -> object:
        return object() if name == "unit" else None


def test_a_unit_test_that_starts_a_process_or_listens_fails() -> None:
    # (This test itself references Popen, so it is in the process tier: the guard
    # is armed here by hand, as conftest arms it around every unit test.)
    with tiers.unit_test_running(_UnitItem()):  # type: ignore[arg-type]
        with pytest.raises(RuntimeError, match=r"test_example is in the unit tier but starts a"):
            subprocess.Popen([sys.executable, "-c", "pass"])
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            with pytest.raises(RuntimeError, match=r"listens on a network socket.*\.server"):
                sock.listen()
    # Disarmed again: the same calls work.
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
