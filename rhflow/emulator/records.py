"""The emulator's records: a task, what created it, and the files it yields.

Below every module that handles tasks (the board, outputs, failures, the endpoints), so that
they share these types without importing one another.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rhflow.emulator import events, images
from rhflow.emulator.workflows import Graph

Recipe = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class OutputFile:
    """One output file: its name under /files/<taskId>/, node, extension and how to make it.

    The recipe says how to make the bytes; ``renders.Renders`` makes them in a worker thread
    and caches them by recipe, so thousands of finished tasks cost little memory. Rendering is
    deterministic, so every GET is identical.
    """

    name: str
    node_id: str
    file_type: str
    kind: str
    recipe: Recipe

    def render(self) -> bytes:
        """The file's bytes, made now (blocking: call it off the event loop)."""
        return _materialise(self.recipe)


def _materialise(recipe: Recipe) -> bytes:
    kind, *args = recipe
    if kind == "image":
        width, height, key, prompt = args
        metadata = {"prompt": prompt} if prompt is not None else None
        return images.render_png(width, height, key, metadata)
    if kind == "video":
        return images.render_video(*args)
    return images.render_text(*args)


ACTIVE = ("QUEUED", "RUNNING")
_SEQUENCE = itertools.count()


def new_id() -> str:
    """A 19-digit snowflake-like id, unique within this process."""
    millis = int(time.time() * 1000) - 1_288_834_974_657
    return str((millis << 22) | (next(_SEQUENCE) & 0x3FFFFF)).rjust(19, "1")[-19:]


@dataclass(slots=True)
class TaskSpec:
    """What a create request asks for, once validated."""

    key: str
    graph: Graph
    prompt_tips: str
    workflow_id: str | None
    webapp_id: str | None
    webhook_url: str | None
    add_metadata: bool
    personal_queue: bool
    fingerprint: str


@dataclass(eq=False, slots=True)
class Task:
    """One task and everything the endpoints report about it."""

    task_id: str
    client_id: str
    spec: TaskSpec
    queue_seconds: float
    run_seconds: float
    failure: dict[str, Any] | None
    status: str = "QUEUED"
    waiting: bool = False
    cancelled: bool = False
    created: str = field(default_factory=lambda: datetime.now().isoformat(timespec="seconds"))
    started_at: float | None = None
    finished_at: float | None = None
    files: list[OutputFile] = field(default_factory=list)
    planned: list[OutputFile] = field(default_factory=list)
    history: list[events.Message] = field(default_factory=list)
    final: list[events.Message] = field(default_factory=list)
    subscribers: list[asyncio.Queue[events.Message | None]] = field(default_factory=list)
    handles: list[asyncio.TimerHandle] = field(default_factory=list)
    coins: int = 0
    money: float | None = None

    @property
    def terminal(self) -> bool:
        return self.status not in ACTIVE

    @property
    def money_text(self) -> str | None:
        """consumeMoney: a decimal string for an enterprise task, None for a consumer's."""
        return None if self.money is None else f"{self.money:.2f}"

    @property
    def cost_seconds(self) -> int:
        if self.started_at is None or self.finished_at is None:
            return 0
        return round(self.finished_at - self.started_at)
