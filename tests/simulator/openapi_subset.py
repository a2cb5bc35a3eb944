"""A checker for the part of OpenAPI 3.0 the vendor's schemas use (lynx_schemas.json).

Keywords: ``type``, ``format`` (int32, int64, double, date-time), ``nullable``,
``enum``, ``properties``, ``additionalProperties`` (false or a schema), ``$ref`` to
``#/components/schemas/...`` (its siblings ``type``/``format``/``nullable`` apply
too: the vendor's document writes ``MachineTypeID`` as a nullable int32 with a ``$ref``
to its enum). Annotations (``description``, ``readOnly``, ``x-...``) are ignored;
any other keyword fails loudly, so a schema that grows one is never half-checked.
OpenAPI's ``nullable`` is not JSON Schema, hence no ``jsonschema`` here.

One reading is looser than RFC 3339, on the vendor's own evidence: a ``date-time``
may carry no zone (every recorded vendor answer has none).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

FIXTURE: Final = Path(__file__).with_name("lynx_schemas.json")
_REF_PREFIX: Final = "#/components/schemas/"
_ANNOTATIONS: Final = frozenset({"description", "readOnly", "example"})
_KEYWORDS: Final = frozenset(
    {"type", "format", "nullable", "enum", "properties", "additionalProperties", "$ref"}
)
_INT_BOUNDS: Final = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
# ISO 8601 as Lynx writes it: seconds, optional fraction, optional zone.
_DATE_TIME: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?(Z|[+-]\d{2}:\d{2})?$"
)


def load_schemas() -> dict[str, Any]:
    """The vendor's schemas by name, from the committed fixture."""
    document = json.loads(FIXTURE.read_text(encoding="utf-8"))
    schemas: dict[str, Any] = document["schemas"]
    return schemas


def problems(
    value: object,
    schema: Mapping[str, Any],
    schemas: Mapping[str, Any],
    where: str = "$",
    departures: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[str]:
    """Every way ``value`` breaks ``schema``, each naming its JSON path; empty when it
    conforms. ``departures`` replaces the schema at a path (a known, documented
    departure from the vendor's document). Pure."""
    departures = departures or {}
    schema = departures.get(where, schema)
    unknown = set(schema) - _KEYWORDS - _ANNOTATIONS - {k for k in schema if k.startswith("x-")}
    if unknown:
        raise ValueError(f"{where}: keywords this checker does not know: {sorted(unknown)}")
    if value is None:
        nullable = schema.get("nullable") is True
        return [] if nullable else [f"{where}: null, but the document does not allow it"]
    found = _type_problems(value, schema, where)
    if found:
        return found
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: {value!r} is not one of the document's enum values")
    if "$ref" in schema:
        target = schemas[str(schema["$ref"]).removeprefix(_REF_PREFIX)]
        found += problems(value, target, schemas, where, departures)
    if isinstance(value, dict):
        found += _object_problems(value, schema, schemas, where, departures)
    return found


def _type_problems(value: object, schema: Mapping[str, Any], where: str) -> list[str]:
    kind, fmt = schema.get("type"), schema.get("format")
    if kind is None:
        return []
    ok = {
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
    }[kind]
    if not ok:
        return [f"{where}: {value!r} is not of type {kind}" + (f" ({fmt})" if fmt else "")]
    if fmt in _INT_BOUNDS and isinstance(value, int):
        low, high = _INT_BOUNDS[fmt]
        if not low <= value <= high:
            return [f"{where}: {value} is out of the {fmt} range"]
    if fmt == "double" and isinstance(value, float) and not math.isfinite(value):
        return [f"{where}: {value} is not a finite double"]
    if fmt == "date-time" and isinstance(value, str) and not _DATE_TIME.match(value):
        return [f"{where}: {value!r} is not an ISO 8601 date-time"]
    return []


def _object_problems(
    value: dict[str, object],
    schema: Mapping[str, Any],
    schemas: Mapping[str, Any],
    where: str,
    departures: Mapping[str, Mapping[str, Any]],
) -> list[str]:
    found: list[str] = []
    properties: Mapping[str, Any] = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        path = f"{where}.{key}"
        if key in properties:
            found += problems(item, properties[key], schemas, path, departures)
        elif extra is False:
            found.append(f"{path}: a field the document does not have")
        elif isinstance(extra, Mapping):
            found += problems(item, extra, schemas, path, departures)
    return found
