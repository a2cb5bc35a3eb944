"""Copy the vendor's schemas the simulator must answer with into a test fixture.

    python tests/simulator/extract_lynx_schemas.py PATH/TO/lynx-openapi.yaml

reads the vendor's OpenAPI document (a copy of the upstream file named in
``UPSTREAM``; the script refuses any other) and writes ``lynx_schemas.json`` beside
this script: ``MachineInfo``, ``MachineStatusInfo`` and ``EvMeterDashBoard`` from
``components.schemas``, with every schema they reference (``MachineTypeIDEnum``,
``LanguageIdEnum``, the two dashboard aggregations), copied unchanged. The document
lives outside the repository; the fixture lets the tests run on a clean clone.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import yaml

UPSTREAM: Final = {
    "repository": "writechoiceorg/nayax-mintlify",
    "path": "openapi/lynx.yaml",
    "commit": "b440af82e2c9529f7f99365f5b63e7f77c34a26d",
    "sha256": "9044fb66dffd6c0e33e130edd90a1ad8f71b09394249cc81e4420975427536db",
}
ROOTS: Final = ("MachineInfo", "MachineStatusInfo", "EvMeterDashBoard")
FIXTURE: Final = Path(__file__).with_name("lynx_schemas.json")
REF_PREFIX: Final = "#/components/schemas/"


def _refs(node: object) -> Iterator[str]:
    """The schema names ``node`` references, at any depth. Pure."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(REF_PREFIX):
                yield value.removeprefix(REF_PREFIX)
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def closure(schemas: dict[str, object], roots: tuple[str, ...]) -> dict[str, object]:
    """``roots`` and every schema they reference, transitively, by name. Pure."""
    found: dict[str, object] = {}
    todo = list(roots)
    while todo:
        name = todo.pop(0)
        if name not in found:
            found[name] = schemas[name]
            todo.extend(_refs(schemas[name]))
    return found


def fixture(document_bytes: bytes) -> dict[str, object]:
    document = yaml.safe_load(document_bytes)
    schemas = closure(document["components"]["schemas"], ROOTS)
    return {
        "source": dict(UPSTREAM),
        "generated_by": "tests/simulator/extract_lynx_schemas.py",
        "roots": list(ROOTS),
        "schemas": schemas,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    raw = Path(argv[0]).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != UPSTREAM["sha256"]:
        print(f"sha256 {digest} is not the upstream copy's; update UPSTREAM", file=sys.stderr)
        return 1
    text = json.dumps(fixture(raw), indent=1, ensure_ascii=False) + "\n"
    FIXTURE.write_text(text, encoding="utf-8")
    print(f"wrote {FIXTURE} ({len(text)} characters)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
