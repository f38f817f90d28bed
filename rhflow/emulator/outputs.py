"""The files a finished task yields, and how /task/openapi/outputs reports a task."""

from __future__ import annotations

import json
import re
from typing import Any

from rhflow.emulator import images
from rhflow.emulator.records import OutputFile, Task
from rhflow.emulator.workflows import (
    IMAGE_OUTPUTS,
    VIDEO_OUTPUTS,
    Graph,
    is_link,
    output_nodes,
    upstream,
)
from rhflow.errors import API_CODE_NAMES

BUILTIN_INPUTS = {"example.png": images.render_png(64, 64, images.digest("example.png"))}
DEFAULT_SIDE = 512


def input_exists(name: str, uploads: dict[str, bytes]) -> bool:
    return name.startswith(("http://", "https://")) or _input_bytes(name, uploads) is not None


def _input_bytes(name: str, uploads: dict[str, bytes]) -> bytes | None:
    return BUILTIN_INPUTS.get(name) or uploads.get(name) or uploads.get(f"api/{name}")


def render(task: Task, uploads: dict[str, bytes], seed: int) -> list[OutputFile]:
    """Every output file of ``task``: a function of its effective graph and ``seed`` only."""
    graph = task.spec.graph
    key = images.digest(json.dumps(graph, sort_keys=True), seed)
    prompt = json.dumps(graph) if task.spec.add_metadata else None
    files: list[OutputFile] = []
    for node_id in output_nodes(graph):
        files.extend(_node_files(graph, node_id, images.digest(key, node_id), prompt, uploads))
    return files


def _node_files(
    graph: Graph, node_id: str, key: bytes, prompt: str | None, uploads: dict[str, bytes]
) -> list[OutputFile]:
    node = graph[node_id]
    prefix = _prefix(node["inputs"].get("filename_prefix"))
    if node["class_type"] in IMAGE_OUTPUTS:
        width, height, count = _image_shape(graph, node_id, uploads)
        return [
            OutputFile(
                f"{prefix}_{index + 1:05d}_.png",
                node_id,
                "png",
                "image",
                ("image", width, height, images.digest(key, index), prompt),
            )
            for index in range(count)
        ]
    if node["class_type"] in VIDEO_OUTPUTS:
        width, height, frames = _image_shape(graph, node_id, uploads)
        recipe = ("video", frames, width, height, key)
        return [OutputFile(f"{prefix}_00001.mp4", node_id, "mp4", "video", recipe)]
    text = node["inputs"].get("text", "")
    recipe_text = ("text", "" if is_link(text) else str(text), key)
    return [OutputFile(f"{prefix}_00001_.txt", node_id, "txt", "text", recipe_text)]


def by_node(files: list[OutputFile]) -> dict[str, list[tuple[str, str]]]:
    grouped: dict[str, list[tuple[str, str]]] = {}
    for item in files:
        grouped.setdefault(item.node_id, []).append((item.name, item.kind))
    return grouped


def _prefix(value: Any) -> str:
    text = value if isinstance(value, str) and value else "ComfyUI"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[:64]


def _image_shape(graph: Graph, node_id: str, uploads: dict[str, bytes]) -> tuple[int, int, int]:
    latent = upstream(graph, node_id, frozenset({"EmptyLatentImage"}))
    if latent is not None:
        inputs = latent["inputs"]
        return (
            _int(inputs.get("width")),
            _int(inputs.get("height")),
            max(1, min(_int(inputs.get("batch_size"), 1), 64)),
        )
    loader = upstream(graph, node_id, frozenset({"LoadImage"}))
    if loader is not None:
        data = _input_bytes(str(loader["inputs"].get("image", "")), uploads) or b""
        width, height = images.png_size(data) or (DEFAULT_SIDE, DEFAULT_SIDE)
        return width, height, 1
    return DEFAULT_SIDE, DEFAULT_SIDE, 1


def _int(value: Any, default: int = DEFAULT_SIDE) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


# -- how the API reports a task -----------------------------------------------------------


#: The 1000-1505 codes' identifiers, as the API document's table (section 11.1) gives them.
DOCUMENT_NAMES = {
    1000: "Unknown error, please retry or contact support",
    1001: "Invalid URL, please check your link",
    1002: "Invalid API Key, please check your credentials",
    1003: "Rate limit exceeded, please slow down requests",
    1004: "Task not found, please check the task ID",
    1005: "Internal server error, please retry later",
    1006: "Task execution timed out, please retry",
    1007: "Invalid parameters, please check your input",
    1008: "File size limit exceeded",
    1009: "HTTP method not supported, please check documentation",
    1010: "Service unavailable, please retry later",
    1011: "System is currently busy, please retry later",
    1012: "Service response exception, please contact support or retry later",
    1013: "File processing failed, please check the URL or retry",
    1014: "Access Denied: Standard Model API is restricted to Enterprise-Shared API Keys only.",
    1015: "Generation failed, please try again.",
    1101: "Node info error",
    1501: "Content verification failed, please modify your prompt or images",
    1504: "Model timed out, please retry later",
    1505: "Photorealistic real people are prohibited, please modify your prompt or image",
}


def code_name(code: int) -> str:
    """The identifier the service sends as ``msg`` / ``errorMessage`` for ``code``."""
    return DOCUMENT_NAMES.get(code) or API_CODE_NAMES.get(code, "")


def envelope(code: int, data: Any = None, msg: str | None = None) -> dict[str, Any]:
    return {"code": code, "msg": msg if msg is not None else code_name(code), "data": data}


def failed_reason(task: Task, traceback_style: str) -> dict[str, Any]:
    reason = dict(task.failure or {})
    lines = reason.pop("traceback_list", [])
    reason["traceback"] = lines if traceback_style == "list" else json.dumps(lines)
    return reason


def file_items(task: Task, base_url: str) -> list[dict[str, Any]]:
    return [
        {
            "fileUrl": f"{base_url}/files/{task.task_id}/{item.name}",
            "fileType": item.file_type,
            "taskCostTime": str(task.cost_seconds),
            "nodeId": item.node_id,
            "consumeCoins": str(task.coins),
            "consumeMoney": task.money_text,
            "thirdPartyConsumeMoney": None,
        }
        for item in task.files
    ]


def outputs_response(
    task: Task, base_url: str, ws_url: str | None, style: str, traceback_style: str
) -> dict[str, Any]:
    """The /task/openapi/outputs answer for ``task`` (also the webhook's eventData)."""
    if task.status == "SUCCESS":
        return envelope(0, file_items(task, base_url), "success")
    if style == "plain":
        if task.status == "FAILED":
            return envelope(500, None, "任务执行失败")
        return envelope(0, None, "任务正在排队中" if task.status == "QUEUED" else "任务正在运行中")
    if task.status == "QUEUED":
        return envelope(813)
    if task.status == "RUNNING":
        return envelope(804, {"netWssUrl": ws_url})
    return envelope(805, {"failedReason": failed_reason(task, traceback_style)})
