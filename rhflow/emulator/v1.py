"""The v1 endpoints: HTTP 200 with ``{"code", "msg", "data"}`` for every business answer."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from rhflow.emulator import uploads
from rhflow.emulator.prompt import Rejection
from rhflow.emulator.records import Task
from rhflow.emulator.state import (
    Refused,
    api_key,
    json_body,
    reply,
    required_id,
    state_of,
)
from rhflow.emulator.submit import created_data, submit
from rhflow.emulator.workflows import demo_fields


def _answer(request: web.Request, result: Task | Rejection) -> web.Response:
    if isinstance(result, Rejection):
        data = {"promptTips": result.prompt_tips} if result.prompt_tips else None
        return reply(result.code, data, result.message if result.code != 416 else None)
    return reply(0, created_data(state_of(request), result), "success")


async def create(request: web.Request) -> web.Response:
    body = await json_body(request)
    key = api_key(request, body)
    workflow_id = required_id(body, "workflowId")
    return _answer(request, submit(state_of(request), key, body, workflow_id=workflow_id))


async def ai_app_run(request: web.Request) -> web.Response:
    body = await json_body(request)
    key = api_key(request, body)
    webapp_id = required_id(body, "webappId")
    if body.get("nodeInfoList") is None:
        raise Refused(301, "nodeInfoList is required")
    return _answer(request, submit(state_of(request), key, body, webapp_id=webapp_id))


async def quick_ai_app_run(request: web.Request) -> web.Response:
    body = await json_body(request)
    key = api_key(request, body)
    webapp_id = required_id(body, "webappId")
    required_id(body, "quickCreateCode")
    if body.get("nodeInfoList") is None:  # section 7.1: required
        raise Refused(301, "nodeInfoList is required")
    return _answer(request, submit(state_of(request), key, body, webapp_id=webapp_id))


async def get_json_api_format(request: web.Request) -> web.Response:
    body = await json_body(request)
    api_key(request, body)
    workflow_id = required_id(body, "workflowId")
    graph = state_of(request).workflows.get(workflow_id)
    if graph is None:
        raise Refused(380)
    return reply(0, {"prompt": json.dumps(graph, ensure_ascii=False)}, "SUCCESS")


def _task(request: web.Request, body: dict[str, Any], key: str, missing: int = 807) -> Task:
    task_id = required_id(body, "taskId")
    if not task_id.isdigit() or int(task_id) <= 0:
        raise Refused(301, "taskId must be positive")
    task = state_of(request).board.find(key, task_id)
    if task is None:
        raise Refused(missing)
    return task


async def status(request: web.Request) -> web.Response:
    body = await json_body(request)
    task = _task(request, body, api_key(request, body))
    return reply(0, task.status, "")


async def task_outputs(request: web.Request) -> web.Response:
    body = await json_body(request)
    task = _task(request, body, api_key(request, body))
    return web.json_response(state_of(request).outputs_of(task))


async def cancel(request: web.Request) -> web.Response:
    body = await json_body(request)
    state = state_of(request)
    # Section 4.4 answers 423 TASK_NOT_FOUNED; api-notes 3.6 saw 807 (cancel_unknown=807).
    task = _task(request, body, api_key(request, body), state.config.cancel_unknown)
    state.board.cancel(task)
    return reply(0, None, "success")


async def account_status(request: web.Request) -> web.Response:
    body = await json_body(request)
    key = api_key(request, body)
    state = state_of(request)
    account = state.board.account(key)
    enterprise = state.config.enterprise
    return reply(
        0,
        {
            "remainCoins": str(max(0, account.coins)),
            "currentTaskCounts": str(state.board.running_count(key)),
            "remainMoney": f"{max(0.0, account.money):.2f}" if enterprise else None,
            "currency": state.config.currency if enterprise else None,
            "apiType": state.config.api_type,
        },
        "success",
    )


async def upload(request: web.Request) -> web.Response:
    state = state_of(request)
    form = await uploads.read_form(request, state.config.upload_limit)
    api_key(request, {k: v for k, v in form.fields.items() if k in ("apiKey", "apikey")})
    if form.problem:
        raise Refused(301, form.problem)
    if form.too_large:
        raise Refused(809)
    if form.data is None:
        raise Refused(301, "multipart field 'file' is required")
    name = uploads.store(state, form, "api/")
    file_type = form.fields.get("fileType") or "input"
    return reply(0, {"fileName": name, "fileType": file_type}, "success")


async def webhook_detail(request: web.Request) -> web.Response:
    body = await json_body(request)
    task = _task(request, body, api_key(request, body))
    record = state_of(request).webhooks.by_task.get(task.task_id)
    if record is None:
        raise Refused(1, "webhook event not exists")
    return reply(0, record.detail(), "success")


async def retry_webhook(request: web.Request) -> web.Response:
    body = await json_body(request)
    key = api_key(request, body)
    hooks = state_of(request).webhooks
    record = hooks.by_id.get(required_id(body, "webhookId"))
    if record is None or record.key != key:
        raise Refused(1, "webhook event not exists")
    url = body.get("webhookUrl")
    hooks.resend(record, url if isinstance(url, str) and url else None)
    return reply(0, None, "")


async def api_call_demo(request: web.Request) -> web.Response:
    state = state_of(request)
    query = dict(request.query)
    api_key(request, query)
    app = state.apps.get(required_id(query, "webappId"))
    if app is None:
        raise Refused(901)
    nodes = demo_fields(app, state.workflows[app.workflow_id])
    body = json.dumps(
        {"webappId": app.webapp_id, "apiKey": "[Your API KEY]", "nodeInfoList": nodes},
        ensure_ascii=False,
    )
    curl = (
        f"curl --location --request POST '{state.base_url}/task/openapi/ai-app/run' "
        f"--header 'Content-Type: application/json' --data-raw '{body}'"
    )
    return reply(
        0,
        {
            "curl": curl,
            "webappName": app.name,
            "statisticsInfo": {"likeCount": "0", "useCount": "0"},
            "nodeInfoList": nodes,
            "covers": [],
            "tags": [],
        },
        "success",
    )


ROUTES = [
    ("POST", "/task/openapi/create", create),
    ("POST", "/task/openapi/ai-app/run", ai_app_run),
    ("POST", "/task/openapi/quick-ai-app/run", quick_ai_app_run),
    ("POST", "/api/openapi/getJsonApiFormat", get_json_api_format),
    ("POST", "/task/openapi/status", status),
    ("POST", "/task/openapi/outputs", task_outputs),
    ("POST", "/task/openapi/cancel", cancel),
    ("POST", "/uc/openapi/accountStatus", account_status),
    ("POST", "/task/openapi/upload", upload),
    ("POST", "/task/openapi/getWebhookDetail", webhook_detail),
    ("POST", "/task/openapi/retryWebhook", retry_webhook),
    ("GET", "/api/webapp/apiCallDemo", api_call_demo),
]
