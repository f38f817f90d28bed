"""Build the graph a task will run: apply nodeInfoList, coerce values, validate like ComfyUI."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rhflow.emulator.workflows import LOADER_FIELDS, Graph, graph_problem, is_link, output_nodes

#: Fields ComfyUI declares FLOAT although workflows often store them as whole numbers.
FLOAT_FIELDS = frozenset({"cfg", "denoise", "strength", "guidance", "scale_by", "frame_rate"})


SAMPLERS = (
    "euler",
    "euler_cfg_pp",
    "euler_ancestral",
    "euler_ancestral_cfg_pp",
    "heun",
    "heunpp2",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde",
    "dpmpp_sde_gpu",
    "dpmpp_2m",
    "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu",
    "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu",
    "ddpm",
    "lcm",
    "ipndm",
    "ipndm_v",
    "deis",
    "res_multistep",
    "res_multistep_cfg_pp",
    "res_multistep_ancestral",
    "gradient_estimation",
    "er_sde",
    "seeds_2",
    "seeds_3",
    "uni_pc",
    "uni_pc_bh2",
    "ddim",
)
SCHEDULERS = (
    "simple",
    "sgm_uniform",
    "karras",
    "exponential",
    "ddim_uniform",
    "beta",
    "normal",
    "linear_quadratic",
    "kl_optimal",
)
#: (class_type, field) -> the values ComfyUI accepts (anything else is value_not_in_list).
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("KSampler", "sampler_name"): SAMPLERS,
    ("KSampler", "scheduler"): SCHEDULERS,
    ("KSamplerAdvanced", "sampler_name"): SAMPLERS,
    ("KSamplerAdvanced", "scheduler"): SCHEDULERS,
}


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a create request is refused: a v1 code, a message and optional promptTips."""

    code: int
    message: str
    prompt_tips: str | None = None


@dataclass(slots=True)
class Prepared:
    """The effective graph of a task and its promptTips string."""

    graph: Graph
    prompt_tips: str
    outputs: list[str] = field(default_factory=list)


def prepare(stored: Graph, workflow_json: Any, node_info: Any) -> Prepared | Rejection:
    """Effective graph from the stored one (or the ``workflow`` string) plus ``nodeInfoList``."""
    graph = copy.deepcopy(stored)
    if workflow_json not in (None, ""):
        parsed = _parse_workflow(workflow_json)
        if isinstance(parsed, Rejection):
            return parsed
        graph = parsed
    applied = _apply_node_info(graph, node_info)
    if applied is not None:
        return applied
    errors = validate(graph, stored)
    outputs = output_nodes(graph)
    if not outputs:
        return _invalid({}, "prompt_no_outputs", "Prompt has no outputs")
    if errors:
        return _invalid(
            errors, "prompt_outputs_failed_validation", "Prompt outputs failed validation"
        )
    return Prepared(graph, _tips(True, None, outputs, {}), outputs)


def check_files(graph: Graph, exists: Callable[[str], bool]) -> Rejection | None:
    """433 when a loader names a file the server does not have, as ComfyUI validates a prompt
    before queueing it (``LoadImage.VALIDATE_INPUTS``: "Invalid image file: NAME")."""
    errors: dict[str, Any] = {}
    for node_id, node in graph.items():
        name = LOADER_FIELDS.get(node["class_type"], "")
        value = node["inputs"].get(name) if name else None
        if not isinstance(value, str) or exists(value):
            continue
        details = f"{name} - Invalid {name} file: {value}"
        error = _error(
            "custom_validation_failed", "Custom validation failed for node", details, name, value
        )
        errors[node_id] = {
            "errors": [error],
            "dependent_outputs": output_nodes(graph),
            "class_type": node["class_type"],
        }
    if not errors:
        return None
    return _invalid(errors, "prompt_outputs_failed_validation", "Prompt outputs failed validation")


def _parse_workflow(text: Any) -> Graph | Rejection:
    if not isinstance(text, str):
        return Rejection(301, "workflow must be a JSON string of an API-format workflow")
    try:
        graph = json.loads(text)
    except json.JSONDecodeError as exc:
        return Rejection(301, f"workflow is not valid JSON: {exc}")
    problem = graph_problem(graph)
    if problem:
        return Rejection(301, f"workflow is not an API-format workflow: {problem}")
    for node in graph.values():
        node.setdefault("inputs", {})
    return {str(key): value for key, value in graph.items()}


def _apply_node_info(graph: Graph, node_info: Any) -> Rejection | None:
    if node_info is None:
        return None
    if not isinstance(node_info, list):
        return Rejection(301, "nodeInfoList must be a list of {nodeId, fieldName, fieldValue}")
    for index, entry in enumerate(node_info):
        if not isinstance(entry, dict) or "nodeId" not in entry or "fieldName" not in entry:
            return Rejection(301, f"nodeInfoList[{index}] needs nodeId and fieldName")
        node_id, name = str(entry["nodeId"]), str(entry["fieldName"])
        node = graph.get(node_id)
        if node is None:
            nodes = ", ".join(sorted(graph))
            return Rejection(
                803, f"nodeInfoList[{index}]: the workflow has no node {node_id!r} (nodes: {nodes})"
            )
        if name not in node["inputs"]:
            fields = ", ".join(sorted(node["inputs"]))
            return Rejection(
                803,
                f"nodeInfoList[{index}]: node {node_id} ({node['class_type']}) "
                f"has no field {name!r} (fields: {fields})",
            )
        node["inputs"][name] = entry.get("fieldValue")
    return None


def validate(graph: Graph, stored: Graph) -> dict[str, Any]:
    """ComfyUI-style node_errors: dangling links, wrong types, values not in a list."""
    errors: dict[str, Any] = {}
    for node_id, node in graph.items():
        like = stored.get(node_id, {}).get("inputs", {})
        found = [
            problem
            for name in list(node["inputs"])
            if (problem := _check_input(graph, node, name, like.get(name))) is not None
        ]
        if found:
            errors[node_id] = {
                "errors": found,
                "dependent_outputs": output_nodes(graph),
                "class_type": node["class_type"],
            }
    return errors


def _check_input(graph: Graph, node: dict[str, Any], name: str, like: Any) -> dict[str, Any] | None:
    """The error for one input, or None after storing its converted value."""
    value = _as_link(node["inputs"][name]) if is_link(like) else node["inputs"][name]
    node["inputs"][name] = value
    if is_link(value):
        if str(value[0]) in graph:
            return None
        details = f"{name}: links to node {value[0]}, which does not exist"
        return _error(
            "exception_during_inner_validation",
            "Exception when validating inner node",
            details,
            name,
            value,
        )
    if name in FLOAT_FIELDS and isinstance(like, int) and not isinstance(like, bool):
        like = float(like)
    coerced = coerce(value, like)
    if isinstance(coerced, _Bad):
        message = f"Failed to convert an input value to a {coerced.kind} value"
        return _error(
            "invalid_input_type", message, f"{name}, {value}, {coerced.reason}", name, value
        )
    choices = CHOICES.get((node["class_type"], name))
    if choices is not None and coerced not in choices:
        details = f"{name}: '{coerced}' not in {list(choices)}"
        return _error("value_not_in_list", "Value not in list", details, name, value)
    node["inputs"][name] = coerced
    return None


def _as_link(value: Any) -> Any:
    """A link sent as the string '["4", 0]' (clients that stringify every field) is a link."""
    if isinstance(value, str) and value.startswith("["):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return value
        return parsed if is_link(parsed) else value
    return value


@dataclass(frozen=True, slots=True)
class _Bad:
    kind: str
    reason: str


def coerce(value: Any, like: Any) -> Any:
    """``value`` converted to the type of the stored ``like`` value, as ComfyUI converts."""
    if isinstance(like, bool):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        return _Bad("BOOLEAN", f"{value!r} is not true or false")
    if isinstance(like, int):
        try:
            return int(value) if not isinstance(value, bool) else _Bad("INT", "bool given")
        except (TypeError, ValueError) as exc:
            return _Bad("INT", str(exc))
    if isinstance(like, float):
        try:
            return float(value)
        except (TypeError, ValueError) as exc:
            return _Bad("FLOAT", str(exc))
    if isinstance(like, str) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def _error(kind: str, message: str, details: str, name: str, value: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "message": message,
        "details": details,
        "extra_info": {"input_name": name, "received_value": value},
    }


def _invalid(errors: dict[str, Any], kind: str, message: str) -> Rejection:
    error = {"type": kind, "message": message, "details": "", "extra_info": {}}
    tips = _tips(False, error, [], errors)
    detail = "; ".join(
        f"node {nid} ({body['class_type']}): {e['message']}: {e['details']}"
        for nid, body in errors.items()
        for e in body["errors"]
    )
    return Rejection(433, f"{message}: {detail}" if detail else message, tips)


def _tips(result: bool, error: Any, outputs: list[str], node_errors: dict[str, Any]) -> str:
    return json.dumps(
        {
            "result": result,
            "error": error,
            "outputs_to_execute": outputs,
            "node_errors": node_errors,
        }
    )
