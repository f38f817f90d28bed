"""How steps depend on each other: the order they run in, and stand-ins for upstream results.

Pure: used by the meaning checks to render a step's deferred templates before any run, and by
the planner to order steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rhflow.model import ID_LENGTH


def order_steps(graph: Mapping[str, Sequence[str]]) -> list[str]:
    """Steps upstream first, otherwise in the given order; ValueError("a -> b -> a") on a cycle."""
    done: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, stack: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*stack[stack.index(name) :], name]
            raise ValueError(" -> ".join(cycle))
        state[name] = 1
        for need in graph[name]:
            visit(need, [*stack, name])
        state[name] = 2
        done.append(name)

    for name in graph:
        visit(name, [])
    return done


def sample_needs(names: Sequence[str], params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Stand-ins for upstream results, used to check deferred templates before a run."""
    return {name: _SampleResult(params.get(name, {})) for name in names}


class _SampleOutputs(Sequence[str]):
    def __getitem__(self, index: Any) -> Any:
        return "<output>"

    def __len__(self) -> int:
        return 1


class _SampleResult:
    def __init__(self, params: Mapping[str, Any]) -> None:
        self.outputs = self.urls = self.files = _SampleOutputs()
        self.params = dict(params)
        self.task_id = "0" * ID_LENGTH
