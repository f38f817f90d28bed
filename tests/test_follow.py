"""The WebSocket follower against real sockets: a small aiohttp server here, and the emulator."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from rhflow.api.client import Client
from rhflow.api.follow import ProgressEvent, decode_frame, events_from_frame, follow

Handler = Callable[[web.WebSocketResponse], Awaitable[None]]


def _msg(kind: str, **data: Any) -> str:
    return json.dumps({"type": kind, "data": data})


async def _serve(handler: Handler) -> tuple[web.AppRunner, str]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await handler(ws)
        return ws

    app = web.Application()
    app.router.add_get("/ws", endpoint)
    app.router.add_get("/plain", _not_found)
    app.router.add_get("/abort", _abort_after_one_frame)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/ws"


async def _not_found(request: web.Request) -> web.Response:
    return web.Response(status=404, text="no websocket here")


async def _abort_after_one_frame(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str(_msg("progress", node="3", value=1, max=9))
    assert request.transport is not None
    request.transport.abort()  # no close frame: the TCP connection just drops
    return ws


def _follow_server(
    handler: Handler, *, timeout: float = 5.0, path: str = "/ws"
) -> tuple[str, list[ProgressEvent]]:
    events: list[ProgressEvent] = []

    async def main() -> str:
        runner, url = await _serve(handler)
        try:
            async with aiohttp.ClientSession() as session:
                return await follow(
                    url.replace("/ws", path),
                    session=session,
                    on_event=events.append,
                    timeout=timeout,
                )
        finally:
            await runner.cleanup()

    return asyncio.run(main()), events


def _kinds(events: list[ProgressEvent]) -> list[tuple[str, str | None, int | None, int | None]]:
    return [(e.kind, e.node, e.value, e.max) for e in events]


async def _wait_for_client_close(ws: web.WebSocketResponse) -> None:
    async for _ in ws:
        pass


def test_a_whole_comfyui_run_ends_in_success() -> None:
    async def handler(ws: web.WebSocketResponse) -> None:
        await ws.send_str(
            json.dumps(
                {
                    "type": "status",
                    "data": {"status": {"exec_info": {"queue_remaining": 1}}, "sid": "abc"},
                }
            )
        )
        await ws.send_str(_msg("execution_start", prompt_id="p"))
        await ws.send_str(_msg("execution_cached", nodes=["4", "5"], prompt_id="p"))
        await ws.send_str(_msg("executing", node="3", prompt_id="p"))
        await ws.send_str(_msg("progress", node="3", value=1, max=2))
        await ws.send_str(_msg("progress", node="3", value=2, max=2))
        await ws.send_str(_msg("executed", node="9", output={"images": []}))
        await ws.send_str(_msg("execution_success", prompt_id="p"))
        await _wait_for_client_close(ws)

    result, events = _follow_server(handler)
    assert result == "success"
    assert _kinds(events) == [
        ("status", None, 1, None),
        ("start", None, None, None),
        ("cached", "4", None, None),
        ("cached", "5", None, None),
        ("executing", "3", None, None),
        ("progress", "3", 1, 2),
        ("progress", "3", 2, 2),
        ("executed", "9", None, None),
        ("success", None, None, None),
    ]
    assert events[-1].raw == {"type": "execution_success", "data": {"prompt_id": "p"}}


def test_bytes_in_any_encoding_garbage_and_unknown_types_are_handled() -> None:
    async def handler(ws: web.WebSocketResponse) -> None:
        await ws.send_bytes(b"\x00\x00\x00\x01\x89PNG\r\n\x1a\n\x00\xff")  # a preview image
        await ws.send_str("not json at all")
        await ws.send_str("[1, 2, 3]")
        await ws.send_str(_msg("crystools.monitor", cpu_utilization=3))
        await ws.send_bytes(_msg("executing", node="6").encode("utf-8"))
        await ws.send_bytes(_msg("progress", node="6", value=1, max=4).encode("utf-16"))
        await ws.send_bytes(_msg("executed", node="é").encode("latin-1"))
        await ws.send_str("prefix " + _msg("progress", node=6, value="2", max=4.0) + " suffix")
        await ws.send_str(_msg("executing", node=None))
        await _wait_for_client_close(ws)

    result, events = _follow_server(handler)
    assert result == "success"
    assert _kinds(events) == [
        ("executing", "6", None, None),
        ("progress", "6", 1, 4),
        ("executed", "é", None, None),
        ("progress", "6", 2, 4),
        ("executing", None, None, None),
    ]


def test_executing_null_before_anything_ran_is_not_the_end() -> None:
    async def handler(ws: web.WebSocketResponse) -> None:
        await ws.send_str(_msg("executing", node=None))
        await ws.send_str(_msg("execution_start"))
        await ws.send_str(_msg("execution_success"))
        await _wait_for_client_close(ws)

    result, events = _follow_server(handler)
    assert result == "success"
    assert [e.kind for e in events] == ["executing", "start", "success"]


def test_execution_error_ends_in_error() -> None:
    error = {"node_id": "3", "node_type": "KSampler", "exception_message": "boom"}

    async def handler(ws: web.WebSocketResponse) -> None:
        await ws.send_str(_msg("executing", node="3"))
        await ws.send_str(_msg("execution_error", **error))
        await _wait_for_client_close(ws)

    result, events = _follow_server(handler)
    assert result == "error"
    assert events[-1].kind == "error"
    assert events[-1].raw["data"] == error


def test_server_closing_before_the_end_is_lost() -> None:
    async def handler(ws: web.WebSocketResponse) -> None:
        await ws.send_str(_msg("executing", node="3"))
        await ws.close()

    result, events = _follow_server(handler)
    assert result == "lost"
    assert [e.kind for e in events] == ["executing"]


def test_abrupt_disconnect_is_lost() -> None:
    async def handler(ws: web.WebSocketResponse) -> None:
        raise AssertionError("not reached")

    result, events = _follow_server(handler, path="/abort")
    assert result == "lost"
    assert [e.kind for e in events] == ["progress"]


def test_silence_past_the_timeout_is_lost() -> None:
    async def handler(ws: web.WebSocketResponse) -> None:
        await ws.send_str(_msg("executing", node="3"))
        await _wait_for_client_close(ws)

    result, events = _follow_server(handler, timeout=0.2)
    assert result == "lost"
    assert [e.kind for e in events] == ["executing"]


def test_handshake_refused_is_lost() -> None:
    async def handler(ws: web.WebSocketResponse) -> None:
        raise AssertionError("not reached")

    result, events = _follow_server(handler, path="/plain")
    assert (result, events) == ("lost", [])


def test_connection_refused_is_lost() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again at once: nothing listens there

    async def main() -> str:
        async with aiohttp.ClientSession() as session:
            return await follow(
                f"ws://127.0.0.1:{port}/ws", session=session, on_event=lambda e: None, timeout=5
            )

    assert asyncio.run(main()) == "lost"


def test_an_error_in_the_callback_is_not_swallowed() -> None:
    async def handler(ws: web.WebSocketResponse) -> None:
        await ws.send_str(_msg("executing", node="3"))
        await _wait_for_client_close(ws)

    def explode(event: ProgressEvent) -> None:
        raise KeyError("callback bug")

    async def main() -> str:
        runner, url = await _serve(handler)
        try:
            async with aiohttp.ClientSession() as session:
                return await follow(url, session=session, on_event=explode, timeout=5)
        finally:
            await runner.cleanup()

    with pytest.raises(KeyError, match="callback bug"):
        asyncio.run(main())


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('{"type": "executing", "data": {"node": "1"}}', "executing"),
        ('{"type": "executing"}'.encode("utf-16"), "executing"),
        (b'{"type": "progress"}', "progress"),
        (b"\xff\xfe\x00", None),
        ('{"no": "type"}', None),
        ("", None),
    ],
)
def test_decode_frame(data: str | bytes, expected: str | None) -> None:
    frame = decode_frame(data)
    assert (frame["type"] if frame else None) == expected


_KEY = "frame-key-0123456789abcdef"
_ESCAPED = "".join(f"\\u{ord(c):04x}" for c in _KEY)


def _executing(node: str, field: str) -> str:
    return '{"type": "executing", "data": {"node": "' + node + '", "' + field + '": 1}}'


@pytest.mark.parametrize(
    "data",
    [
        _executing(_KEY, _KEY),
        _executing(_ESCAPED, _ESCAPED),
        _executing(_KEY, _KEY).encode("utf-16"),
        "text around " + _executing(f"x {_KEY} y", _ESCAPED) + " text",
    ],
)
def test_a_frame_is_masked_whether_the_key_is_written_plain_or_escaped(data: str | bytes) -> None:
    client = Client(_KEY, "http://127.0.0.1:9")
    frame = decode_frame(data, client.mask)
    assert frame is not None and frame["type"] == "executing"
    assert _KEY not in json.dumps(frame, ensure_ascii=False)
    assert "***" in frame["data"]["node"] and "***" in frame["data"]
    assert decode_frame(data) is not None and _KEY in json.dumps(decode_frame(data))


def test_events_from_odd_frames() -> None:
    assert events_from_frame({"type": "execution_cached", "data": {"nodes": []}}) == [
        ProgressEvent(
            "cached", None, None, None, {"type": "execution_cached", "data": {"nodes": []}}
        )
    ]
    (event,) = events_from_frame({"type": "status", "data": {"status": "weird"}})
    assert (event.kind, event.value) == ("status", None)
    (event,) = events_from_frame({"type": "progress", "data": "not a dict"})
    assert (event.kind, event.node, event.value) == ("progress", None, None)
    assert events_from_frame({"type": "execution_interrupted", "data": {}})[0].kind == "error"
