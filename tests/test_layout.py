"""The package's layout: stages depend on the stages before them, never the other way round.

Every import in ``rhflow/`` is read with ``ast`` (those inside functions and under
``TYPE_CHECKING`` too), so a cycle or a backward import fails here, naming the pair, before it
can tangle the stages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rhflow"

#: Each layer and the layers it may import from (its own always allowed). ``front`` (the
#: package's public API, the command line and its commands) may import anything.
BASE = {"base"}
ALLOWED = {
    "base": BASE,
    "api": BASE,
    "record": BASE,
    "pipeline": BASE,
    "planning": BASE | {"pipeline"},
    "progress": BASE | {"record"},
    # ``run(..., emulator=True)`` starts an in-process emulator; the emulator imports no stage.
    "execute": BASE | {"api", "record", "pipeline", "planning", "progress", "emulator"},
    "emulator": BASE,
    # Pictures and pages of finished runs: read manifests, never run anything.
    "view": BASE | {"record"},
}
_BASE_MODULES = {"rhflow.errors", "rhflow.model", "rhflow.atomic", "rhflow.version"}
_FRONT_MODULES = {"rhflow", "rhflow.__main__", "rhflow.cli", "rhflow.client"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> str:
    if module in _BASE_MODULES:
        return "base"
    if module in _FRONT_MODULES or module.startswith("rhflow.commands"):
        return "front"
    if module == "rhflow.progress":
        return "progress"
    return module.split(".")[1]


def imports(module: str) -> set[str]:
    """The rhflow modules ``module`` imports, anywhere in its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: imports(module) for module in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt, [*stack, nxt])):
                return cycle
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node, [node])):
            return cycle
    return None


def test_no_import_cycle_in_the_package() -> None:
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer(m) != "front"))
def test_imports_point_down_the_stages(module: str) -> None:
    allowed = ALLOWED[layer(module)] | {layer(module)}
    wrong = sorted(f"{module} -> {name}" for name in GRAPH[module] if layer(name) not in allowed)
    assert not wrong, "imports against the stages: " + ", ".join(wrong)


def test_the_checks_catch_a_cycle_and_a_backward_import() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer("rhflow.execute.executor") not in ALLOWED["record"]


def test_few_modules_stand_at_the_top_and_every_stage_says_what_it_does() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 12, top
    for package in (p for p in PACKAGE.iterdir() if (p / "__init__.py").exists()):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text()))
        assert doc and len(doc) > 40, f"{package.name}/__init__.py needs a docstring"
