"""YAML text → plain Python tree, safe against hostile files.

Both config files go through :func:`load_yaml`. On top of a safe loader's
parser (libyaml's when PyYAML was built with it, else PyYAML's; both behave the
same here) it:

- counts the document's nodes from the parser's events, one at a time,
  before any node is built: more than :data:`MAX_NODES` are refused, so a
  file of ``[1,1,1,...]`` within the size cap (16 MiB: 8 million nodes, some
  3 GB once built) cannot grow the process either;
- builds the tree straight from the events (:class:`_TreeBuilder`), never
  PyYAML's node graph, which cost 350 bytes a node on every reload (10.6 MiB
  at 10,000 machines); scalars go through the loader's own resolver and
  constructors, so every value reads as PyYAML's safe loader reads it;
- lets aliases (and ``<<`` merges of them) add at most :data:`ALIAS_BUDGET`
  nodes to the document, counted as they are met, so a 577-byte "billion
  laughs" file is refused in microseconds instead of growing the process
  without bound; nesting is limited to :data:`MAX_DEPTH`; an alias inside
  what it names is refused;
- refuses duplicate keys (YAML says keys are unique; PyYAML keeps the last one
  silently), naming the key path and both lines;
- reports syntax errors with line and column and a fixed description, never
  PyYAML's problem text or source snippet, which can quote a value (an unquoted
  token starting with ``!`` reads as a tag and would be printed).
"""

from __future__ import annotations

from collections.abc import Hashable
from types import GeneratorType
from typing import cast

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.error import Mark
from yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from exporter.config.validate import ConfigError, join

# Nodes that aliases may add beyond the document's own (a shared list of a few
# thousand machines fits many times; a bomb's 10^9 does not).
ALIAS_BUDGET = 200_000
MAX_DEPTH = 64  # a config file needs 6
# Nodes in the document as written (each costs a few hundred bytes once built):
# a config listing 10,000 machines by id and name has about 50,000.
MAX_NODES = 500_000
_NODE_EVENTS = (ScalarEvent, SequenceStartEvent, MappingStartEvent, AliasEvent)

SAFE_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = getattr(
    yaml, "CSafeLoader", yaml.SafeLoader
)
_MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"
_STR_TAG = "tag:yaml.org,2002:str"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"

# Problem texts known to carry no source text (PyYAML and libyaml spellings).
_SAFE_PROBLEMS = frozenset(
    {
        "mapping values are not allowed here",
        "mapping values are not allowed in this context",
        "did not find expected key",
        "did not find expected node content",
        "did not find expected ',' or ']'",
        "did not find expected ',' or '}'",
        "did not find expected '-' indicator",
        "could not find expected ':'",
        "found character that cannot start any token",
        "found unexpected end of stream",
        "found undefined alias",
        "found duplicate anchor; first occurrence",
        "expected <document start>, but found '<block mapping start>'",
    }
)
_GENERIC_PROBLEMS: tuple[tuple[type[yaml.YAMLError], str], ...] = (
    (yaml.constructor.ConstructorError, "unsupported tag or value (quote values starting with !)"),
    (yaml.composer.ComposerError, "undefined or misplaced alias"),
    (yaml.scanner.ScannerError, "invalid YAML syntax"),
    (yaml.parser.ParserError, "invalid YAML structure"),
    (yaml.reader.ReaderError, "a character YAML does not allow"),
)


def load_yaml(
    text: str, *, loader: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = SAFE_LOADER
) -> object:
    """Parse one YAML document. Raises :class:`ConfigError` naming lines, never values."""
    try:
        nodes = _count_nodes(text, loader)
        parser = loader(text)  # PyYAML's reader checks the characters here already
    except yaml.YAMLError as exc:
        raise ConfigError([_describe(exc, text)]) from None
    if nodes > MAX_NODES:
        raise ConfigError([f"<yaml>: more than {MAX_NODES} nodes (values, lists, mappings)"])
    builder = _TreeBuilder(parser)
    try:
        document = builder.document()
        if not builder.errors:
            return document
    except _OverBudget:
        if not builder.errors:
            builder.errors.append(
                f"<yaml>: aliases expand the document beyond {ALIAS_BUDGET} extra nodes; "
                "refused (write the repeated parts out, or share less)"
            )
    except yaml.YAMLError as exc:
        raise ConfigError([_describe(exc, text)]) from None
    except (ValueError, RecursionError, OverflowError) as exc:
        # PyYAML lets these escape: an int over 4300 digits, a date like 2024-13-45.
        raise ConfigError([f"<yaml>: unsupported value ({type(exc).__name__})"]) from None
    finally:
        parser.dispose()
    # Raised here, not in the build: no frame of the traceback holds the tree.
    raise ConfigError(builder.errors)


def _count_nodes(text: str, loader: type[yaml.SafeLoader] | type[yaml.CSafeLoader]) -> int:
    """The document's nodes as written (aliases count one), up to MAX_NODES + 1:
    events are parsed and dropped one by one, so memory stays flat."""
    parser = loader(text)
    count = 0
    try:
        while count <= MAX_NODES and parser.check_event():
            if isinstance(parser.get_event(), _NODE_EVENTS):
                count += 1
    finally:
        parser.dispose()
    return count


def _describe(exc: yaml.YAMLError, text: str) -> str:
    """Line, column and a fixed description of a YAML error. Pure."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        where = f" line {mark.line + 1}, column {mark.column + 1}"
    elif isinstance(exc, yaml.reader.ReaderError):
        line_start = text.rfind("\n", 0, exc.position) + 1
        line = text.count("\n", 0, exc.position) + 1
        where = f" line {line}, column {exc.position - line_start + 1}"
    else:
        where = ""
    problem = getattr(exc, "problem", None)
    if not (isinstance(problem, str) and problem in _SAFE_PROBLEMS):
        problem = next((p for kind, p in _GENERIC_PROBLEMS if isinstance(exc, kind)), None)
    return f"<yaml>{where}: {problem or 'malformed YAML'}"


class _Events:
    """The parser's events, typed: the stubs allow None where a parse never gives it."""

    def __init__(self, parser: yaml.SafeLoader | yaml.CSafeLoader) -> None:
        self.parser = parser

    def peek(self) -> Event:
        event = self.parser.peek_event()
        assert event is not None  # the stream ends with its end event, read last
        return event

    def take(self) -> Event:
        event = self.parser.get_event()
        assert event is not None
        return event

    def at(self, kind: type[Event]) -> bool:
        return bool(self.parser.check_event(kind))

    def resolve(self, kind: type[Node], value: str | None, implicit: object) -> str:
        """The tag the loader's resolver gives an untagged node."""
        tag: str = self.parser.resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        return tag


def _mark(event: Event) -> Mark | None:
    """Where an event starts (libyaml's marks are its own class of the same shape)."""
    return cast("Mark | None", event.start_mark)


class _OverBudget(Exception):
    """Aliases added more than ALIAS_BUDGET nodes: the build stops at once."""


class _TreeBuilder:
    """Builds the plain tree straight from the parser's events, one at a time.

    PyYAML would first compose a graph of nodes with their marks (about 350
    bytes a node: 10.6 MiB for the 30,534 nodes of a 10,000-machine config,
    held beside the running state on every reload) and then construct the tree
    from it; here each event is turned into its value as it comes, with the
    checks the graph was walked for:

    - a duplicate key is an error naming its key path and both lines;
    - nesting beyond MAX_DEPTH is an error (the subtree is skipped, not built);
    - an alias inside what it names is an error (no tree contains itself);
    - each alias adds the nodes of what it names, and past ALIAS_BUDGET the
      build stops, so a "billion laughs" file costs microseconds.

    Scalars are resolved and constructed by the loader's own resolver and
    constructors, so values read exactly as PyYAML's safe loader reads them.
    Merge keys follow the YAML merge spec: explicit keys win, then the mappings
    merged in the order listed (PyYAML 6.0 lets a later one win for keys longer
    than one character, an accident of string interning)."""

    def __init__(self, parser: yaml.SafeLoader | yaml.CSafeLoader) -> None:
        self.events = _Events(parser)
        self.constructor = parser
        # anchor → (its value, the nodes it expands to); None while it is being built.
        self.anchors: dict[str, tuple[object, int] | None] = {}
        self.errors: list[str] = []
        self.extra = 0  # nodes the aliases add

    def document(self) -> object:
        """The stream's single document, or None for an empty stream."""
        events = self.events
        events.take()  # the stream's start
        if events.at(StreamEndEvent):
            return None
        start = events.take()  # the document's start
        value, _ = self.node("", 0)
        events.take()  # the document's end
        if not events.at(StreamEndEvent):
            raise ComposerError(
                "expected a single document in the stream",
                _mark(start),
                "but found another document",
                _mark(events.take()),
            )
        return value

    def node(self, path: str, depth: int, *, key: bool = False) -> tuple[object, int]:
        """The next node's value and the nodes it expands to (``key``: a mapping key)."""
        event = self.events.peek()
        if isinstance(event, AliasEvent):
            self.events.take()
            return self.alias(event, path)
        if depth > MAX_DEPTH:
            self.errors.append(f"{path or '<root>'}: nested deeper than {MAX_DEPTH} levels")
            self.skip()
            return None, 1
        assert isinstance(event, NodeEvent)
        anchor = self.open_anchor(event)
        built: tuple[object, int]
        if isinstance(event, ScalarEvent):
            self.events.take()
            built = (self.scalar(event, key=key), 1)
        elif isinstance(event, SequenceStartEvent):
            built = self.sequence(path, depth)
        else:
            built = self.mapping(path, depth)
        if anchor is not None:
            self.anchors[anchor] = built
        return built

    def open_anchor(self, event: NodeEvent) -> str | None:
        anchor: str | None = event.anchor
        if anchor is not None:
            if anchor in self.anchors:
                raise ComposerError(
                    "found duplicate anchor; first occurrence",
                    None,
                    "second occurrence",
                    _mark(event),
                )
            self.anchors[anchor] = None  # open: an alias to it now would contain itself
        return anchor

    def defined(self, event: AliasEvent) -> str:
        """The anchor an alias names, which must have been met before it (as
        PyYAML's composer says)."""
        anchor: str | None = event.anchor
        if anchor is None or anchor not in self.anchors:
            raise ComposerError(None, None, "found undefined alias", _mark(event))
        return anchor

    def alias(self, event: AliasEvent, path: str) -> tuple[object, int]:
        named = self.anchors[self.defined(event)]
        if named is None:
            self.errors.append(f"{path or '<root>'}: an alias contains itself")
            return None, 1
        self.extra += named[1]
        if self.extra > ALIAS_BUDGET:
            raise _OverBudget
        return named

    def skip(self) -> None:
        """Consume the next node's events without building it (too deep to
        build): its anchors are known, an undefined alias is still an error."""
        level = 0
        while True:
            event = self.events.take()
            if isinstance(event, AliasEvent):
                self.defined(event)
            elif isinstance(event, NodeEvent) and event.anchor is not None:
                self.open_anchor(event)
                self.anchors[event.anchor] = (None, 1)
            if isinstance(event, CollectionStartEvent):
                level += 1
            elif isinstance(event, (SequenceEndEvent, MappingEndEvent)):
                level -= 1
            if level == 0:
                return

    def scalar(self, event: ScalarEvent, *, key: bool = False) -> object:
        """A scalar's value, by the loader's own constructor for its tag."""
        tag = self.scalar_tag(event)
        if key and tag == _VALUE_TAG:
            tag = _STR_TAG  # a key ``=`` is the string, as PyYAML reads it
        value: str = event.value
        node = ScalarNode(tag, value, _mark(event), None, event.style)
        constructors = self.constructor.yaml_constructors
        constructor = constructors.get(tag, constructors.get(None))
        if constructor is None:
            raise _unknown_tag(event)
        built = constructor(self.constructor, node)
        if isinstance(built, GeneratorType):  # a collection's constructor for a scalar: it fails
            generator = built
            built = next(generator)
            for _ in generator:
                pass
        return built

    def scalar_tag(self, event: ScalarEvent) -> str:
        """The scalar's tag: as written, else as the loader's resolver reads its text."""
        tag: str | None = event.tag
        if tag is None or tag == "!":
            return self.events.resolve(ScalarNode, event.value, event.implicit)
        return tag

    def collection(self, kind: type[Node], plain: str) -> Event:
        """Take a list's or mapping's start. It is built as such: a tag asking for
        something else (``!!set``, ``!!omap``, the file's own) is refused like an
        unknown one."""
        start = self.events.take()
        assert isinstance(start, CollectionStartEvent)
        tag: str | None = start.tag
        if tag is None or tag == "!":
            tag = self.events.resolve(kind, None, start.implicit)
        if tag != plain:
            raise _unknown_tag(start)
        return start

    def sequence(self, path: str, depth: int) -> tuple[object, int]:
        self.collection(SequenceNode, _SEQ_TAG)
        items: list[object] = []
        size = 1
        while not self.events.at(SequenceEndEvent):
            item, item_size = self.node(f"{path or '<root>'}[{len(items)}]", depth + 1)
            items.append(item)
            size += item_size
        self.events.take()
        return items, size

    def mapping(self, path: str, depth: int) -> tuple[object, int]:
        start = self.collection(MappingNode, _MAP_TAG)
        merged: list[dict[object, object]] = []  # the mappings merged in, in order
        pairs: dict[object, object] = {}
        first_line: dict[tuple[str, str], int] = {}
        size = 1
        while not self.events.at(MappingEndEvent):
            key_event = self.events.peek()
            name = "?"
            if isinstance(key_event, ScalarEvent):
                name, tag = key_event.value, self.scalar_tag(key_event)
                if tag == _MERGE_TAG:
                    self.events.take()
                    value, value_size = self.node(join(path, name), depth + 1)
                    merged += _merge_sources(value, start)
                    size += 1 + value_size
                    continue
                line = key_event.start_mark.line + 1 if key_event.start_mark else 0
                if (tag, name) in first_line:
                    self.errors.append(
                        f"{join(path, name)}: duplicate key (lines {first_line[tag, name]} "
                        f"and {line}); YAML keys must be unique"
                    )
                first_line.setdefault((tag, name), line)
            key, key_size = self.node(path, depth + 1, key=True)
            if not isinstance(key, Hashable):
                raise ConstructorError(
                    "while constructing a mapping",
                    _mark(start),
                    "found unhashable key",
                    _mark(key_event),
                )
            value, value_size = self.node(join(path, name), depth + 1)
            pairs[key] = value
            size += key_size + value_size
        self.events.take()
        if not merged:
            return pairs, size
        mapping: dict[object, object] = {}
        for source in merged:  # in the order listed, the first wins; keys in PyYAML's order
            for merged_key, merged_value in source.items():
                mapping.setdefault(merged_key, merged_value)
        mapping.update(pairs)  # and what the mapping says itself wins over all
        return mapping, size


def _unknown_tag(event: Event) -> ConstructorError:
    """The error for a tag this loader builds nothing for (PyYAML's wording)."""
    return ConstructorError(
        None, None, "could not determine a constructor for the tag", _mark(event)
    )


def _merge_sources(value: object, mapping: Event) -> list[dict[object, object]]:
    """What a merge key's value merges in: a mapping, or a list of mappings."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        return value
    raise ConstructorError(
        "while constructing a mapping",
        None,
        "expected a mapping or list of mappings for merging",
        _mark(mapping),
    )
