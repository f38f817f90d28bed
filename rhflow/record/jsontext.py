"""Indented JSON text, as ``json.dumps(value, indent=2, ensure_ascii=False, default=str)``
writes it, byte for byte, at a fraction of the cost.

With ``indent`` set, the standard library leaves its C encoder for a pure-Python one, which
was the largest single cost of rewriting a manifest (each task's entry is encoded again as
its status and progress change). Here the structure is walked in Python but every string goes
through the C string encoder, and numbers through their own ``repr``, as the encoder does.

    indented({"a": [1, "x"]})   # '{\\n  "a": [\\n    1,\\n    "x"\\n  ]\\n}'
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["indented"]

_string: Any = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.encode_basestring


def indented(value: Any, indent: str = "") -> str:
    """``value`` as indented JSON text; ``indent`` is the indentation of the line it starts
    on (each line after the first gets it too)."""
    if isinstance(value, str):
        return str(_string(value))
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, dict):
        if not value:
            return "{}"
        inner = indent + "  "
        parts = []
        for key, item in value.items():
            if not isinstance(key, str):  # json's own rules for other keys
                return _standard(value, indent)
            parts.append(f"{inner}{_string(key)}: {indented(item, inner)}")
        return "{\n" + ",\n".join(parts) + "\n" + indent + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        inner = indent + "  "
        return (
            "[\n"
            + ",\n".join(inner + indented(item, inner) for item in value)
            + "\n"
            + indent
            + "]"
        )
    return indented(str(value), indent)  # default=str


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "Infinity"
    if value == float("-inf"):
        return "-Infinity"
    return float.__repr__(value)


def _standard(value: Any, indent: str) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return text.replace("\n", "\n" + indent)
