"""YAML text → plain Python tree, safe against hostile files.

Both config files go through :func:`load_yaml`. On top of a safe loader
(libyaml's when PyYAML was built with it, else PyYAML's; both behave the same
here) it:

- counts the document's nodes from the parser's events, one at a time,
  before any node is composed: more than :data:`MAX_NODES` are refused, so a
  file of ``[1,1,1,...]`` within the size cap (16 MiB: 8 million nodes, some
  3 GB once built) cannot grow the process either;
- checks the composed node graph *before* anything is built: aliases (and
  ``<<`` merges of them) may add at most :data:`ALIAS_BUDGET` nodes to the
  document, so a 577-byte "billion laughs" file is refused in microseconds
  instead of growing the process without bound; nesting is limited to
  :data:`MAX_DEPTH`; an alias that contains itself is refused;
- refuses duplicate keys (YAML says keys are unique; PyYAML keeps the last one
  silently), naming the key path and both lines;
- reports syntax errors with line and column and a fixed description, never
  PyYAML's problem text or source snippet, which can quote a value (an unquoted
  token starting with ``!`` reads as a tag and would be printed).
"""

from __future__ import annotations

import yaml
from yaml.events import AliasEvent, MappingStartEvent, ScalarEvent, SequenceStartEvent
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
        instance = loader(text)  # PyYAML's reader checks the characters here already
    except yaml.YAMLError as exc:
        raise ConfigError([_describe(exc, text)]) from None
    if nodes > MAX_NODES:
        raise ConfigError([f"<yaml>: more than {MAX_NODES} nodes (values, lists, mappings)"])
    try:
        node = instance.get_single_node()
        if node is None:
            return None
        problems = _NodeCheck().problems(node)
        if not problems:
            return instance.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError([_describe(exc, text)]) from None
    except (ValueError, RecursionError, OverflowError) as exc:
        # PyYAML lets these escape: an int over 4300 digits, a date like 2024-13-45.
        raise ConfigError([f"<yaml>: unsupported value ({type(exc).__name__})"]) from None
    finally:
        instance.dispose()
    # Raised here, not in the walk: no frame of the traceback holds the node graph,
    # whose repr alone would expand a bomb.
    raise ConfigError(problems)


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


class _NodeCheck:
    """One walk over the composed graph (each node once): duplicate keys,
    depth, cycles, and the size the document would have with aliases expanded."""

    def __init__(self) -> None:
        self.sizes: dict[int, int] = {}  # id(node) → nodes it expands to
        self.open: set[int] = set()
        self.errors: list[str] = []

    def problems(self, root: Node) -> list[str]:
        expanded = self.size(root, "", 0)
        if not self.errors and expanded - len(self.sizes) > ALIAS_BUDGET:
            self.errors.append(
                f"<yaml>: aliases expand the document beyond {ALIAS_BUDGET} extra nodes; "
                "refused (write the repeated parts out, or share less)"
            )
        return self.errors

    def size(self, node: Node, path: str, depth: int) -> int:
        key = id(node)
        known = self.sizes.get(key)
        if known is not None:
            return known  # an alias of a node already walked
        if key in self.open:
            self.errors.append(f"{path or '<root>'}: an alias contains itself")
            return 1
        if depth > MAX_DEPTH:
            self.errors.append(f"{path or '<root>'}: nested deeper than {MAX_DEPTH} levels")
            return 1
        self.open.add(key)
        total = 1
        if isinstance(node, MappingNode):
            total += self.mapping(node, path, depth)
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                total += self.size(item, f"{path or '<root>'}[{index}]", depth + 1)
        self.open.discard(key)
        self.sizes[key] = total
        return total

    def mapping(self, node: MappingNode, path: str, depth: int) -> int:
        total = 0
        first_line: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, ScalarNode) else "?"
            if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE_TAG:
                identity = (key_node.tag, key_node.value)
                line = key_node.start_mark.line + 1
                if identity in first_line:
                    self.errors.append(
                        f"{join(path, name)}: duplicate key (lines {first_line[identity]} "
                        f"and {line}); YAML keys must be unique"
                    )
                first_line.setdefault(identity, line)
            total += self.size(key_node, path, depth + 1)
            total += self.size(value_node, join(path, name), depth + 1)
        return total
