"""The v2 endpoints: Bearer auth and flat answers (``taskId, status, errorCode, ...``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from rhflow.emulator import outputs, uploads
from rhflow.emulator.prompt import Rejection
from rhflow.emulator.records import Task
from rhflow.emulator.state import Refused, bearer, json_body, state_of
from rhflow.emulator.submit import submit


def _flat(
    task_id: str = "", status: str = "", code: str = "", message: str = "", **extra: Any
) -> web.Response:
    body = {
        "taskId": task_id,
        "status": status,
        "errorCode": code,
        "errorMessage": message,
        "results": None,
        "clientId": "",
        "promptTips": "",
        **extra,
    }
    return web.json_response(body)


def error(code: int, detail: str = "") -> web.Response:
    """A v2 error: ``errorCode`` as a string, ``errorMessage`` the document's identifier for it
    (section 11.1), then what exactly was wrong."""
    name = outputs.code_name(code)
    return _flat(code=str(code), message=f"{name}: {detail}" if detail else name)


def _key(request: web.Request) -> str | None:
    key = bearer(request)
    allowed = state_of(request).config.api_keys
    if not key or (allowed and key not in allowed):
        return None
    return key


async def _body(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        return await json_body(request)
    except Refused as refused:
        return error(1007, refused.msg or "")


async def run_workflow(request: web.Request) -> web.Response:
    return await _run(request, workflow_id=request.match_info["workflow_id"])


async def run_ai_app(request: web.Request) -> web.Response:
    return await _run(request, webapp_id=request.match_info["webapp_id"])


async def _run(request: web.Request, **target: str) -> web.Response:
    key = _key(request)
    if key is None:
        return error(806)
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    result = submit(state_of(request), key, body, **target)
    if isinstance(result, Rejection):
        return _flat(
            code=str(result.code), message=result.message, promptTips=result.prompt_tips or ""
        )
    return _flat(
        result.task_id, result.status, clientId=result.client_id, promptTips=result.spec.prompt_tips
    )


async def query(request: web.Request) -> web.Response:
    key = _key(request)
    if key is None:
        return error(806)
    body = await _body(request)
    if isinstance(body, web.Response):
        return body
    task_id = body.get("taskId")
    if task_id is None or str(task_id).strip() == "":
        return error(1007, "taskId is required")
    task = state_of(request).board.find(key, task_id)
    if task is None:
        return error(1004)
    return web.json_response(_query_answer(request, task))


def _query_answer(request: web.Request, task: Task) -> dict[str, Any]:
    state = state_of(request)
    answer: dict[str, Any] = {
        "taskId": task.task_id,
        "status": task.status,
        "errorCode": "",
        "errorMessage": "",
        "failedReason": {},
        "usage": None,
        "results": None,
        "clientId": task.client_id,
        "promptTips": task.spec.prompt_tips,
    }
    if task.status == "FAILED":
        reason = outputs.failed_reason(task, state.config.traceback_style)
        answer.update(
            errorCode="1000", errorMessage=reason["exception_message"], failedReason=reason
        )
    elif task.status == "SUCCESS":
        answer["usage"] = {
            "consumeMoney": task.money_text,
            "consumeCoins": str(task.coins),
            "taskCostTime": str(task.cost_seconds),
            "thirdPartyConsumeMoney": None,
        }
        answer["results"] = [
            {
                "url": f"{state.base_url}/files/{task.task_id}/{item.name}",
                "nodeId": item.node_id,
                "outputType": item.file_type,
                "text": item.render().decode("utf-8", "replace") if item.kind == "text" else None,
            }
            for item in task.files
        ]
    return answer


async def upload_binary(request: web.Request) -> web.Response:
    state = state_of(request)
    form = await uploads.read_form(request, state.config.upload_limit)
    if _key(request) is None:
        return web.json_response(
            {"code": 401, "message": "ApiKey verification failed: API Key not found", "data": None}
        )
    if form.too_large:
        return web.json_response({"code": 1008, "message": outputs.code_name(1008), "data": None})
    if form.data is None:
        return web.json_response(
            {
                "code": 1007,
                "message": f"{outputs.code_name(1007)}: multipart field 'file' is required",
                "data": None,
            }
        )
    name = uploads.store(state, form, "openapi/")
    kind = "image" if name.rsplit(".", 1)[-1] in ("png", "jpg", "jpeg", "webp", "gif") else "file"
    data = {
        "type": kind,
        "download_url": f"{state.base_url}/files/input/{name}",
        "fileName": name,
        "size": str(len(form.data)),
    }
    return web.json_response({"code": 0, "message": "success", "data": data})


ROUTES = [
    ("POST", "/openapi/v2/run/workflow/{workflow_id}", run_workflow),
    ("POST", "/openapi/v2/run/ai-app/{webapp_id}", run_ai_app),
    ("POST", "/openapi/v2/query", query),
    ("POST", "/openapi/v2/media/upload/binary", upload_binary),
]
