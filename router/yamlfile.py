"""Read a YAML rule file safely, keeping the line and column of every value for error messages."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from router.errors import RuleError

MAX_FILE_BYTES = 1024 * 1024
Path_ = tuple[str | int, ...]


@dataclass
class Locator:
    """Maps a path inside a file (``("rules", 0, "filter")``) to its 1-based line and column."""

    file: str
    positions: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    single_rule: bool = False

    def position(self, path: Path_) -> tuple[int, int]:
        """The position of the path, or of the nearest enclosing value that has one."""
        for end in range(len(path), -1, -1):
            pos = self.positions.get(tuple(path[:end]))
            if pos is not None:
                return pos
        return (0, 0)

    def describe(self, path: Path_) -> str:
        line, col = self.position(path)
        return f"{self.file}:{line}:{col}" if line else self.file


class _TagError(Exception):
    def __init__(self, tag: str, path: Path_) -> None:
        self.tag, self.path = tag, path


def _plain(node: Any, path: Path_, positions: dict[Path_, tuple[int, int]]) -> Any:
    tag = getattr(getattr(node, "tag", None), "value", None)
    if tag:
        raise _TagError(str(tag).replace("tag:yaml.org,2002:", "!!"), path)
    if isinstance(node, TaggedScalar):
        raise _TagError(str(node.tag), path)
    if isinstance(node, CommentedMap):
        positions.setdefault(path, (node.lc.line + 1, node.lc.col + 1))
        out: dict[str, Any] = {}
        for key, value in node.items():
            child = (*path, str(key))
            try:
                line, col = node.lc.value(key)
                positions[child] = (line + 1, col + 1)
            except (KeyError, TypeError, AttributeError):
                pass
            out[str(key)] = _plain(value, child, positions)
        return out
    if isinstance(node, CommentedSeq):
        positions.setdefault(path, (node.lc.line + 1, node.lc.col + 1))
        items = []
        for i, value in enumerate(node):
            try:
                line, col = node.lc.item(i)
                positions[(*path, i)] = (line + 1, col + 1)
            except (KeyError, TypeError, AttributeError):
                pass
            items.append(_plain(value, (*path, i), positions))
        return items
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, str):
        return str(node)
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, dt.date | dt.datetime):
        return node.isoformat()
    return str(node)


ANCHOR_MESSAGE = "YAML anchors and aliases (&name / *name) are not allowed in rule files; repeat the value"


def _first_anchor(source: str) -> tuple[int, int] | None:
    """The 1-based position of the first anchor or alias, found on the event stream before anything is built.

    Refusing them outright closes alias bombs (a few lines that expand to billions of nodes when walked).
    """
    for event in YAML(typ="rt").parse(source):
        if getattr(event, "anchor", None) is not None:  # AliasEvent, or a node event carrying ``&name``
            mark = event.start_mark
            return mark.line + 1, mark.column + 1
    return None


def parse_yaml(text: bytes, file: str) -> tuple[Any, Locator, list[RuleError]]:
    """Parse one file; returns plain data, its locator and any errors (never raises on bad input)."""
    locator = Locator(file)
    if len(text) > MAX_FILE_BYTES:
        return None, locator, [RuleError(f"file is over {MAX_FILE_BYTES} bytes; split it", file=file)]
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        source = text.decode("utf-8")
        anchor = _first_anchor(source)
        if anchor is not None:
            return None, locator, [RuleError(ANCHOR_MESSAGE, file=file, line=anchor[0], col=anchor[1])]
        node = yaml.load(source)
    except UnicodeDecodeError as exc:
        return None, locator, [RuleError(f"file is not UTF-8: {exc.reason} at byte {exc.start}", file=file)]
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p) or "invalid YAML"
        problem = problem.split("\n", 1)[0]
        return None, locator, [RuleError(f"invalid YAML: {problem}", file=file, line=line, col=col)]
    except YAMLError as exc:
        return None, locator, [RuleError(f"invalid YAML: {exc}", file=file)]
    try:
        return _plain(node, (), locator.positions), locator, []
    except _TagError as exc:
        line, col = locator.position(exc.path)
        message = f"YAML tags such as {exc.tag} are not allowed in rule files; remove the tag"
        return None, locator, [RuleError(message, file=file, line=line, col=col)]
