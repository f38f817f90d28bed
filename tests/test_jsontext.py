"""rhflow.record.jsontext writes what ``json.dumps(value, indent=2, ensure_ascii=False,
default=str)`` writes, byte for byte: manifests read by other programs do not change."""

from __future__ import annotations

import json
import random
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from rhflow.record.jsontext import indented


def standard(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


CASES = [
    {},
    [],
    "",
    0,
    -7,
    2**70,
    1.5,
    1e-300,
    -0.0,
    float("nan"),
    float("inf"),
    float("-inf"),
    True,
    None,
    'a "quoted" \\ line\nwith\ttabs, \u00e9, \u732b, \U0001f600 and \x00 \x1f',
    {"id": "07d46a21", "params": {"seed": 3, "subject": "猫"}, "outputs": [], "notes": ()},
    {"nested": [[], {}, [1, [2, {"x": None}]], ({"t": (1, 2)},)]},
    {"path": Path("/tmp/out.png"), "when": datetime(2026, 1, 2, 3, 4, 5)},
    {1: "int key", None: "null key", 2.5: "float key", False: "bool key"},
    {"inner": {3: "a non-string key deeper down"}},
]


@pytest.mark.parametrize("value", CASES, ids=range(len(CASES)))
def test_it_writes_what_json_dumps_writes(value: Any) -> None:
    assert indented(value) == standard(value)


def test_an_indented_start_indents_every_following_line() -> None:
    value = {"a": [1, {"b": "c"}], "d": {}}
    assert indented(value, "    ") == standard(value).replace("\n", "\n    ")


def test_random_structures_match() -> None:
    rand = random.Random(7)

    def make(depth: int) -> Any:
        kind = rand.randrange(8 if depth < 4 else 5)
        if kind == 0:
            return rand.choice(["", "x", "é\n", '"', "\\"]) * rand.randrange(3)
        if kind == 1:
            return rand.randrange(-(10**6), 10**6)
        if kind == 2:
            return rand.uniform(-1e6, 1e6)
        if kind == 3:
            return rand.choice([True, False, None])
        if kind == 4:
            return rand.random() * 10 ** rand.randrange(-20, 20)
        if kind == 5:
            return [make(depth + 1) for _ in range(rand.randrange(4))]
        if kind == 6:
            return tuple(make(depth + 1) for _ in range(rand.randrange(3)))
        return {f"k{i}{rand.choice('aé ')}": make(depth + 1) for i in range(rand.randrange(4))}

    for _ in range(500):
        value = make(0)
        assert indented(value) == standard(value)
