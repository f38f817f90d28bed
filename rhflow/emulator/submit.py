"""Turning a create / ai-app / v2 run request into a task (shared by v1 and v2 endpoints)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from rhflow.emulator.prompt import Prepared, Rejection, check_files, prepare
from rhflow.emulator.records import Task, TaskSpec
from rhflow.emulator.state import State, flag


def submit(
    state: State,
    key: str,
    body: dict[str, Any],
    *,
    workflow_id: str | None = None,
    webapp_id: str | None = None,
) -> Task | Rejection:
    """Validate and create a task for a workflow or an AI app; a Rejection says why not."""
    if webapp_id is not None:
        app = state.apps.get(webapp_id)
        if app is None:
            return Rejection(901, "WEBAPP_NOT_EXISTS")
        stored = state.workflows[app.workflow_id]
    else:
        assert workflow_id is not None
        found = state.workflows.get(workflow_id)
        # Section 4.2: with `workflow` given, "workflowId is ignored"; api-notes 3.1 saw the id
        # still checked (workflow_id_check="observed").
        ignored = body.get("workflow") not in (None, "") and state.config.workflow_id_check == (
            "document"
        )
        if found is None and not ignored:
            return Rejection(380, "WORKFLOW_NOT_EXISTS")
        stored = found or {}
    if state.faults.take("create_busy"):
        return Rejection(421, "TASK_QUEUE_MAXED")
    if state.faults.take("instance_busy"):
        return Rejection(415, "TASK_INSTANCE_MAXED")
    webhook = body.get("webhookUrl")
    if webhook is not None and not isinstance(webhook, str):
        return Rejection(301, "webhookUrl must be a string URL")
    prepared = prepare(
        stored, body.get("workflow") if webapp_id is None else None, body.get("nodeInfoList")
    )
    if isinstance(prepared, Rejection):
        return prepared
    missing = check_files(prepared.graph, state.has_input)
    if missing is not None:
        return missing
    spec = _spec(key, body, prepared, workflow_id, webapp_id, webhook or None)
    return state.board.create(spec)


def _spec(
    key: str,
    body: dict[str, Any],
    prepared: Prepared,
    workflow_id: str | None,
    webapp_id: str | None,
    webhook: str | None,
) -> TaskSpec:
    return TaskSpec(
        key=key,
        graph=prepared.graph,
        prompt_tips=prepared.prompt_tips,
        workflow_id=workflow_id,
        webapp_id=webapp_id,
        webhook_url=webhook,
        add_metadata=webapp_id is None and flag(body.get("addMetadata"), True),
        personal_queue=flag(body.get("usePersonalQueue"), False),
        fingerprint=fingerprint(workflow_id, webapp_id, body),
    )


def fingerprint(workflow_id: str | None, webapp_id: str | None, body: dict[str, Any]) -> str:
    """Same target, workflow JSON, nodeInfoList and instanceType -> same fingerprint."""
    entries = body.get("nodeInfoList") or []
    normalised = [
        [str(e.get("nodeId")), str(e.get("fieldName")), e.get("fieldValue")]
        if isinstance(e, dict)
        else e
        for e in entries
    ]
    parts = [
        workflow_id,
        webapp_id,
        body.get("quickCreateCode"),
        body.get("workflow"),
        normalised,
        body.get("instanceType") or "default",
    ]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def created_data(state: State, task: Task) -> dict[str, Any]:
    """The ``data`` of a successful create answer."""
    return {
        "netWssUrl": state.ws_url(task),
        "taskId": task.task_id,
        "clientId": task.client_id,
        "taskStatus": task.status,
        "promptTips": task.spec.prompt_tips,
    }
