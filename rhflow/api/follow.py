"""Follow a running task's progress on its WebSocket (``netWssUrl``).

RunningHub proxies the native ComfyUI WebSocket of the machine running the task. The frames are
ComfyUI's: ``status``, ``execution_start``, ``execution_cached``, ``executing``, ``progress``,
``executed``, ``execution_success``, ``execution_error``. :func:`follow` turns each into a
:class:`ProgressEvent` and reports how the socket ended. The socket is only a fast path: the
documentation calls it unstable, so any network trouble ends in ``"lost"`` (never an exception)
and the caller falls back to polling ``/task/openapi/outputs``.

    result = await follow(created.net_wss_url, session=session, on_event=print, timeout=600)
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # imported where a socket is opened: a run loads it while it starts
    import aiohttp

__all__ = ["FollowResult", "ProgressEvent", "decode_frame", "events_from_frame", "follow"]

log = logging.getLogger(__name__)

FollowResult = Literal["success", "error", "lost"]

#: ComfyUI message type -> ProgressEvent.kind
KINDS = {
    "status": "status",
    "execution_start": "start",
    "execution_cached": "cached",
    "executing": "executing",
    "progress": "progress",
    "executed": "executed",
    "execution_success": "success",
    "execution_error": "error",
    "execution_interrupted": "error",
}

ENCODINGS = ("utf-8", "utf-16", "latin-1")
HEARTBEAT = 30.0
CLOSE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """One ComfyUI message: its ``kind`` (see KINDS), node, and step ``value`` of ``max``."""

    kind: str
    node: str | None = None
    value: int | None = None
    max: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)


async def follow(
    url: str,
    *,
    session: aiohttp.ClientSession,
    on_event: Callable[[ProgressEvent], None],
    timeout: float | None = None,
    mask: Callable[[Any], Any] | None = None,
) -> FollowResult:
    """Call ``on_event`` for each message until the task ends or the socket is lost.

    ``mask`` (e.g. :meth:`rhflow.api.client.Client.mask`) cleans each decoded frame before
    anything is read from it, so that a key the server echoes reaches no event.

    Returns "success" on ``execution_success`` (or ``executing`` with node null once execution
    has started), "error" on ``execution_error``, and "lost" when the connection fails, closes
    before the end, or ``timeout`` seconds pass. Exceptions raised by ``on_event`` propagate.
    """
    try:
        return await asyncio.wait_for(_follow(url, session, on_event, mask), timeout)
    except asyncio.TimeoutError:
        log.debug("websocket %s: no end within %s s", url, timeout)
        return "lost"


async def _follow(
    url: str,
    session: aiohttp.ClientSession,
    on_event: Callable[[ProgressEvent], None],
    mask: Callable[[Any], Any] | None,
) -> FollowResult:
    ws = await _connect(session, url)
    if ws is None:
        return "lost"
    try:
        return await _read(ws, on_event, mask)
    finally:
        await _close(ws)


async def _read(
    ws: aiohttp.ClientWebSocketResponse[bool],
    on_event: Callable[[ProgressEvent], None],
    mask: Callable[[Any], Any] | None,
) -> FollowResult:
    started = False
    while True:
        frame = await _receive(ws, mask)
        if frame is None:
            return "lost"
        for event in events_from_frame(frame):
            on_event(event)
            if event.kind in ("success", "error"):
                return "success" if event.kind == "success" else "error"
            if event.kind == "executing" and event.node is None and started:
                return "success"
            started = started or event.kind in ("start", "cached", "executing", "progress")


async def _connect(
    session: aiohttp.ClientSession, url: str
) -> aiohttp.ClientWebSocketResponse[bool] | None:
    import aiohttp

    options: dict[str, Any] = {"heartbeat": HEARTBEAT, "max_msg_size": 0}
    ws_timeout = getattr(aiohttp, "ClientWSTimeout", None)
    if ws_timeout is not None:
        options["timeout"] = ws_timeout(ws_close=CLOSE_TIMEOUT)
    try:
        return await session.ws_connect(url, **options)
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        log.debug("websocket %s: cannot connect: %s", url, exc)
        return None


async def _receive(
    ws: aiohttp.ClientWebSocketResponse[bool], mask: Callable[[Any], Any] | None = None
) -> dict[str, Any] | None:
    """The next JSON message as a dict (cleaned by ``mask``); None once the socket is closed
    or broken."""
    import aiohttp

    while True:
        try:
            msg = await ws.receive()
        except (aiohttp.ClientError, OSError, RuntimeError) as exc:
            log.debug("websocket broke: %s", exc)
            return None
        if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            frame = decode_frame(msg.data, mask)
            if frame is not None:
                return frame
        elif msg.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        ):
            log.debug("websocket closed before the task ended (%s)", msg.type.name)
            return None


async def _close(ws: aiohttp.ClientWebSocketResponse[bool]) -> None:
    import aiohttp

    try:
        await ws.close()
    except (aiohttp.ClientError, OSError, RuntimeError, asyncio.TimeoutError) as exc:
        log.debug("websocket close failed: %s", exc)


def decode_frame(
    data: str | bytes, mask: Callable[[Any], Any] | None = None
) -> dict[str, Any] | None:
    """A frame's JSON object, from text or bytes in utf-8, utf-16 or latin-1; None if not JSON.

    As the official plugin does, a ``{...}`` block inside other text is found too. ComfyUI's
    binary frames (a 4-byte big-endian event type such as 1 = PREVIEW_IMAGE, then image bytes)
    are skipped: no JSON text starts with three zero bytes.

    ``mask`` (text or decoded JSON -> the same, a key masked) cleans the frame: its text
    before decoding when the text has no escapes (every string of the object is then
    written in it as it is, so masking the text masks them all, for the cost of one
    ``str.replace`` instead of a walk of the object), else the decoded object.
    """
    if isinstance(data, bytes) and data[:3] == b"\0\0\0":
        return None
    texts = [data] if isinstance(data, str) else list(_decodings(data))
    for text in texts:
        for candidate in (text, _braced(text)):
            if candidate is None:
                continue
            masked = mask is not None and "\\" not in candidate
            if masked and mask is not None:
                candidate = mask(candidate)
            try:
                value = json.loads(candidate)
            except ValueError:
                continue
            if isinstance(value, dict) and isinstance(value.get("type"), str):
                return value if masked or mask is None else mask(value)
    return None


def _decodings(data: bytes) -> Iterator[str]:
    for encoding in ENCODINGS:
        try:
            yield data.decode(encoding)
        except UnicodeDecodeError:
            continue


def _braced(text: str) -> str | None:
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else None


def events_from_frame(frame: dict[str, Any]) -> list[ProgressEvent]:
    """The events of one ComfyUI message: none for unknown types, one per node when cached."""
    kind = KINDS.get(frame.get("type", ""))
    if kind is None:
        return []
    data = frame.get("data")
    data = data if isinstance(data, dict) else {}
    if kind == "cached":
        nodes = data.get("nodes")
        nodes = nodes if isinstance(nodes, list) and nodes else [None]
        return [ProgressEvent("cached", _node(node), raw=frame) for node in nodes]
    if kind == "status":
        return [
            ProgressEvent(
                "status",
                value=_int(_dig(data, "status", "exec_info", "queue_remaining")),
                raw=frame,
            )
        ]
    return [
        ProgressEvent(
            kind,
            node=_node(data.get("node")),
            value=_int(data.get("value")),
            max=_int(data.get("max")),
            raw=frame,
        )
    ]


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _node(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    return str(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    try:
        return int(str(value))
    except ValueError:
        return None
