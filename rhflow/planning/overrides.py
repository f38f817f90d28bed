"""The overrides of one step, made into ``nodeInfoList`` entries task after task, with what does
not vary across the sweep done once: a fixed value's entry and its canonical JSON are built once
and shared by every task; a template is compiled once, and its rendering is remembered by the
values of the parameters it reads (``"a {{ subject }}, {{ vars.style }}"`` renders once per
subject, not once per task). Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from rhflow.errors import PlanError
from rhflow.model import Override
from rhflow.pipeline.render import RenderError, Template, compile_template
from rhflow.pipeline.sandbox import weight

#: Names that are the same for every task of a step (``vars``, ``step``): not part of a memo key.
_FIXED_NAMES = frozenset({"vars", "step"})
#: Renderings remembered per template; past it, new ones are rendered each time.
MEMO_SIZE = 1 << 16
#: After this many renderings, a memo that found fewer than one in two is dropped.
_MEMO_TRIAL = 1024
_MISSING = object()
#: What marks a template whose rendering changes from call to call.
_DRAWS = ("random", "lipsum")
#: Values one rendering may hand to many tasks (none of them can be changed in place).
_SHARED = frozenset({str, int, float, bool, type(None)})

_encode_string: Callable[[str], str] = json.encoder.encode_basestring  # ensure_ascii=False
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
_INF = float("inf")
_C_MAKE_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)  # None without the C part


def canonical(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, non-ASCII as is (what task ids hash)."""
    return encode(value, _ENCODER)


def encode(value: Any, encoder: json.JSONEncoder) -> str:
    """``encoder.encode(value)``, calling the C encoder directly: ``JSONEncoder.encode`` spends
    more setting it up, call after call, than it takes to encode a small value. The same text
    (the C encoder is what ``encode`` runs), circular references refused the same way."""
    make = _C_MAKE_ENCODER
    if make is None or type(value) is str or encoder.indent is not None:
        return encoder.encode(value)
    run = make(
        {} if encoder.check_circular else None,
        encoder.default,
        _encode_string if not encoder.ensure_ascii else json.encoder.encode_basestring_ascii,
        None,
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )
    return "".join(run(value, 0))


def canonical_value(value: Any) -> str:
    """``canonical(value)``, written directly for the scalars most values are."""
    kind = type(value)
    if kind is str:
        return _encode_string(value)
    if kind is int:
        return int.__repr__(value)
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    if kind is float and value == value and value not in (_INF, -_INF):
        return float.__repr__(value)
    return canonical(value)


def canonical_params(params: Mapping[str, Any]) -> str:
    """``canonical(params)``: a task's parameters, as its id hashes them."""
    return canonical(params if type(params) is dict else dict(params))


class Rendered:
    """A template override's value for one task: the value, its size (counted against the
    pipeline's ``total`` limit), its entry's canonical JSON and the entry itself."""

    __slots__ = ("entry", "size", "text", "value")

    def __init__(self, value: Any, size: int, text: str, entry: dict[str, Any]) -> None:
        self.value = value
        self.size = size
        self.text = text
        self.entry = entry


class TemplateField:
    """One override whose value is a template, rendered per task (or found in the memo)."""

    __slots__ = ("_head", "_hits", "_memo", "_names", "_tail", "_tries", "override", "template")

    def __init__(self, override: Override) -> None:
        self.override = override
        self.template: Template = compile_template(override.value)
        self._head = f'{{"fieldName":{canonical(override.field)},"fieldValue":'
        self._tail = f',"nodeId":{canonical(override.node_id)}}}'
        names = self.template.names
        self._names = tuple(sorted(names - _FIXED_NAMES))
        # a template reading the whole of ``params`` varies with every parameter; one drawing
        # at random (``| random``, ``lipsum()``) draws again for each task
        memo = "params" not in names and not any(word in override.value for word in _DRAWS)
        self._memo: dict[Any, Rendered] | None = {} if memo else None
        self._hits = 0
        self._tries = 0

    def render(self, context: Mapping[str, Any]) -> Rendered:
        memo = self._memo
        if memo is None:
            return self._render(context)
        key = self._key(context)
        if key is None:
            return self._render(context)
        found = memo.get(key)
        self._tries += 1
        if found is not None:
            self._hits += 1
            return found
        if self._tries == _MEMO_TRIAL and self._hits * 2 < self._tries:
            self._memo = None  # the values it reads differ from task to task
        rendered = self._render(context)
        if len(memo) < MEMO_SIZE and type(rendered.value) in _SHARED:
            memo[key] = rendered
        return rendered

    def _key(self, context: Mapping[str, Any]) -> Any:
        """The values the template reads from ``context`` (the value itself for one name);
        None unless each is a string or an integer (a key that cannot tell ``1`` from ``True``
        or ``1.0`` would mix them up)."""
        names = self._names
        if len(names) == 1:
            value = context.get(names[0], _MISSING)
            kind = type(value)
            return value if kind is str or kind is int or value is _MISSING else None
        key = tuple([context.get(name, _MISSING) for name in names])
        for value in key:
            kind = type(value)
            if kind is not str and kind is not int and value is not _MISSING:
                return None
        return key

    def _render(self, context: Mapping[str, Any]) -> Rendered:
        override = self.override
        try:
            value = self.template.render(context)
        except RenderError as exc:
            raise PlanError(f"{override.where}: {exc}") from exc
        entry = {"nodeId": override.node_id, "fieldName": override.field, "fieldValue": value}
        text = f"{self._head}{canonical_value(value)}{self._tail}"
        return Rendered(value, weight(value), text, entry)
