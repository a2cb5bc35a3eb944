"""The test tiers: which tests are unit tests, found from what they use.

A test belongs to the *unit* tier (``scripts/test.sh --fast``) unless it starts a
child process (``process``), runs a real server on a socket — the simulator over
HTTP counts (``server``) — or waits on the real clock (``realtime``). Those
markers are assigned here from what the test, its fixtures, and every function
and class of ``tests/`` they reach, reference (read from their bytecode), so a
new test lands in the right tier by itself; a test can also carry one of the
markers explicitly. The ``e2e``, ``soak`` and ``container`` markers also keep a
test out of the unit tier.

What the bytecode cannot show (a child process started through a parameter, a
production function that waits) the guard shows: a unit test that starts a child
process or listens on a socket fails, naming the marker it needs.
"""

from __future__ import annotations

import dis
import multiprocessing
import os
import socket
import socketserver
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from exporter.simulator import SimulatorServer

REAL_MARKERS = ("process", "server", "realtime")
NOT_UNIT = (*REAL_MARKERS, "e2e", "soak", "container")

# What, referenced, puts a test in a tier (besides subclasses of socketserver.BaseServer).
_PROCESS: tuple[object, ...] = (
    subprocess.Popen,
    subprocess.run,
    subprocess.call,
    subprocess.check_call,
    subprocess.check_output,
    subprocess.getoutput,
    subprocess.getstatusoutput,
    os.system,
    os.fork,
    os.posix_spawn,
    multiprocessing.Process,
)
_REALTIME: tuple[object, ...] = (time.sleep,)
_CODE_DIRS = ("tests",)  # what is followed: functions and classes defined in tests/


def real_part(obj: object) -> str | None:
    """The tier marker that using ``obj`` calls for, if any. Pure."""
    if any(obj is part for part in _PROCESS):
        return "process"
    if any(obj is part for part in _REALTIME):
        return "realtime"
    if obj is SimulatorServer or obj is socket.create_server:
        return "server"
    if isinstance(obj, type) and issubclass(obj, socketserver.BaseServer):
        return "server"
    if getattr(obj, "__name__", None) == "require_tool" and _ours(obj):
        return "process"  # an external tool: promtool, chromium, buildah, ...
    return None


def _ours(obj: object) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module.split(".")[0] in _CODE_DIRS


def _codes(obj: object) -> Iterator[tuple[types.CodeType, dict[str, Any]]]:
    """The code objects of a function, or of a class's methods and properties."""
    if isinstance(obj, staticmethod | classmethod):
        obj = obj.__func__
    if isinstance(obj, types.FunctionType):
        yield obj.__code__, obj.__globals__
        # A decorated test (hypothesis's @given, functools.wraps): the test itself too.
        inner = getattr(getattr(obj, "hypothesis", None), "inner_test", None)
        for wrapped in (inner, getattr(obj, "__wrapped__", None)):
            if wrapped is not None:
                yield from _codes(wrapped)
    elif isinstance(obj, property):
        for accessor in (obj.fget, obj.fset):
            if accessor is not None:
                yield from _codes(accessor)
    elif isinstance(obj, type):
        for member in vars(obj).values():
            yield from _codes(member)


def _references(code: types.CodeType, namespace: dict[str, Any]) -> Iterator[object]:
    """Every global, module attribute and imported name ``code`` (and the code
    nested in it) refers to, resolved."""
    current: object = None
    for instruction in dis.get_instructions(code):
        name = instruction.argval
        if instruction.opname == "LOAD_GLOBAL":
            current = namespace.get(name, getattr(namespace.get("__builtins__"), name, None))
        elif instruction.opname == "IMPORT_NAME":
            current = sys.modules.get(name)
        elif instruction.opname in ("LOAD_ATTR", "LOAD_METHOD", "IMPORT_FROM") and isinstance(
            current, types.ModuleType | type
        ):
            current = getattr(current, name, None)
        else:
            current = None
            continue
        if current is not None:
            yield current
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _references(constant, namespace)


class Classifier:
    """The tier markers each function calls for, remembered across tests."""

    def __init__(self) -> None:
        self._found: dict[int, frozenset[str]] = {}

    def markers(self, roots: list[object]) -> frozenset[str]:
        found: set[str] = set()
        for root in roots:
            found |= self._of(root, set())
        return frozenset(found)

    def _of(self, obj: object, visiting: set[int]) -> frozenset[str]:
        key = id(obj)
        if key in self._found:
            return self._found[key]
        if key in visiting:
            return frozenset()  # a cycle: what it finds, the outer call does
        visiting.add(key)
        found: set[str] = set()
        for code, namespace in _codes(obj):
            for referenced in _references(code, namespace):
                part = real_part(referenced)
                if part is not None:
                    found.add(part)
                elif _ours(referenced) and not isinstance(referenced, types.ModuleType):
                    found |= self._of(referenced, visiting)
        visiting.discard(key)
        self._found[key] = frozenset(found)
        return self._found[key]


def fixture_functions(item: pytest.Item) -> list[object]:
    """The functions of the fixtures ``item`` uses (the ones that apply to it)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    return [defs[-1].func for defs in info.name2fixturedefs.values() if defs]


def classify(items: list[pytest.Item]) -> None:
    """Mark every test with the tier markers what it uses calls for, and ``unit``
    when there are none."""
    classifier = Classifier()
    for item in items:
        function = getattr(item, "function", None)
        roots = [function, *fixture_functions(item)] if function is not None else []
        for marker in sorted(classifier.markers(roots)):
            item.add_marker(marker)
        if not any(item.get_closest_marker(m) for m in NOT_UNIT):
            item.add_marker("unit")


# --- the guard ---------------------------------------------------------------------

_unit_test: list[str] = []  # the node id of the unit test running now, if any


def _guarded(what: str, marker: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def guard(*args: Any, **kwargs: Any) -> Any:
        if _unit_test:
            raise RuntimeError(
                f"{_unit_test[0]} is in the unit tier but {what}: "
                f"mark it @pytest.mark.{marker} (see tests/tiers.py)"
            )
        return original(*args, **kwargs)

    return guard


def install_guard() -> None:
    """Make starting a child process or listening on a network socket fail in a unit test."""
    popen = subprocess.Popen
    popen._execute_child = _guarded(  # type: ignore[attr-defined]
        "starts a child process",
        "process",
        popen._execute_child,  # type: ignore[attr-defined]
    )
    listen = socket.socket.listen
    guarded_listen = _guarded("listens on a network socket", "server", listen)

    def listen_unless_local(sock: socket.socket, *args: Any) -> None:
        # A Unix socket (a special file to refuse) is not a server anyone reaches.
        (listen if sock.family == socket.AF_UNIX else guarded_listen)(sock, *args)

    socket.socket.listen = listen_unless_local  # type: ignore[method-assign,assignment]


@contextmanager
def unit_test_running(item: pytest.Item) -> Iterator[None]:
    if item.get_closest_marker("unit") is None:
        yield
        return
    _unit_test.append(item.nodeid)
    try:
        yield
    finally:
        _unit_test.clear()
