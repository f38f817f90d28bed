"""Everything one running emulator holds, and the request helpers the handlers share."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from aiohttp import web

from rhflow.emulator import outputs
from rhflow.emulator.config import EmulatorConfig
from rhflow.emulator.faults import Faults
from rhflow.emulator.outputs import envelope
from rhflow.emulator.records import Task
from rhflow.emulator.renders import Renders
from rhflow.emulator.tasks import TaskBoard
from rhflow.emulator.webhooks import Webhooks
from rhflow.emulator.workflows import (
    BUILTIN_APPS,
    Graph,
    folder_signature,
    load_workflows,
    loader_values,
)
from rhflow.errors import UsageError


class State:
    """Workflows, uploads, tasks, webhooks, faults and counters of one emulator."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._workflows = self._load_workflows()
        self._signature = folder_signature(config.workflows_dir)
        self.apps = dict(BUILTIN_APPS)
        self.uploads: dict[str, bytes] = {}
        self.faults = Faults(config.error_rate, config.seed)
        self.webhooks = Webhooks(config)
        self.renders = Renders()
        self.board = TaskBoard(config, self.uploads, self.faults, self._task_ended, self.renders)
        self.base_url = ""
        self.requests: dict[str, int] = {}
        self.bytes_served = 0
        self.upload_count = 0
        self.upload_bytes = 0
        self.websocket_connections = 0
        self.sockets: set[web.WebSocketResponse] = set()

    @property
    def workflows(self) -> dict[str, Graph]:
        """The workflows served: ``--workflows DIR`` is read again when a file in it changed
        (as a workflow edited on the website behind its unchanged id); a file that cannot be
        read then leaves the previous set in place."""
        signature = folder_signature(self.config.workflows_dir)
        if signature != self._signature:
            self._signature = signature
            with contextlib.suppress(UsageError):
                self._workflows = self._load_workflows()
        return self._workflows

    def _load_workflows(self) -> dict[str, Graph]:
        """The built-in workflows, ``--workflows DIR``'s and the config's own (a copy)."""
        workflows = load_workflows(self.config.workflows_dir)
        workflows.update(json.loads(json.dumps(self.config.workflows)))
        return workflows

    def bind(self, host: str, port: int) -> None:
        """Record the address actually bound: every URL handed out points there."""
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.base_url = f"http://{netloc}"

    def ws_url(self, task: Task) -> str | None:
        """The task's WebSocket URL while it runs (None when queued, ended or disabled)."""
        if not self.config.websocket or task.status != "RUNNING":
            return None
        ws_base = "ws" + self.base_url[len("http") :]
        target = task.spec.workflow_id or task.spec.webapp_id or ""
        return (
            f"{ws_base}/ws/c_instance?clientId={task.client_id}&taskId={task.task_id}"
            f"&workflowId={target}"
        )

    def has_input(self, name: str) -> bool:
        """Whether a loader may name ``name``: uploaded, built in, in a served workflow, a URL."""
        return outputs.input_exists(name, self.uploads) or name in loader_values(self.workflows)

    def outputs_of(self, task: Task) -> dict[str, Any]:
        return outputs.outputs_response(
            task,
            self.base_url,
            self.ws_url(task),
            self.config.outputs_style,
            self.config.traceback_style,
        )

    def _task_ended(self, task: Task) -> None:
        if task.spec.webhook_url:
            self.webhooks.send(
                task.task_id, task.spec.key, task.spec.webhook_url, self.outputs_of(task)
            )

    def stats(self) -> dict[str, Any]:
        return {
            "requests": dict(sorted(self.requests.items())),
            **self.board.stats(),
            "bytes_served": self.bytes_served,
            "uploads": self.upload_count,
            "upload_bytes": self.upload_bytes,
            "websocket_connections": self.websocket_connections,
            "websockets_open": len(self.sockets),
            "files_rendered": self.renders.rendered,
            "webhooks": self.webhooks.stats(),
            "faults": self.faults.state(),
            "url": self.base_url,
        }


STATE = web.AppKey("state", State)


def state_of(request: web.Request) -> State:
    return request.app[STATE]


def reply(code: int, data: Any = None, msg: str | None = None) -> web.Response:
    """A v1 answer: HTTP 200 with the {code, msg, data} envelope."""
    return web.json_response(envelope(code, data, msg), dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class Refused(Exception):
    """Raised by helpers to answer at once with a v1 envelope."""

    def __init__(self, code: int, msg: str | None = None, data: Any = None) -> None:
        super().__init__(msg)
        self.code, self.msg, self.data = code, msg, data


async def json_body(request: web.Request) -> dict[str, Any]:
    """The JSON object sent, {} for an empty body; invalid JSON is a 301."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Refused(301, f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise Refused(301, "request body must be a JSON object")
    return body


def bearer(request: web.Request) -> str:
    """The key of ``Authorization: Bearer KEY`` (or of a bare ``Authorization: KEY``);
    "" for ``Bearer`` with nothing after it, which is no key rather than the key "Bearer"."""
    header = request.headers.get("Authorization", "").strip()
    scheme, _, rest = header.partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip()
    return header


def api_key(request: web.Request, body: dict[str, Any] | None = None) -> str:
    """The key from the body (apiKey / apikey) or else a Bearer header; 301 when missing or
    empty (a body field sent empty is not made up for by the header), 802 when unknown."""
    body = body or {}
    field = next((name for name in ("apiKey", "apikey") if name in body), None)
    key = body[field] if field is not None else bearer(request)
    if not isinstance(key, str) or not key.strip():
        raise Refused(301, "apiKey is required (in the body or as Authorization: Bearer)")
    key = key.strip()
    allowed = state_of(request).config.api_keys
    if allowed and key not in allowed:
        raise Refused(802)
    return key


def required_id(body: dict[str, Any], name: str) -> str:
    """An id field (string or number) that must be present; 301 otherwise."""
    value = body.get(name)
    if value is None or isinstance(value, bool) or str(value).strip() == "":
        raise Refused(301, f"{name} is required")
    if isinstance(value, float):
        raise Refused(301, f"{name} must be a string of digits, not a float (precision is lost)")
    return str(value).strip()


def flag(value: Any, default: bool) -> bool:
    """A boolean sent as true/false or as the strings "true"/"false"."""
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)
