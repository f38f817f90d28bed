"""The failedReason of a task that fails: an injected error, a cancel."""

from __future__ import annotations

import json
from typing import Any

from rhflow.emulator.workflows import Graph, topological_order


def out_of_memory(graph: Graph) -> dict[str, Any]:
    order = topological_order(graph)
    node_id = next((n for n in order if graph[n]["class_type"] == "KSampler"), order[-1])
    return reason(
        node_id,
        graph[node_id]["class_type"],
        "torch.OutOfMemoryError",
        "Allocation on device would exceed allowed memory. (out of memory)",
    )


def cancelled_reason(node_id: str | None, graph: Graph) -> dict[str, Any]:
    name = graph[node_id]["class_type"] if node_id else ""
    return reason(
        node_id or "",
        name,
        "InterruptedError",
        "The task was cancelled by the user (/task/openapi/cancel).",
    )


def reason(node_id: str, node_name: str, exc_type: str, text: str) -> dict[str, Any]:
    """A failedReason in the shape of the API document's 805 example."""
    lines = [
        '  File "/workspace/ComfyUI/execution.py", line 496, in execute\n'
        "    output_data, output_ui, has_subgraph = get_output_data(obj, input_data_all)\n",
        f'  File "/workspace/ComfyUI/nodes.py", line 1, in {node_name or "execute"}\n'
        f"    raise {exc_type.rsplit('.', 1)[-1]}\n",
    ]
    return {
        "current_outputs": "{}",
        "exception_type": exc_type,
        "node_name": node_name,
        "current_inputs": "{}",
        "traceback_list": lines,
        "traceback": json.dumps(lines),
        "node_id": node_id,
        "exception_message": text,
    }
