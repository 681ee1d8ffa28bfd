"""Read a YAML rule file safely, keeping the line and column of every value for error messages."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml._yaml import CParser

from router.errors import RuleError

MAX_FILE_BYTES = 1024 * 1024
Path_ = tuple[str | int, ...]


@dataclass
class Locator:
    """Maps a path inside a file (``("rules", 0, "filter")``) to its 1-based line and column.

    Positions are read from the parsed node tree when asked for (and remembered), so a file of
    thousands of rules does not build a table of every value's position up front.
    """

    file: str
    positions: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    single_rule: bool = False
    root: Any = None  # the composed yaml node tree

    def position(self, path: Path_) -> tuple[int, int]:
        """The position of the path, or of the nearest enclosing value that has one."""
        path = tuple(path)
        found = self.positions.get(path)
        if found is not None:
            return found
        node = self.root
        pos = (node.start_mark.line + 1, node.start_mark.column + 1) if node is not None else (0, 0)
        for part in path:
            node = _child(node, part)
            if node is None:
                break
            pos = (node.start_mark.line + 1, node.start_mark.column + 1)
        if self.root is None:  # positions given by hand (a Locator without a tree)
            for end in range(len(path), -1, -1):
                given = self.positions.get(path[:end])
                if given is not None:
                    return given
            return (0, 0)
        self.positions[path] = pos
        return pos

    def describe(self, path: Path_) -> str:
        line, col = self.position(path)
        return f"{self.file}:{line}:{col}" if line else self.file


def _child(node: Any, part: str | int) -> Any:
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == part:
                return value
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return node.value[part]
    return None


class _TagError(Exception):
    def __init__(self, tag: str, path: Path_) -> None:
        self.tag, self.path = tag, path


_STD = "tag:yaml.org,2002:"
_STANDARD_TAGS = frozenset(
    _STD + t for t in ("str", "int", "float", "bool", "null", "binary", "timestamp", "map", "seq", "value")
)


class _Resolver(yaml.resolver.BaseResolver):
    """YAML 1.2's core schema, as ruamel.yaml resolves it (``yes``/``on`` stay text; ``0o17`` is octal)."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        """Called by libyaml for every node without an explicit tag: quoted scalars are text at once."""
        if kind is yaml.ScalarNode:
            if implicit[0]:
                for tag, regexp in self.yaml_implicit_resolvers.get(value[:1], ()):
                    if regexp.match(value):
                        return str(tag)
            return _STD + "str"
        return _STD + ("seq" if kind is yaml.SequenceNode else "map")


for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    (
        "float",
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        "-+0123456789.",
    ),
    ("int", r"^(?:[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?[0-9_]+|[-+]?0x[0-9a-fA-F_]+)$", "-+0123456789"),
    ("merge", r"^(?:<<)$", "<"),
    ("null", r"^(?: ~|null|Null|NULL| )$", "~nN\0"),
    (
        "timestamp",
        r"""^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
        |[0-9][0-9][0-9][0-9] -[0-9][0-9]? -[0-9][0-9]?
        (?:[Tt]|[ \t]+)[0-9][0-9]?
        :[0-9][0-9] :[0-9][0-9] (?:\.[0-9]*)?
        (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$""",
        "0123456789",
    ),
):
    _Resolver.add_implicit_resolver(_STD + _tag, re.compile(_pattern, re.X), [c if c != "\0" else "" for c in _first])


class _FastLoader(CParser, _Resolver):
    """libyaml's parser and composer (C) with the resolver above; nothing is constructed by PyYAML."""

    def __init__(self, stream: str) -> None:
        CParser.__init__(self, stream)
        _Resolver.__init__(self)


_TIMESTAMPS = yaml.constructor.SafeConstructor()
_STR = _STD + "str"


def _int(text: str) -> int:
    value = text.replace("_", "")
    sign = -1 if value.startswith("-") else 1
    value = value.lstrip("+-")
    for prefix, base in (("0b", 2), ("0o", 8), ("0x", 16)):
        if value.startswith(prefix):
            return sign * int(value[2:], base)
    return sign * int(value, 10)


def _float(text: str) -> float:
    value = text.replace("_", "").lower()
    if value.endswith(".inf"):
        return float("-inf") if value.startswith("-") else float("inf")
    if value.endswith(".nan"):
        return float("nan")
    return float(value)


def _scalar(node: yaml.Node, path: Path_) -> Any:
    assert isinstance(node, yaml.ScalarNode)
    tag = node.tag
    if tag == _STD + "str":
        return node.value
    if tag == _STD + "null":
        return None
    if tag == _STD + "bool":
        return node.value.lower() == "true"
    if tag == _STD + "int":
        return _int(node.value)
    if tag == _STD + "float":
        return _float(node.value)
    if tag == _STD + "timestamp":
        stamp = _TIMESTAMPS.construct_yaml_timestamp(node)
        return stamp.isoformat()
    if tag == _STD + "binary":
        return str(_TIMESTAMPS.construct_yaml_binary(node))
    if tag == _STD + "merge":
        raise _TagError("<< (a merge key)", path)
    return node.value  # !!value and the like: the text as written


class _DuplicateKey(Exception):
    def __init__(self, key: str, mark: Any) -> None:
        self.key, self.mark = key, mark


def _plain(node: yaml.Node, path: Path_) -> Any:
    """Plain data from a composed node (positions stay in the tree, for the Locator)."""
    if isinstance(node, yaml.ScalarNode):
        return node.value if node.tag == _STR else _scalar(node, path)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else _plain(key_node, path)
            name = str(key)
            if name in out:
                raise _DuplicateKey(name, key_node.start_mark)
            out[name] = _plain(value_node, (*path, name))
        return out
    return [_plain(item, (*path, i)) for i, item in enumerate(node.value)]


ANCHOR_MESSAGE = "YAML anchors and aliases (&name / *name) are not allowed in rule files; repeat the value"


def _refused_event(source: str) -> tuple[str, int, int] | None:
    """The first anchor, alias or non-standard tag, found on the event stream before anything is built.

    Refusing anchors outright closes alias bombs (a few lines that expand to billions of nodes when
    walked); refusing tags means no tag can ever name code. Returns (what, line, column), 1-based.
    """
    for event in yaml.parse(source, Loader=yaml.CSafeLoader):
        mark = event.start_mark
        assert mark is not None
        if getattr(event, "anchor", None) is not None:  # AliasEvent, or a node event carrying ``&name``
            return "anchor", mark.line + 1, mark.column + 1
        tag = getattr(event, "tag", None)
        if tag is not None and tag != "!" and tag not in _STANDARD_TAGS:
            return tag.replace(_STD, "!!"), mark.line + 1, mark.column + 1
    return None


def parse_yaml(text: bytes, file: str) -> tuple[Any, Locator, list[RuleError]]:
    """Parse one file; returns plain data, its locator and any errors (never raises on bad input).

    libyaml (PyYAML's C bindings) does the parsing, with YAML 1.2's core schema: 10,000 rules parse in
    about a second, where a pure-Python parser took over a minute.
    """
    locator = Locator(file)
    if len(text) > MAX_FILE_BYTES:
        return None, locator, [RuleError(f"file is over {MAX_FILE_BYTES} bytes; split it", file=file)]
    try:
        source = text.decode("utf-8")
        refused = _refused_event(source)
        if refused is not None:
            what, line, col = refused
            message = (
                ANCHOR_MESSAGE
                if what == "anchor"
                else f"YAML tags such as {what} are not allowed in rule files; remove the tag"
            )
            return None, locator, [RuleError(message, file=file, line=line, col=col)]
        loader = _FastLoader(source)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except UnicodeDecodeError as exc:
        return None, locator, [RuleError(f"file is not UTF-8: {exc.reason} at byte {exc.start}", file=file)]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p) or "invalid YAML"
        problem = problem.split("\n", 1)[0]
        return None, locator, [RuleError(f"invalid YAML: {problem}", file=file, line=line, col=col)]
    except yaml.YAMLError as exc:
        return None, locator, [RuleError(f"invalid YAML: {exc}", file=file)]
    if node is None:
        return None, locator, []
    locator.root = node
    try:
        return _plain(node, ()), locator, []
    except _TagError as exc:
        line, col = locator.position(exc.path)
        message = f"YAML tags such as {exc.tag} are not allowed in rule files; remove the tag"
        return None, locator, [RuleError(message, file=file, line=line, col=col)]
    except _DuplicateKey as exc:
        line, col = exc.mark.line + 1, exc.mark.column + 1
        message = f'invalid YAML: while constructing a mapping found duplicate key "{exc.key}"'
        return None, locator, [RuleError(message, file=file, line=line, col=col)]
    except (ValueError, OverflowError) as exc:
        return None, locator, [RuleError(f"invalid YAML: {exc}", file=file)]
