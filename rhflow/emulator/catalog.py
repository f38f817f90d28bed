"""Account and catalogue endpoints real clients call besides tasks: the v2 AI-app list, queue
status and key list, the LoRA upload URL (section 9.3) and quick-creation model presets (7.2).

Shapes follow api-notes.md sections 3.3, 3.8 and 4.6 (the API document leaves their paths
"待补充", to be completed).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from rhflow.emulator.state import Refused, api_key, bearer, json_body, reply, state_of

LORA_PREFIX = "api-lora-cn/"
_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")
MAX_PAGE = 50


def _v2_key(request: web.Request) -> str:
    """A v2 key: ``Authorization: Bearer KEY``, or the bare key (the OpenClaw skill sends it)."""
    key = bearer(request)
    allowed = state_of(request).config.api_keys
    if not key or (allowed and key not in allowed):
        raise Refused(806)
    return key


def _int_field(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = low - 1
    if isinstance(value, bool) or not low <= number <= high:
        raise Refused(301, f"{name} must be a whole number from {low} to {high}")
    return number


async def aiapp_list(request: web.Request) -> web.Response:
    """``POST /openapi/v2/aiapp/list {current, size<=50, sort, days}``: a page of AI apps."""
    _v2_key(request)
    body = await json_body(request)
    current = _int_field(body, "current", 1, 1, 1_000_000)
    size = _int_field(body, "size", 10, 1, MAX_PAGE)
    state = state_of(request)
    apps = sorted(state.apps.values(), key=lambda app: app.webapp_id)
    records = [
        {
            "webappId": app.webapp_id,
            "title": app.name,
            "description": f"{app.name}: runs workflow {app.workflow_id}",
            "cover": f"{state.base_url}/files/input/example.png",
            "invokeExample": f"{state.base_url}/api/webapp/apiCallDemo?webappId={app.webapp_id}",
        }
        for app in apps
    ]
    page = records[(current - 1) * size : current * size]
    pages = (len(records) + size - 1) // size
    data = {
        "records": page,
        "current": current,
        "size": size,
        "total": len(records),
        "pages": pages,
        "hasNext": current < pages,
    }
    return reply(0, data, "success")


async def queue_status(request: web.Request) -> web.Response:
    """``GET /openapi/v2/queue/status``: the key's limit and what it has queued and running."""
    key = _v2_key(request)
    state = state_of(request)
    account = state.board.account(key)
    queued = account.slots - account.running + len(account.waiting)
    data = {
        "apiKeyType": state.config.api_type,
        "concurrentLimit": state.config.slots,
        "runningCount": account.running,
        "queuedCount": queued,
        "totalCurrentTasks": account.running + queued,
        "instanceCount": state.config.slots if state.config.enterprise else 0,
    }
    return reply(0, data, "success")


async def api_key_list(request: web.Request) -> web.Response:
    """``GET /openapi/v2/api-key/list``: the caller's key, masked, with its quota."""
    key = _v2_key(request)
    state = state_of(request)
    created = datetime(2025, 1, 1, 0, 0, 0)
    data = [
        {
            "key": mask(key),
            "apiKeyName": "emulator key",
            "status": "ENABLE",
            "quotaLimit": None,
            "quotaUsed": str(sum(1 for t in state.board.tasks.values() if t.spec.key == key)),
            "visible": False,
            "expireAt": (created + timedelta(days=3650)).isoformat(),
            "createdAt": created.isoformat(),
        }
    ]
    return reply(0, data, "success")


def mask(key: str) -> str:
    """``0123************************cdef``: enough to tell keys apart, never the key."""
    if len(key) <= 8:
        return "*" * len(key)
    return key[:4] + "*" * (len(key) - 8) + key[-4:]


async def lora_upload_url(request: web.Request) -> web.Response:
    """``POST /api/openapi/getLoraUploadUrl {apiKey, loraName, md5Hex}`` (section 9.3).

    Answers the name an ``RHLoraLoader`` node takes and a URL to ``PUT`` the file to; once that
    MD5 was uploaded, ``url`` is left out (the MD5 is a cache key).
    """
    body = await json_body(request)
    api_key(request, body)
    name = body.get("loraName")
    md5 = body.get("md5Hex")
    if not isinstance(name, str) or not name.strip():
        raise Refused(301, "loraName is required")
    if not isinstance(md5, str) or not _MD5.match(md5):
        raise Refused(301, "md5Hex must be the file's MD5 as 32 hex digits")
    state = state_of(request)
    file_name = f"{LORA_PREFIX}{md5.lower()}.safetensors"
    data: dict[str, Any] = {"fileName": file_name}
    if file_name not in state.uploads:
        data["url"] = f"{state.base_url}/files/lora/{md5.lower()}"
    return reply(0, data, "success")


async def lora_put(request: web.Request) -> web.Response:
    """The presigned URL's ``PUT``: stored under its name when the bytes match the MD5."""
    md5 = request.match_info["md5"].lower()
    data = await request.read()
    if not _MD5.match(md5) or hashlib.md5(data).hexdigest() != md5:
        return web.Response(status=400, text="the file's MD5 does not match the upload URL")
    state = state_of(request)
    state.uploads[f"{LORA_PREFIX}{md5}.safetensors"] = data
    state.upload_count += 1
    state.upload_bytes += len(data)
    return web.Response(status=200)


async def model_params(request: web.Request) -> web.Response:
    """``POST /api/fast/creation/model/params {type, webappId}``: quick-creation presets (7.2)."""
    body = await json_body(request)
    api_key(request, body)
    state = state_of(request)
    webapp_id = str(body.get("webappId") or "").strip()
    if not webapp_id:
        raise Refused(301, "webappId is required")
    if webapp_id not in state.apps:
        raise Refused(901)
    kind = _int_field(body, "type", 1, 0, 99)
    data = [_preset(webapp_id, kind, index, style) for index, style in enumerate(PRESET_STYLES)]
    return reply(0, data, "success")


PRESET_STYLES = ("watercolor", "ink", "photo")


def _preset(webapp_id: str, kind: int, index: int, style: str) -> dict[str, Any]:
    return {
        "id": str(1_900_000_000_000_000_000 + index),
        "type": kind,
        "webappId": webapp_id,
        "modelCategory": 1,
        "modelName": f"{style} style",
        "modelKey": f"{index + 1:03d}",
        "modelPreviewUrl": "",
        "content": f"a picture in {style} style",
        "modelTrigger": style,
        "modelLoar1FileName": f"{LORA_PREFIX}{hashlib.md5(style.encode()).hexdigest()}.safetensors",
        "modelLoar1Weight": 0.8,
        "modelLoar2FileName": "",
        "modelLoar2Weight": 0.0,
    }


ROUTES = [
    ("POST", "/openapi/v2/aiapp/list", aiapp_list),
    ("GET", "/openapi/v2/queue/status", queue_status),
    ("GET", "/openapi/v2/api-key/list", api_key_list),
    ("POST", "/api/openapi/getLoraUploadUrl", lora_upload_url),
    ("POST", "/api/fast/creation/model/params", model_params),
]
