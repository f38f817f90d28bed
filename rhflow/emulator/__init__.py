"""A RunningHub API emulator on loopback, for tests, examples, benchmarks and trying rhflow.

It serves the v1 endpoints (``/task/openapi/*``, ``/uc/openapi/accountStatus``, uploads,
webhooks, AI apps) and the v2 query/run/upload endpoints with the documented envelopes and
error codes, runs tasks on a clock, writes real output files, streams ComfyUI-style WebSocket
messages and can inject faults. ``GET /emulator/stats`` reports what happened.

    from rhflow.emulator import Emulator, EmulatorConfig
    with Emulator(EmulatorConfig(task_seconds=(0.2, 0.2))) as emu:
        print(emu.url)
"""

from __future__ import annotations

from rhflow.emulator.config import EmulatorConfig, parse_seconds
from rhflow.emulator.server import Emulator, serve
from rhflow.emulator.workflows import (
    IMAGE_TO_IMAGE,
    TEXT_APP,
    TEXT_TO_IMAGE,
    TWO_OUTPUTS,
    VIDEO,
)

__all__ = [
    "IMAGE_TO_IMAGE",
    "TEXT_APP",
    "TEXT_TO_IMAGE",
    "TWO_OUTPUTS",
    "VIDEO",
    "Emulator",
    "EmulatorConfig",
    "parse_seconds",
    "serve",
]
