"""The policy file's YAML, parsed with the line of every node and key.

`Document.parse` composes the YAML (with libyaml when PyYAML is built with it), refuses
what a policy file must not use (merge keys, keys that are not plain names, duplicate
keys, an alias that refers to itself) and converts it to plain data for the schema,
remembering the line of each node and key and which paths an alias reaches.
`Document.line(path)` is the line an error at `path` points to (the anchor's, when the path
runs through an alias, so one mistake is reported once); `dotted_path` and `show` word a
path and a value for messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import yaml

from policy.loader.errors import PolicyError

Path = tuple[str | int, ...]
"""Where a node is: the keys and list indices from the document's root."""

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it


class Document:
    """The parsed file: plain data (for the schema) and the line of every node and key."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.data: Any = None
        self.lines: dict[Path, int] = {}
        self.key_lines: dict[Path, int] = {}
        self.alias_of: dict[Path, Path] = {}  # a YAML alias's path -> its anchor's path
        self._first_path: dict[int, Path] = {}

    @classmethod
    def parse(cls, text: str, filename: str, errors: list[PolicyError]) -> Document | None:
        doc = cls(filename)
        try:
            root = yaml.compose(text, Loader=_YAML_LOADER)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 1
            problem = exc.problem or exc.context or "unreadable YAML"
            opened = exc.context_mark
            if exc.context and opened is not None and opened.line + 1 != line:
                problem += f" ({exc.context} at line {opened.line + 1})"
            errors.append(
                PolicyError(
                    filename,
                    line,
                    f"YAML syntax error: {problem}",
                    "check the indentation and quoting on this line and the one before",
                )
            )
            return None
        except yaml.YAMLError as exc:
            errors.append(PolicyError(filename, 1, f"YAML error: {exc}", "fix the YAML syntax"))
            return None
        if root is None:
            errors.append(
                PolicyError(filename, 1, "the policy file is empty", "write policy:, purposes:…")
            )
            return None
        constructor = yaml.constructor.SafeConstructor()
        doc.data = doc._convert(root, (), constructor, errors, frozenset())
        return doc

    def _convert(
        self,
        node: yaml.Node,
        path: Path,
        constructor: yaml.constructor.SafeConstructor,
        errors: list[PolicyError],
        open_nodes: frozenset[int],
    ) -> Any:
        line = node.start_mark.line + 1
        self.lines[path] = line
        first = self._first_path.setdefault(id(node), path)
        if first != path:
            self.alias_of[path] = first
        if id(node) in open_nodes:
            errors.append(
                PolicyError(
                    self.filename, line, "a YAML alias refers to itself", "write the value out"
                )
            )
            return None
        inner = open_nodes | {id(node)}
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            first_line: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key_line = key_node.start_mark.line + 1
                if key_node.tag == "tag:yaml.org,2002:merge":
                    errors.append(
                        PolicyError(
                            self.filename,
                            key_line,
                            "YAML merge keys (<<) are not supported in a policy file",
                            "write the keys out, or reuse a whole value with an alias (*name)",
                        )
                    )
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    errors.append(
                        PolicyError(
                            self.filename,
                            key_line,
                            "a key must be a plain name",
                            "write key: value",
                        )
                    )
                    continue
                key = self._scalar(key_node, constructor, errors)
                if isinstance(key, float | bool) or key is None:
                    key = key_node.value
                if key in result:
                    errors.append(
                        PolicyError(
                            self.filename,
                            key_line,
                            f"duplicate key {show(key)} (first at line {first_line[key]}); "
                            "YAML would silently keep only the last one",
                            "remove one of them or give it another name",
                        )
                    )
                    continue
                first_line[key] = key_line
                self.key_lines[(*path, key)] = key_line
                result[key] = self._convert(value_node, (*path, key), constructor, errors, inner)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [
                self._convert(item, (*path, i), constructor, errors, inner)
                for i, item in enumerate(node.value)
            ]
        assert isinstance(node, yaml.ScalarNode)
        return self._scalar(node, constructor, errors)

    def _scalar(
        self,
        node: yaml.ScalarNode,
        constructor: yaml.constructor.SafeConstructor,
        errors: list[PolicyError],
    ) -> Any:
        try:
            return constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            errors.append(
                PolicyError(
                    self.filename,
                    node.start_mark.line + 1,
                    f"unreadable value: {exc.problem}",
                    "write a plain string, number or boolean",
                )
            )
            return None

    def canonical(self, path: Sequence[str | int]) -> Path:
        """The path as written in the file: what an alias reaches is reached through its anchor,
        so one mistake inside an anchor is one error, at the anchor's line."""
        full = tuple(path)
        for end in range(len(full), 0, -1):
            anchor = self.alias_of.get(full[:end])
            if anchor is not None:
                return self.canonical((*anchor, *full[end:]))
        return full

    def where(self, path: Sequence[str | int]) -> str:
        """The dotted name of `path` (through its anchor) for messages."""
        return dotted_path(self.canonical(path))

    def line(self, path: Sequence[str | int], key: bool = False) -> int:
        """The line of the node at `path` (of its key when `key`), or of its nearest parent."""
        full = self.canonical(path)
        for end in range(len(full), -1, -1):
            prefix = full[:end]
            if (key or end < len(full)) and prefix in self.key_lines:
                return self.key_lines[prefix]
            if prefix in self.key_lines and isinstance(self.get(prefix), dict | list):
                return self.key_lines[prefix]
            if prefix in self.lines:
                return self.lines[prefix]
        return 1

    def get(self, path: Path) -> Any:
        value = self.data
        for part in path:
            in_mapping = isinstance(value, dict) and part in value
            in_list = isinstance(value, list) and isinstance(part, int) and part < len(value)
            if in_mapping or in_list:
                value = value[part]
            else:
                return None
        return value


def dotted_path(path: Iterable[str | int]) -> str:
    """`sources.public.orders.rules[0]` for messages; the root is "the policy file"."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the policy file"


def show(value: Any) -> str:
    """A value of the policy file as a message quotes it: a string in quotes, else as JSON."""
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value, default=str)
