"""rhflow: run RunningHub cloud workflows from version-controlled YAML pipeline files.

The stages, each a subpackage: ``pipeline`` (a YAML file -> a checked, frozen ``Pipeline``)
-> ``planning`` (-> a ``TaskGraph``) -> ``execute`` (submit, follow, retry, download) ->
``record`` (state store and manifest: what happened). ``api`` speaks the RunningHub API;
``emulator`` serves it on loopback; ``commands`` and ``cli`` are a thin layer over all of them.

    import rhflow
    manifest = rhflow.run("pipelines/sweep.yaml", emulator=True)

Names are imported on first use, so ``import rhflow`` stays cheap for the command line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rhflow.version import __version__

if TYPE_CHECKING:
    from rhflow.api.client import Client
    from rhflow.errors import (
        ApiError,
        ConfigError,
        PlanError,
        Problem,
        RhflowError,
        RunInterrupted,
        StateError,
        UsageError,
    )
    from rhflow.execute.runner import run
    from rhflow.model import PlannedTask, TaskGraph
    from rhflow.pipeline.loader import load_pipeline
    from rhflow.planning.planner import plan
    from rhflow.record.manifest import Manifest

_EXPORTS = {
    "ApiError": "rhflow.errors",
    "Client": "rhflow.api.client",
    "ConfigError": "rhflow.errors",
    "Manifest": "rhflow.record.manifest",
    "PlanError": "rhflow.errors",
    "PlannedTask": "rhflow.model",
    "Problem": "rhflow.errors",
    "RhflowError": "rhflow.errors",
    "RunInterrupted": "rhflow.errors",
    "StateError": "rhflow.errors",
    "TaskGraph": "rhflow.model",
    "UsageError": "rhflow.errors",
    "load_pipeline": "rhflow.pipeline.loader",
    "plan": "rhflow.planning.planner",
    "run": "rhflow.execute.runner",
}

__all__ = [
    "ApiError",
    "Client",
    "ConfigError",
    "Manifest",
    "PlanError",
    "PlannedTask",
    "Problem",
    "RhflowError",
    "RunInterrupted",
    "StateError",
    "TaskGraph",
    "UsageError",
    "__version__",
    "load_pipeline",
    "plan",
    "run",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rhflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
