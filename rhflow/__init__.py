"""rhflow: run RunningHub cloud workflows from version-controlled YAML pipeline files.

The stages, each a module: ``loader`` (YAML with positions) -> ``schema`` (JSON Schema) ->
``model`` (frozen values) -> ``planner`` (task graph) -> ``executor`` (submit, follow, download)
-> ``manifest`` (what happened). ``client`` speaks the RunningHub API; ``emulator`` serves it
on loopback.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
