"""ComfyUI-style WebSocket messages for one task, and when each is sent."""

from __future__ import annotations

import struct
import time
from typing import Any

from rhflow.emulator.workflows import Graph, is_link, topological_order

CACHED_CLASSES = frozenset({"CheckpointLoaderSimple", "CLIPTextEncode"})
MAX_PROGRESS_MESSAGES = 20

Message = dict[str, Any]


def message(kind: str, **data: Any) -> Message:
    return {"type": kind, "data": data}


def _now_ms() -> int:
    return int(time.time() * 1000)


def running_schedule(
    graph: Graph, task_id: str, seconds: float, fail_node: str | None
) -> list[tuple[float, Message]]:
    """(offset seconds, message) pairs spread over the first 90% of the running time.

    Stops at ``fail_node`` (its ``executing`` message included) for a task that will fail.
    """
    order = topological_order(graph)
    cached = [
        nid for nid in order if graph[nid]["class_type"] in CACHED_CLASSES and nid != fail_node
    ]
    steps: list[Message] = [
        message("execution_start", prompt_id=task_id, timestamp=_now_ms()),
        message("execution_cached", nodes=cached, prompt_id=task_id, timestamp=_now_ms()),
    ]
    for node_id in order:
        if node_id in cached:
            continue
        steps.append(message("executing", node=node_id, display_node=node_id, prompt_id=task_id))
        if node_id == fail_node:
            break
        steps.extend(_progress(graph, node_id, task_id))
    spacing = seconds * 0.9 / max(1, len(steps) - 1)
    return [(index * spacing, step) for index, step in enumerate(steps)]


def _progress(graph: Graph, node_id: str, task_id: str) -> list[Message]:
    inputs = graph[node_id]["inputs"]
    if "steps" not in inputs or is_link(inputs["steps"]):
        return []
    try:
        total = max(1, int(inputs["steps"]))
    except (TypeError, ValueError):
        return []
    count = min(total, MAX_PROGRESS_MESSAGES)
    values = sorted({max(1, round(total * (i + 1) / count)) for i in range(count)})
    return [
        message("progress", value=value, max=total, prompt_id=task_id, node=node_id)
        for value in values
    ]


def executed(node_id: str, task_id: str, files: list[tuple[str, str]]) -> Message:
    """The ``executed`` message of an output node; ``files`` are (name, kind) pairs."""
    key = "gifs" if any(kind == "video" for _, kind in files) else "images"
    if all(kind == "text" for _, kind in files):
        key = "text"
    output = {key: [{"filename": name, "subfolder": "", "type": "output"} for name, _ in files]}
    return message("executed", node=node_id, display_node=node_id, output=output, prompt_id=task_id)


def status(queue_remaining: int, client_id: str | None = None) -> Message:
    """ComfyUI's ``status`` frame: sent on connect (with the sid) and when its queue changes."""
    data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": queue_remaining}}}
    if client_id is not None:
        data["sid"] = client_id
    return {"type": "status", "data": data}


def _finished(task_id: str) -> list[Message]:
    """What ComfyUI's prompt worker (main.py) sends once a prompt is over, however it ended:
    ``task_done`` announces the emptied queue (``status``), then ``executing`` with node null."""
    return [status(0), message("executing", node=None, prompt_id=task_id)]


def success(task_id: str) -> list[Message]:
    return [
        message("execution_success", prompt_id=task_id, timestamp=_now_ms()),
        *_finished(task_id),
    ]


def failure(task_id: str, reason: dict[str, Any]) -> list[Message]:
    return [
        message(
            "execution_error",
            prompt_id=task_id,
            node_id=reason["node_id"],
            node_type=reason["node_name"],
            executed=[],
            exception_message=reason["exception_message"],
            exception_type=reason["exception_type"],
            traceback=reason["traceback_list"],
            current_inputs={},
            current_outputs={},
            timestamp=_now_ms(),
        ),
        *_finished(task_id),
    ]


def interrupted(task_id: str, node_id: str | None, node_type: str | None) -> list[Message]:
    return [
        message(
            "execution_interrupted",
            prompt_id=task_id,
            node_id=node_id,
            node_type=node_type,
            executed=[],
            timestamp=_now_ms(),
        ),
        *_finished(task_id),
    ]


#: ComfyUI's binary frames (server.py BinaryEventTypes): a 4-byte big-endian event type, then
#: for PREVIEW_IMAGE a 4-byte image type (1 JPEG, 2 PNG) and the image bytes.
PREVIEW_IMAGE = 1
PNG_IMAGE = 2


def preview_frame(png: bytes) -> bytes:
    """A binary ``PREVIEW_IMAGE`` frame carrying a PNG, as ComfyUI sends during sampling."""
    return struct.pack(">II", PREVIEW_IMAGE, PNG_IMAGE) + png
