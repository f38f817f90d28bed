"""The aiohttp application: routes, the fault/latency middleware, files, WebSocket, control."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

from aiohttp import WSCloseCode, web

from rhflow.emulator import catalog, events, images, v1, v2
from rhflow.emulator.config import EmulatorConfig
from rhflow.emulator.events import Message
from rhflow.emulator.faults import FaultError
from rhflow.emulator.records import Task
from rhflow.emulator.state import STATE, Refused, State, reply, state_of

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CONTROL_PREFIXES = ("/emulator/", "/files/", "/ws/")
#: The image of every binary preview frame (``--previews``): small, as ComfyUI's are.
PREVIEW_PNG = images.render_png(64, 64, images.digest("preview"))


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count requests, add latency, inject transient faults, turn Refused into envelopes."""
    state = state_of(request)
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else request.path
    state.requests[path] = state.requests.get(path, 0) + 1
    if not request.path.startswith(CONTROL_PREFIXES):
        if state.config.latency:
            await asyncio.sleep(state.config.latency)
        fault = state.faults.transient(request.path)
        if fault is not None:
            return await _fault_response(request, fault)
    try:
        return await handler(request)
    except Refused as refused:
        return reply(refused.code, refused.data, refused.msg)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as missing:
        if request.path.startswith(CONTROL_PREFIXES):
            raise
        return _no_endpoint(request, missing.status)


def _no_endpoint(request: web.Request, status: int) -> web.Response:
    """A path (or method) the service does not have: an HTTP error, as a Spring service answers,
    never a business code (a 412 in a 200 answer reads as a bad key to many clients)."""
    body = {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        "status": status,
        "error": "Not Found" if status == 404 else "Method Not Allowed",
        "path": request.path,
    }
    return web.json_response(body, status=status)


async def _fault_response(request: web.Request, fault: str) -> web.StreamResponse:
    if fault.startswith("code_"):
        code = int(fault.removeprefix("code_"))
        if request.path.startswith("/openapi/v2/"):
            return v2.error(code)
        return reply(code)
    if fault == "drop":
        await request.read()
        if request.transport is not None:
            request.transport.close()
        raise asyncio.CancelledError
    return web.Response(
        status=500,
        content_type="text/html",
        text="<html><body><h1>500 Internal Server Error</h1></body></html>",
    )


async def output_file(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    task = state.board.tasks.get(request.match_info["task_id"])
    name = request.match_info["name"]
    item = next((f for f in task.files if f.name == name), None) if task else None
    if item is None:
        raise web.HTTPNotFound(text=f"no output file {name!r} for this task")
    data = await state.renders.data(item)
    return await _send(request, data, _content_type(item.file_type))


async def input_file(request: web.Request) -> web.StreamResponse:
    data = state_of(request).uploads.get(request.match_info["name"])
    if data is None:
        raise web.HTTPNotFound(text="no such uploaded file")
    return await _send(request, data, "application/octet-stream")


async def _send(request: web.Request, data: bytes, content_type: str) -> web.StreamResponse:
    state = state_of(request)
    if state.faults.take("download_500", request.path):
        return web.Response(status=500, text="download failed (injected fault)")
    response = web.StreamResponse(headers={"Content-Type": content_type})
    response.content_length = len(data)
    await response.prepare(request)
    if state.faults.take("download_truncate", request.path):
        half = data[: len(data) // 2]
        await response.write(half)
        state.bytes_served += len(half)
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write(data)
    state.bytes_served += len(data)
    await response.write_eof()
    return response


def _content_type(file_type: str) -> str:
    return {"png": "image/png", "mp4": "video/mp4", "txt": "text/plain; charset=utf-8"}.get(
        file_type, "application/octet-stream"
    )


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """ComfyUI-style progress for one task, as ComfyUI's server.py sends it.

    ``status`` (with ``queue_remaining``) on connect, then what the task sent so far (a late
    subscriber misses nothing) and what it sends next. The socket stays open after the end, as
    a ComfyUI socket does, until the client closes it or ``ws_idle_seconds`` pass.
    """
    state = state_of(request)
    board = state.board
    task = board.tasks.get(request.query.get("taskId", "")) or next(
        (t for t in board.tasks.values() if t.client_id == request.query.get("clientId")), None
    )
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    state.websocket_connections += 1
    if task is None:
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"unknown task")
        return ws
    state.sockets.add(ws)
    closed = asyncio.ensure_future(_until_closed(ws))
    try:
        await ws.send_str(json.dumps(events.status(0 if task.terminal else 1, task.client_id)))
        if task.terminal:
            await _send_all(ws, task.final, state)
        else:
            await _follow(ws, task, closed, state)
        await asyncio.wait({closed}, timeout=state.config.ws_idle_seconds)
    except (ConnectionError, RuntimeError):
        pass
    finally:
        closed.cancel()
        state.sockets.discard(ws)
    await ws.close()
    return ws


async def _until_closed(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) what the client sends, until it closes the socket."""
    async for _ in ws:
        pass


async def _follow(
    ws: web.WebSocketResponse, task: Task, closed: asyncio.Future[None], state: State
) -> None:
    queue: asyncio.Queue[Message | None] = asyncio.Queue()
    backlog = list(task.history)
    task.subscribers.append(queue)
    closed.add_done_callback(lambda _: queue.put_nowait(None))  # the client left: stop
    try:
        await _send_all(ws, backlog, state)
        while (item := await queue.get()) is not None:
            await _send_all(ws, [item], state)
    finally:
        if queue in task.subscribers:
            task.subscribers.remove(queue)


async def _send_all(ws: web.WebSocketResponse, messages: list[Message], state: State) -> None:
    for msg in messages:
        await ws.send_str(json.dumps(msg))
        if state.config.previews and msg["type"] == "progress":
            await ws.send_bytes(events.preview_frame(PREVIEW_PNG))


# -- control endpoints ----------------------------------------------------------------------


async def stats(request: web.Request) -> web.Response:
    return web.json_response(state_of(request).stats())


async def faults(request: web.Request) -> web.Response:
    state = state_of(request)
    if request.method == "POST":
        try:
            state.faults.add(await request.json())
        except (ValueError, FaultError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(state.faults.state())


def make_app(config: EmulatorConfig) -> web.Application:
    """A fresh application (and State) for ``config``."""
    app = web.Application(middlewares=[api_middleware], client_max_size=8 * 1024 * 1024)
    app[STATE] = State(config)
    for method, path, handler in [*v1.ROUTES, *v2.ROUTES, *catalog.ROUTES]:
        app.router.add_route(method, path, handler)
    app.router.add_put("/files/lora/{md5}", catalog.lora_put)
    app.router.add_get("/files/input/{name:.+}", input_file)
    app.router.add_get("/files/{task_id}/{name}", output_file)
    app.router.add_get("/ws/c_instance", websocket)
    app.router.add_get("/emulator/stats", stats)
    app.router.add_route("*", "/emulator/faults", faults)
    app.on_response_prepare.append(_mark_emulated)
    app.on_shutdown.append(_shutdown)
    return app


#: On every answer, so that a client can tell (and record) that its results are placeholders.
EMULATOR_HEADER = "X-Rhflow-Emulator"


async def _mark_emulated(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[EMULATOR_HEADER] = "1"


async def _shutdown(app: web.Application) -> None:
    for ws in list(app[STATE].sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"emulator stopping")
    app[STATE].board.shutdown()
    app[STATE].renders.close()
    await app[STATE].webhooks.close()
