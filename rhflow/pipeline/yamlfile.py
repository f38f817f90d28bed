"""YAML text -> a Document: the data with the line and column of every value and key.

The only module that imports yaml. Also parses command-line values (``--set``) as YAML.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from rhflow.errors import ConfigError, Problem, UsageError

PathKey = tuple[str, ...]


_SELF_ALIAS = "a YAML alias refers to itself"


_SELF_ALIAS_HINT = "; a value cannot contain itself: alias another anchor or write the value out"


@dataclass(frozen=True, slots=True)
class Document:
    """Parsed YAML data with the 1-based (line, col) of every value and mapping key."""

    file: str
    data: Any
    marks: Mapping[PathKey, tuple[int, int]] = field(default_factory=dict)
    key_marks: Mapping[PathKey, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: Iterable[str | int], *, at_key: bool = False) -> tuple[int, int]:
        """The position of ``path``'s value (or key), else of its nearest marked parent."""
        key = tuple(str(p) for p in path)
        if at_key and key in self.key_marks:
            return self.key_marks[key]
        while key not in self.marks and key:
            key = key[:-1]
        return self.marks.get(key, (1, 1))

    def problem(self, path: Iterable[str | int], message: str, *, at_key: bool = False) -> Problem:
        path = tuple(path)
        line, col = self.where(path, at_key=at_key)
        return Problem(self.file, line, col, dotted(path), message)


def dotted(path: Iterable[str | int]) -> str:
    """``("steps", "gen", "matrix", "seed")`` -> ``steps.gen.matrix.seed``; indices as ``[0]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


if yaml.__with_libyaml__:  # libyaml's event parser, about five times faster than PyYAML's
    _CParser: Any = getattr(yaml.cyaml, "CParser")  # noqa: B009 - the stubs do not declare it

    class _Base(
        yaml.composer.Composer,  # composed in Python, so that compose_node can be watched
        _CParser,
        yaml.constructor.SafeConstructor,
        yaml.resolver.Resolver,
    ):
        def __init__(self, text: str) -> None:
            _CParser.__init__(self, text)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            yaml.composer.Composer.__init__(self)

else:  # pragma: no cover - PyYAML built without libyaml

    class _Base(yaml.SafeLoader):  # type: ignore[no-redef]
        pass


class _Loader(_Base):
    """A SafeLoader that records every alias to a node still being composed (``&a [*a]``): such
    data contains itself, and nothing after the loader can check, hash or print it. It refuses
    data nested more than MAX_DEPTH deep and, with ``max_values``, more values than that, as
    soon as it meets them."""

    def __init__(self, text: str, max_values: int | None = None) -> None:
        super().__init__(text)
        self._open: list[str | None] = []  # the anchors of the nodes being composed
        self._path: tuple[str | int, ...] = ()
        self._left = max_values
        self.self_aliases: list[tuple[tuple[str | int, ...], tuple[int, int]]] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        part = () if index is None else (index if isinstance(index, int) else str(index.value),)
        event = self.peek_event()
        if len(self._open) >= MAX_DEPTH:  # the composer recurses once per level
            raise _TooDeep(None, None, _TOO_DEEP, event.start_mark)
        if self._left is not None:
            self._left -= 1
            if self._left < 0:
                raise _TooDeep(None, None, _TOO_MANY, event.start_mark)
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                mark = event.start_mark
                where = (mark.line + 1, mark.column + 1) if mark else (1, 1)
                self.self_aliases.append(((*self._path, *part), where))
            return super().compose_node(parent, index)
        outer = self._path
        self._path = (*outer, *part)
        self._open.append(getattr(event, "anchor", None))
        try:
            return super().compose_node(parent, index)
        finally:
            self._open.pop()
            self._path = outer


#: Deepest nesting of lists and mappings a document may have: YAML's composer, JSON Schema and
#: every walk over the data recurse once per level.
MAX_DEPTH = 64
_TOO_DEEP = f"lists and mappings nested more than {MAX_DEPTH} levels deep; flatten the data"


#: Values (before aliases expand) a pipeline file may hold: a million-item list takes PyYAML
#: tens of seconds to read; it belongs in a ``rows:`` file.
MAX_PIPELINE_VALUES = 100_000
_TOO_MANY = (
    f"the file holds more than {MAX_PIPELINE_VALUES:,} values; "
    "put long lists in a rows: file (CSV or JSONL)"
)


class _TooDeep(yaml.composer.ComposerError):
    """A document nested deeper than MAX_DEPTH, or with more values than allowed."""


#: Values a document may hold once its aliases are expanded; beyond it the file is refused
#: before anything walks or builds it (a few nested aliases can stand for billions of values).
MAX_VALUES = 1_000_000


_TOO_BIG = (
    f"the YAML expands to more than {MAX_VALUES:,} values through its aliases; "
    "use fewer nested aliases"
)


def _too_big(root: yaml.Node) -> bool:
    """Whether ``root`` holds more than MAX_VALUES values with aliases expanded; linear in the
    number of distinct nodes, since a shared node's size is counted once."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = 1  # a node inside itself (reported elsewhere) counts once
        total = 1
        if isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item) for item in node.value)
        sizes[id(node)] = total = min(total, MAX_VALUES + 1)
        return total

    return size(root) > MAX_VALUES


def load_yaml(text: str) -> Any:
    """``yaml.safe_load``, but ValueError for data that contains itself through an alias."""
    try:
        loader = _Loader(text)  # PyYAML checks every character first
    except yaml.reader.ReaderError as exc:
        raise ValueError(f"invalid YAML: {_reader_problem(exc)}") from exc
    try:
        node = loader.get_single_node()
        if loader.self_aliases:
            line, col = loader.self_aliases[0][1]
            raise ValueError(f"{_SELF_ALIAS} (line {line}, column {col}){_SELF_ALIAS_HINT}")
        if node is not None and _too_big(node):
            raise ValueError(_TOO_BIG)
        if node is not None:
            for _, mark in _surrogates(node):
                raise ValueError(f"{_SURROGATE} (line {mark[0]}, column {mark[1]})")
        return loader.construct_document(node) if node is not None else None
    except _TooDeep as exc:
        raise ValueError(exc.problem) from exc
    except yaml.reader.ReaderError as exc:
        raise ValueError(f"invalid YAML: {_reader_problem(exc)}") from exc
    finally:
        loader.dispose()


def load_data(text: str) -> Any:
    """Plain YAML data, without marks; ValueError("invalid YAML: ...") for malformed text."""
    try:
        return load_yaml(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid YAML: {exc}") from exc


def parse_document(text: str, file: str) -> tuple[Document, list[Problem]]:
    """Parse YAML text; duplicate keys are returned as problems, syntax errors and aliases that
    refer to themselves raise ConfigError."""
    try:
        loader = _Loader(text, MAX_PIPELINE_VALUES)  # PyYAML checks every character first
    except yaml.reader.ReaderError as exc:
        raise ConfigError([_reader_error(file, text, exc)]) from exc
    marks: dict[PathKey, tuple[int, int]] = {}
    key_marks: dict[PathKey, tuple[int, int]] = {}
    duplicates: list[tuple[PathKey, tuple[int, int]]] = []
    try:
        node = loader.get_single_node()
        if loader.self_aliases:
            problems = [Problem(file, *mark, dotted(path), _SELF_ALIAS + _SELF_ALIAS_HINT)
                        for path, mark in loader.self_aliases]  # fmt: skip
            raise ConfigError(problems)
        if node is not None and _too_big(node):
            raise ConfigError([Problem(file, 1, 1, "", _TOO_BIG)])
        bad = list(_surrogates(node)) if node is not None else []
        if bad:  # nothing downstream can encode them: stop here
            problems = [Problem(file, *mark, dotted(path), _SURROGATE) for path, mark in bad]
            raise ConfigError(problems)
        if node is not None:  # before constructing, which flattens merge keys into the nodes
            _walk(node, (), marks, key_marks, duplicates)
        data = loader.construct_document(node) if node is not None else None
    except yaml.reader.ReaderError as exc:  # libyaml checks characters as it goes
        raise ConfigError([_reader_error(file, text, exc)]) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"invalid YAML: {exc.problem or exc.context}"
        raise ConfigError([Problem(file, line, col, "", message)]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(file, 1, 1, "", f"invalid YAML: {exc}")]) from exc
    finally:
        loader.dispose()
    doc = Document(file, data, marks, key_marks)
    problems = [
        Problem(file, *mark, dotted(path), "duplicate key; each key may appear once")
        for path, mark in duplicates
    ]
    return doc, problems


_SURROGATE = (
    "a lone surrogate escape (\\ud800-\\udfff) is not a character and cannot be sent; "
    "write the character itself or a \\U escape"
)
_LONE = re.compile("[\ud800-\udfff]")


def _surrogates(root: yaml.Node) -> Iterator[tuple[PathKey, tuple[int, int]]]:
    """Where a scalar (a value or a key) holds a lone surrogate, from a ``"\\ud800"`` escape."""
    stack: list[tuple[yaml.Node, PathKey]] = [(root, ())]
    seen: set[int] = set()
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            if _LONE.search(node.value):
                yield path, (node.start_mark.line + 1, node.start_mark.column + 1)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack += [(key, path), (value, (*path, str(key.value)))]
        elif isinstance(node, yaml.SequenceNode):
            stack += [(item, (*path, str(n))) for n, item in enumerate(node.value)]


def _reader_error(file: str, text: str, exc: yaml.reader.ReaderError) -> Problem:
    offset = exc.position
    if yaml.__with_libyaml__:  # libyaml counts bytes of the UTF-8 text
        offset = len(text.encode("utf-8", "surrogatepass")[:offset].decode("utf-8", "ignore"))
    line_start = text.rfind("\n", 0, offset) + 1
    line, col = text.count("\n", 0, offset) + 1, offset - line_start + 1
    return Problem(file, line, col, "", f"invalid YAML: {_reader_problem(exc)}")


def _reader_problem(exc: yaml.reader.ReaderError) -> str:
    if exc.character == 0 or exc.character == b"\0":
        return "a NUL character is not allowed in YAML; remove it (write \\0 inside quotes)"
    char = exc.character if isinstance(exc.character, int) else ord(exc.character[:1] or b"?")
    return f"character #x{char:04x} is not allowed in YAML; remove it or escape it inside quotes"


def _walk(
    node: yaml.Node,
    path: PathKey,
    marks: dict[PathKey, tuple[int, int]],
    key_marks: dict[PathKey, tuple[int, int]],
    duplicates: list[tuple[PathKey, tuple[int, int]]],
) -> None:
    marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key_mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in seen:
                duplicates.append(((*path, key), key_mark))
            seen.add(key)
            key_marks.setdefault((*path, key), key_mark)
            _walk(value_node, (*path, key), marks, key_marks, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, str(index)), marks, key_marks, duplicates)


def parse_value(text: str) -> Any:
    """A command-line value parsed as YAML (``3`` -> 3, ``[a, b]`` -> list, ``ink`` -> "ink");
    ValueError for an alias that refers to itself (``&a [*a]``), data nested too deeply or
    bytes that are not UTF-8."""
    if _LONE.search(text):
        raise ValueError("the value is not valid UTF-8 text")
    try:
        return load_yaml(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def parse_assignments(items: Iterable[str], *, option: str = "--set") -> dict[str, Any]:
    """``["style=ink", "seed=3"]`` -> ``{"style": "ink", "seed": 3}`` (values parsed as YAML)."""
    result: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(f"{option} expects KEY=VALUE with KEY a name, got {item!r}")
        try:
            result[key] = parse_value(text)
        except ValueError as exc:
            raise UsageError(f"{option} {key}=...: {exc}") from exc
    return result
