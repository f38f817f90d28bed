"""Built-in API-format workflows and AI apps, ``--workflows DIR`` loading, and node lookups."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rhflow.errors import UsageError

Graph = dict[str, dict[str, Any]]

TEXT_TO_IMAGE = "1904136902449209346"
IMAGE_TO_IMAGE = "1904136902449209347"
TWO_OUTPUTS = "1904136902449209348"
VIDEO = "1904136902449209349"
TEXT_APP = "1877265245566922753"

IMAGE_OUTPUTS = frozenset({"SaveImage", "PreviewImage"})
VIDEO_OUTPUTS = frozenset({"VHS_VideoCombine", "SaveVideo", "SaveAnimatedWEBP"})
TEXT_OUTPUTS = frozenset({"SaveText", "ShowText|pysssss", "RH_SaveText"})
OUTPUT_CLASSES = IMAGE_OUTPUTS | VIDEO_OUTPUTS | TEXT_OUTPUTS
#: class_type -> the input that names a file in ComfyUI's input folder.
LOADER_FIELDS = {
    "LoadImage": "image",
    "LoadAudio": "audio",
    "LoadVideo": "video",
    "VHS_LoadVideo": "video",
}


def _node(class_type: str, title: str, **inputs: Any) -> dict[str, Any]:
    return {"inputs": inputs, "class_type": class_type, "_meta": {"title": title}}


def _sampler_chain(latent: list[Any], denoise: float, frames: int = 1) -> Graph:
    """Nodes 3, 4, 6, 7, 8: ComfyUI's default sampler, checkpoint, prompts and decoder."""
    return {
        "3": _node(
            "KSampler",
            "KSampler",
            seed=156680208700286,
            steps=20,
            cfg=8,
            sampler_name="euler",
            scheduler="normal",
            denoise=denoise,
            model=["4", 0],
            positive=["6", 0],
            negative=["7", 0],
            latent_image=latent,
        ),
        "4": _node(
            "CheckpointLoaderSimple", "Load Checkpoint", ckpt_name="v1-5-pruned-emaonly.safetensors"
        ),
        "6": _node(
            "CLIPTextEncode",
            "CLIP Text Encode (Prompt)",
            text="beautiful scenery nature glass bottle landscape, , purple galaxy bottle,",
            clip=["4", 1],
        ),
        "7": _node(
            "CLIPTextEncode", "CLIP Text Encode (Prompt)", text="text, watermark", clip=["4", 1]
        ),
        "8": _node("VAEDecode", "VAE Decode", samples=["3", 0], vae=["4", 2]),
    }


def _text_to_image() -> Graph:
    graph = _sampler_chain(["5", 0], 1)
    graph["5"] = _node(
        "EmptyLatentImage", "Empty Latent Image", width=512, height=512, batch_size=1
    )
    graph["9"] = _node("SaveImage", "Save Image", filename_prefix="ComfyUI", images=["8", 0])
    return graph


def _image_to_image() -> Graph:
    graph = _sampler_chain(["10", 0], 0.75)
    graph["2"] = _node("LoadImage", "Load Image", image="example.png", upload="image")
    graph["10"] = _node("VAEEncode", "VAE Encode", pixels=["2", 0], vae=["4", 2])
    graph["9"] = _node("SaveImage", "Save Image", filename_prefix="img2img", images=["8", 0])
    return graph


def _two_outputs() -> Graph:
    graph = _text_to_image()
    graph["10"] = _node(
        "SaveText", "Save Text", text="a caption of the picture", filename_prefix="caption"
    )
    return graph


def _video() -> Graph:
    graph = _text_to_image()
    graph["5"]["inputs"].update(width=256, height=256, batch_size=8)
    del graph["9"]
    graph["9"] = _node(
        "VHS_VideoCombine",
        "Video Combine",
        frame_rate=8,
        loop_count=0,
        filename_prefix="AnimateDiff",
        format="video/h264-mp4",
        pingpong=False,
        save_output=True,
        images=["8", 0],
    )
    return graph


BUILTIN_WORKFLOWS: dict[str, Graph] = {
    TEXT_TO_IMAGE: _text_to_image(),
    IMAGE_TO_IMAGE: _image_to_image(),
    TWO_OUTPUTS: _two_outputs(),
    VIDEO: _video(),
}


@dataclass(frozen=True, slots=True)
class AppField:
    """One editable field of an AI app, as apiCallDemo lists it."""

    node_id: str
    field_name: str
    field_type: str
    description: str


@dataclass(frozen=True, slots=True)
class App:
    """A built-in AI app (webapp): a name, the workflow behind it and its editable fields."""

    webapp_id: str
    name: str
    workflow_id: str
    fields: tuple[AppField, ...]


BUILTIN_APPS: dict[str, App] = {
    TEXT_APP: App(
        TEXT_APP,
        "Text to image (emulator)",
        TEXT_TO_IMAGE,
        (
            AppField("6", "text", "STRING", "positive prompt"),
            AppField("7", "text", "STRING", "negative prompt"),
            AppField("3", "seed", "INT", "seed"),
            AppField("5", "width", "INT", "width"),
            AppField("5", "height", "INT", "height"),
        ),
    ),
}


def demo_fields(app: App, graph: Graph) -> list[dict[str, Any]]:
    """The app's nodeInfoList as apiCallDemo shows it (current values as strings)."""
    return [
        {
            "nodeId": f.node_id,
            "nodeName": graph[f.node_id]["class_type"],
            "fieldName": f.field_name,
            "fieldValue": str(graph[f.node_id]["inputs"][f.field_name]),
            "fieldData": None,
            "fieldType": f.field_type,
            "description": f.description,
            "descriptionEn": f.description,
        }
        for f in app.fields
    ]


def loader_values(workflows: dict[str, Graph]) -> frozenset[str]:
    """Every file name the loader nodes of ``workflows`` hold: files the server has."""
    names = set()
    for graph in workflows.values():
        for node in graph.values():
            value = node.get("inputs", {}).get(LOADER_FIELDS.get(node["class_type"], ""))
            if isinstance(value, str):
                names.add(value)
    return frozenset(names)


def load_workflows(directory: str | None) -> dict[str, Graph]:
    """The built-in workflows plus every ``<workflowId>.json`` in ``directory``."""
    workflows = copy.deepcopy(BUILTIN_WORKFLOWS)
    if directory is None:
        return workflows
    folder = Path(directory)
    if not folder.is_dir():
        raise UsageError(f"--workflows {directory}: not a folder of <workflowId>.json files")
    for path in sorted(folder.glob("*.json")):
        workflows[path.stem] = _read_workflow(path)
    return workflows


def folder_signature(directory: str | None) -> tuple[tuple[str, int, int], ...]:
    """Name, size and mtime of each ``*.json`` in ``directory``: what tells a rewrite."""
    if directory is None:
        return ()
    found = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            info = path.stat()
        except OSError:
            continue
        found.append((path.name, info.st_size, info.st_mtime_ns))
    return tuple(found)


def _read_workflow(path: Path) -> Graph:
    try:
        graph = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"--workflows: cannot read {path}: {exc}") from exc
    problem = graph_problem(graph)
    if problem:
        raise UsageError(f"--workflows: {path} is not an API-format workflow: {problem}")
    return dict(graph)


def graph_problem(graph: Any) -> str:
    """Why ``graph`` is not an API-format workflow ({id: {class_type, inputs}}), or ''."""
    if not isinstance(graph, dict) or not graph:
        return "expected a non-empty JSON object of nodes"
    for node_id, node in graph.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            return f"node {node_id} has no class_type"
        if not isinstance(node.get("inputs", {}), dict):
            return f"node {node_id}: inputs must be an object"
    return ""


def is_link(value: Any) -> bool:
    """ComfyUI links are ``[source_node_id, output_index]``."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], (str, int))
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def output_nodes(graph: Graph) -> list[str]:
    """Ids of the nodes that write files, in id order."""
    return sorted(
        (nid for nid, node in graph.items() if node["class_type"] in OUTPUT_CLASSES), key=_id_key
    )


def topological_order(graph: Graph) -> list[str]:
    """Node ids, every node after the nodes it links from (ties by id)."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(node_id: str) -> None:
        if node_id in seen or node_id not in graph:
            return
        seen.add(node_id)
        for value in graph[node_id].get("inputs", {}).values():
            if is_link(value):
                visit(str(value[0]))
        order.append(node_id)

    for node_id in sorted(graph, key=_id_key):
        visit(node_id)
    return order


def upstream(graph: Graph, node_id: str, class_types: frozenset[str]) -> dict[str, Any] | None:
    """The nearest node of one of ``class_types`` feeding ``node_id`` (breadth first)."""
    queue, seen = [node_id], {node_id}
    while queue:
        current = graph.get(queue.pop(0))
        if current is None:
            continue
        for value in current.get("inputs", {}).values():
            if is_link(value) and str(value[0]) not in seen:
                source = str(value[0])
                seen.add(source)
                if graph.get(source, {}).get("class_type") in class_types:
                    return graph[source]
                queue.append(source)
    return None


def _id_key(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 62, node_id)
