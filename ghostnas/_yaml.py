"""Safe YAML with line numbers, so that a user's file can be blamed line by line.

:func:`parse_yaml` uses a subclass of ``yaml.SafeLoader``: plain YAML only, every ``!!python``
tag is refused. Mappings come back as dicts that also know the line of each key (``line``,
``key_lines``) and lists know their starting line, which validators use in their messages.
Duplicate keys are refused (PyYAML would silently keep the last).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

__all__ = ["parse_yaml"]


class _YamlProblem(Exception):
    """Raised inside the loader; turned into the caller's error class with the source name."""


class LineDict(dict):  # type: ignore[type-arg]
    """A YAML mapping that remembers its line and the line of each key."""

    line: int = 0
    key_lines: dict[Any, int]


class LineList(list):  # type: ignore[type-arg]
    """A YAML sequence that remembers its line."""

    line: int = 0


class _LineLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (no Python tags) whose mappings and lists carry line numbers."""


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> Iterator[LineDict]:
    data = LineDict()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise _YamlProblem(f"line {line}: a mapping key must be a plain value") from None
        if key in data:
            raise _YamlProblem(f"line {line}: duplicate key {key!r}; keep one")
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[key] = line


def _construct_seq(loader: _LineLoader, node: yaml.SequenceNode) -> Iterator[LineList]:
    data = LineList()
    data.line = node.start_mark.line + 1
    yield data
    data.extend(loader.construct_sequence(node, deep=True))


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def parse_yaml(text: str, source: str, error: type[Exception]) -> Any:
    """Parse YAML text safely; raise ``error`` with one line naming ``source`` and the line.

    Args:
        text: The YAML document.
        source: File name for messages.
        error: The exception class to raise (the caller's user-facing error).
    """
    try:
        return yaml.load(text, Loader=_LineLoader)  # a SafeLoader subclass: no Python tags
    except _YamlProblem as exc:
        raise error(f"{source}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        if "constructor for the tag" in problem:
            problem = f"{problem} (only plain YAML is allowed: no tags)"
        raise error(f"{source}: {where}{problem}") from None
    except yaml.YAMLError as exc:
        raise error(f"{source}: invalid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise error(f"{source}: YAML nested too deeply") from None
