"""The config loader builds its tree from the parser's events, without PyYAML's
node graph: what it builds must be what PyYAML's own safe loader constructs,
for every document that loader reads, and the memory a large config costs
must stay a small multiple of the tree itself."""

from __future__ import annotations

import datetime
import math
import tracemalloc
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter.config import ConfigError
from exporter.config.yamlload import SAFE_LOADER, load_yaml

Loader = type[yaml.SafeLoader] | type[yaml.CSafeLoader]
LOADERS: list[Loader] = [yaml.SafeLoader, SAFE_LOADER]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# What PyYAML's resolver and constructors make of text: each read both ways.
DOCUMENTS = [
    "",
    "---\n",
    "# only a comment\n",
    "a: 1\n",
    "[1, -2, +3, 0o17, 0x1F, 1_000, 0b101, 012, 1:20, 190:20:30]",
    "[1.5, -.5, 1e3, 6.8523015e+5, 1_0.5, .inf, -.Inf, 190:20:30.15]",
    "[yes, No, on, OFF, true, False, ~, null, Null, '', \"\"]",
    "[2001-12-14, 2001-12-14t21:59:43.10-05:00, 2001-12-14 21:59:43.10]",
    "{? [1, 2]: 3}",  # an unhashable key: refused
    "a: !!str 1\nb: !!int '7'\nc: !!float 2\nd: !!bool yes\ne: !!null ''\n",
    "a: !!binary aGVsbG8=\nb: !!timestamp 2001-12-14\n",
    "s: |\n  two\n  lines\nf: >\n  folded\n  text\nq: 'it''s'\nd: \"tab\\tnew\\nline\"\n",
    "=: 1\n",
    "'<<': 1\n",  # a quoted << is a plain key
    "base: &b {x: 1, y: 2}\nm: {<<: *b, x: 3}\nn: {<<: [*b], z: 4}\n",
    "base: &b {x: 1}\nother: &o {q: 2}\nm:\n  <<: [*b, *o]\n  w: 5\n",
    "a: &a [1, 2]\nb: *a\nc: {k: *a}\n",
    "a: &a {k: v}\nb: [*a, *a]\n",
    "list:\n- id: 1\n  name: x\n- id: 2\n  name: 'y'\n",
    "!!map {a: 1}",
    "!!seq [1]",
    "a: !!set {x, y}\n",  # a set: not a config's shape, refused here
    "a: !!omap [{x: 1}]\n",
    "a: !custom 1\n",
    "a: !!map x\n",  # a collection's tag on a scalar
    "a: 1\n---\nb: 2\n",  # two documents
    "a: =\n",  # the value tag: PyYAML's safe loader cannot construct it
    "a: 99999999999999999999999999999999999\n",
    "a: 2024-13-45\n",
    "&x a: 1\nb: *x\n",  # an anchored key
    "a: 1.0e+400\nb: -1.0e+400\n",
]


def read_by_pyyaml(text: str, loader: Loader) -> tuple[str, Any]:
    try:
        return "value", yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except (yaml.YAMLError, ValueError, OverflowError, RecursionError) as exc:
        return "error", type(exc).__name__


def read_by_us(text: str, loader: Loader) -> tuple[str, Any]:
    try:
        return "value", load_yaml(text, loader=loader)
    except ConfigError as exc:
        return "error", exc.errors


def same(ours: Any, theirs: Any) -> bool:
    """Equal, with NaN equal to itself and types compared too (1 is not 1.0 or True)."""
    if type(ours) is not type(theirs):
        return False
    if isinstance(ours, float) and math.isnan(ours):
        return math.isnan(theirs)
    if isinstance(ours, dict):
        return list(ours) == list(theirs) and all(same(ours[k], theirs[k]) for k in ours)
    if isinstance(ours, list):
        return len(ours) == len(theirs) and all(
            same(a, b) for a, b in zip(ours, theirs, strict=True)
        )
    return bool(ours == theirs)


@pytest.mark.parametrize("loader", LOADERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("text", DOCUMENTS)
def test_the_tree_is_what_pyyaml_constructs(text: str, loader: Loader) -> None:
    """Values, their types and key order as PyYAML's safe loader reads them. What
    it refuses is refused; what it would build but a config cannot hold (a set,
    pairs, an unhashable key) is refused here at the YAML level, naming a line."""
    kind, theirs = read_by_pyyaml(text, loader)
    ours_kind, ours = read_by_us(text, loader)
    if kind == "value" and ours_kind == "value":
        assert same(ours, theirs), (ours, theirs)
        return
    assert ours_kind == "error", (text, ours)
    assert all(e.startswith("<yaml>") for e in ours), ours
    built_by_pyyaml_only = ("!!set", "!!omap", "? [1, 2]")
    assert kind == "error" or any(marker in text for marker in built_by_pyyaml_only), text


def test_merge_keys_follow_the_yaml_spec() -> None:
    """Explicit keys win over merged ones, and of the mappings merged the first
    listed wins, whatever the keys' length (PyYAML 6.0 lets a later mapping win
    for keys longer than one character, an accident of string interning)."""
    text = (
        "a: &a {interval: 1m, x: 1}\nb: &b {interval: 2m, x: 2, z: 2}\n"
        "m: {<<: [*a, *b], x: 9}\nn: {<<: *b, <<: *a}\n"
    )
    tree = load_yaml(text)
    assert isinstance(tree, dict)
    assert tree["m"] == {"interval": "1m", "x": 9, "z": 2}
    assert tree["n"] == {"interval": "2m", "x": 2, "z": 2}


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.dates(),
    st.datetimes(timezones=st.just(datetime.UTC)),
)
trees = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=10), children, max_size=5),
    ),
    max_leaves=40,
)


@SETTINGS
@given(tree=trees, flow=st.booleans())
def test_any_dumped_tree_reads_back_as_pyyaml_reads_it(tree: Any, flow: bool) -> None:
    text = yaml.safe_dump(tree, default_flow_style=flow, allow_unicode=True)
    for loader in LOADERS:
        kind, theirs = read_by_pyyaml(text, loader)
        assert kind == "value"
        ours_kind, ours = read_by_us(text, loader)
        assert ours_kind == "value" and same(ours, theirs), (text, ours, theirs)


def test_a_large_config_costs_little_beyond_its_tree() -> None:
    """A 10,000-machine config: PyYAML's node graph peaks at several times the
    tree it builds; built from events, the peak stays within twice the tree."""
    text = "actors:\n" + "".join(
        f"- id: {2000000000 + a}\n  name: Operator {a}\n  machines:\n"
        + "".join(f"  - {{id: {900000000 + a * 100 + m}, name: Charger {m}}}\n" for m in range(100))
        for a in range(100)
    )

    def measured(load: Any) -> tuple[int, int]:
        load(text)  # once first: the modules' own caches are not the document's
        tracemalloc.start()
        try:
            tree = load(text)
            held, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert isinstance(tree, dict) and len(tree["actors"]) == 100
        return held, peak

    tree_bytes, peak = measured(load_yaml)
    _, pyyaml_peak = measured(lambda t: yaml.load(t, Loader=SAFE_LOADER))  # noqa: S506
    assert peak < 2 * tree_bytes, (peak, tree_bytes)
    assert pyyaml_peak > 2 * tree_bytes, (pyyaml_peak, tree_bytes)  # the bound means something


def test_what_the_node_graph_was_walked_for_is_checked_on_the_way() -> None:
    """A tree that would contain itself, nesting past the limit (skipped, not
    built, its anchors still known), and undefined aliases, each named."""
    with pytest.raises(ConfigError) as caught:
        load_yaml("a: &a [1, *a]\n")
    assert caught.value.errors == ("a[1]: an alias contains itself",)
    deep = "[" * 70 + "&x 1" + "]" * 70
    with pytest.raises(ConfigError) as caught:
        load_yaml(f"a: {deep}\nb: *x\n")
    assert caught.value.errors == (f"a{'[0]' * 64}: nested deeper than 64 levels",)
    assert load_yaml("[" * 64 + "1" + "]" * 64) == load_yaml(
        "[" * 64 + "1" + "]" * 64, loader=yaml.SafeLoader
    )
    with pytest.raises(ConfigError) as caught:
        load_yaml(f"a: {deep}\nb: *y\n")
    assert caught.value.errors == ("<yaml> line 2, column 4: found undefined alias",)
