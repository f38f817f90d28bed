"""The emulator's WebSocket progress stream and its TASK_END webhooks, with real sockets."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiohttp
import pytest
from PIL import Image
from test_emulator_api import create, finished_outputs, post, wait_for

from rhflow.api.follow import ProgressEvent, decode_frame, follow
from rhflow.emulator import Emulator, EmulatorConfig, events, images

# -- WebSocket ---------------------------------------------------------------------------------


async def _collect(
    url: str, *, previews: list[bytes] | None = None
) -> tuple[list[dict[str, Any]], list[float], int | None]:
    """Every text frame until the task is over, when each arrived, and the close code.

    Like ComfyUI's own clients, this one closes the socket itself once the prompt is done: on
    ``executing`` with node null. Binary frames go to
    ``previews`` (and fail the test when none are expected)."""
    messages: list[dict[str, Any]] = []
    times: list[float] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        async for frame in ws:
            if frame.type == aiohttp.WSMsgType.BINARY:
                assert previews is not None, "a binary frame nobody asked for"
                previews.append(frame.data)
                continue
            assert frame.type == aiohttp.WSMsgType.TEXT
            messages.append(json.loads(frame.data))
            times.append(time.monotonic())
            if _over(messages):
                break
        return messages, times, ws.close_code


def _over(messages: list[dict[str, Any]]) -> bool:
    return messages[-1]["type"] == "executing" and messages[-1]["data"]["node"] is None


def collect(url: str) -> tuple[list[dict[str, Any]], list[float], int | None]:
    return asyncio.run(_collect(url))


ENDING = ["status", "executing"]  # ComfyUI's prompt worker, once the prompt is over


def test_websocket_streams_comfyui_messages(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator(task_seconds=(0.3, 0.3), queue_seconds=0)
    data = create(emu, api_key)["data"]
    messages, times, _ = collect(data["netWssUrl"])
    kinds = [m["type"] for m in messages]
    assert kinds[:3] == ["status", "execution_start", "execution_cached"]
    assert messages[0]["data"] == {
        "status": {"exec_info": {"queue_remaining": 1}},
        "sid": data["clientId"],
    }
    # execution_success first, then (ComfyUI main.py, after execute() returns) task_done's
    # status of the emptied queue, then executing with node null.
    assert kinds[-3:] == ["execution_success", *ENDING]
    assert messages[-3]["data"]["prompt_id"] == data["taskId"]
    assert messages[-2]["data"] == {"status": {"exec_info": {"queue_remaining": 0}}}
    assert messages[-1]["data"] == {"node": None, "prompt_id": data["taskId"]}
    assert messages[2]["data"]["nodes"] == ["4", "6", "7"]
    executing = [m["data"]["node"] for m in messages if m["type"] == "executing"]
    assert executing == ["5", "3", "8", "9", None]
    progress = [m["data"] for m in messages if m["type"] == "progress"]
    assert [p["value"] for p in progress] == list(range(1, 21))
    assert all(p["node"] == "3" and p["max"] == 20 for p in progress)
    executed = [m["data"] for m in messages if m["type"] == "executed"]
    assert executed[0]["node"] == "9"
    assert executed[0]["output"]["images"][0]["filename"] == "ComfyUI_00001_.png"
    assert times[-1] - times[0] >= 0.15  # spread over the running time, not sent at once
    assert emu.stats()["websocket_connections"] == 1


def test_websocket_reports_a_failed_task(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator(fail_rate=1.0, queue_seconds=0)
    messages, _, _ = collect(create(emu, api_key)["data"]["netWssUrl"])
    assert [m["type"] for m in messages[-3:]] == ["execution_error", *ENDING]
    assert messages[-3]["data"]["node_id"] == "3"
    assert messages[-3]["data"]["exception_type"] == "torch.OutOfMemoryError"
    assert "execution_success" not in [m["type"] for m in messages]


def test_websocket_after_the_end_sends_the_terminal_message(
    emulator: Emulator, api_key: str
) -> None:
    data = create(emulator, api_key)["data"]
    finished_outputs(emulator, api_key, data["taskId"])
    messages, _, _ = collect(data["netWssUrl"])
    assert [m["type"] for m in messages] == ["status", "execution_success", *ENDING]
    assert messages[0]["data"]["status"] == {"exec_info": {"queue_remaining": 0}}


async def _idle(url: str) -> tuple[int | None, float, float]:
    """Read until the server closes: its close code, when the end came, when it closed."""
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        ended = 0.0
        async for frame in ws:
            if json.loads(frame.data)["type"] == "execution_success":
                ended = time.monotonic()
        return ws.close_code, ended, time.monotonic()


def test_websocket_stays_open_after_the_end_until_the_idle_timeout(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator(queue_seconds=0, ws_idle_seconds=0.6)
    url = create(emu, api_key)["data"]["netWssUrl"]
    close_code, ended, closed = asyncio.run(_idle(url))
    assert close_code == 1000 and ended > 0
    assert closed - ended >= 0.5  # kept open after the end, as ComfyUI keeps its socket


def test_a_client_that_closes_ends_the_socket_at_once(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator(queue_seconds=0, task_seconds=(5, 5))
    url = create(emu, api_key)["data"]["netWssUrl"]

    async def close_early() -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            await ws.receive_json()

    asyncio.run(close_early())
    wait_for(lambda: emu.stats()["websockets_open"] == 0)


def test_preview_frames_are_comfyui_binary_png_frames(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator(queue_seconds=0, previews=True)
    previews: list[bytes] = []
    messages, _, _ = asyncio.run(
        _collect(create(emu, api_key)["data"]["netWssUrl"], previews=previews)
    )
    assert len(previews) == sum(1 for m in messages if m["type"] == "progress") == 20
    for frame in previews:
        event, image_type = struct.unpack(">II", frame[:8])
        assert (event, image_type) == (1, 2)  # PREVIEW_IMAGE, PNG
        assert Image.open(io.BytesIO(frame[8:])).size == (64, 64)


def test_rhflows_follower_skips_preview_frames(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator(queue_seconds=0, previews=True)
    url = create(emu, api_key)["data"]["netWssUrl"]
    events: list[ProgressEvent] = []

    async def main() -> str:
        async with aiohttp.ClientSession() as session:
            return await follow(url, session=session, on_event=events.append, timeout=10)

    assert asyncio.run(main()) == "success"
    assert [e.kind for e in events if e.kind == "progress"] == ["progress"] * 20
    assert all(e.raw.get("type") for e in events)  # every event came from a JSON frame


def test_websocket_url_from_the_804_answer(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator(queue_seconds=(0.1, 0.1), task_seconds=(0.2, 0.2))
    task_id = create(emu, api_key)["data"]["taskId"]

    def running() -> dict[str, Any] | None:
        answer = post(emu, "/task/openapi/outputs", {"apiKey": api_key, "taskId": task_id})
        return answer if answer["code"] == 804 else None

    messages, _, _ = collect(wait_for(running)["data"]["netWssUrl"])
    assert messages[-3]["type"] == "execution_success"


def test_no_websocket_option_hands_out_no_url(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator(websocket=False, queue_seconds=0)
    data = create(emu, api_key)["data"]
    assert "netWssUrl" in data and data["netWssUrl"] is None
    answer = post(emu, "/task/openapi/outputs", {"apiKey": api_key, "taskId": data["taskId"]})
    assert answer == {"code": 804, "msg": "APIKEY_TASK_IS_RUNNING", "data": {"netWssUrl": None}}


def test_websocket_for_an_unknown_task_closes_with_a_reason(emulator: Emulator) -> None:
    url = emulator.url.replace("http", "ws") + "/ws/c_instance?clientId=x&taskId=1"
    messages, _, close_code = collect(url)
    assert messages == [] and close_code == 1008


async def _cancel_while_following(emu: Emulator, key: str) -> list[dict[str, Any]]:
    data = create(emu, key)["data"]
    messages: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(data["netWssUrl"]) as ws:
        first = await ws.receive_json()  # the stream has started: now cancel the task
        messages.append(first)
        await asyncio.to_thread(
            post, emu, "/task/openapi/cancel", {"apiKey": key, "taskId": data["taskId"]}
        )
        async for frame in ws:
            messages.append(json.loads(frame.data))
            if _over(messages):
                break
    return messages


def test_websocket_reports_a_cancel(make_emulator: Callable[..., Emulator], api_key: str) -> None:
    emu = make_emulator(task_seconds=(5, 5), queue_seconds=0)
    messages = asyncio.run(_cancel_while_following(emu, api_key))
    assert messages[0]["type"] == "status"
    assert [m["type"] for m in messages[-3:]] == ["execution_interrupted", *ENDING]


def test_stopping_the_emulator_ends_open_websockets(api_key: str) -> None:
    emu = Emulator(EmulatorConfig(task_seconds=(30, 30), queue_seconds=(0, 0))).start()
    url = create(emu, api_key)["data"]["netWssUrl"]

    async def follow() -> int | None:
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            await ws.receive_json()
            await asyncio.to_thread(emu.stop)
            async for _ in ws:
                pass
            return ws.close_code

    start = time.monotonic()
    assert asyncio.run(follow()) is not None
    assert time.monotonic() - start < 5
    with pytest.raises(RuntimeError, match="not running"):
        emu.stats()


# -- webhooks ----------------------------------------------------------------------------------


class Receiver:
    """A loopback HTTP server that records webhook POSTs and answers with ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict[str, Any]] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                self.send_response(receiver.status)
                self.end_headers()
                self.wfile.write(b"received")
                with receiver.arrived:
                    receiver.bodies.append(body)
                    receiver.arrived.notify_all()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def wait(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.bodies) >= count, timeout)
            return list(self.bodies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Callable[[int], Receiver]]:
    started: list[Receiver] = []

    def start(status: int = 200) -> Receiver:
        started.append(Receiver(status))
        return started[-1]

    yield start
    for item in started:
        item.close()


def detail(emu: Emulator, key: str, task_id: str) -> dict[str, Any]:
    return post(emu, "/task/openapi/getWebhookDetail", {"apiKey": key, "taskId": task_id})


def test_webhook_receives_task_end(
    emulator: Emulator, api_key: str, receiver: Callable[[int], Receiver]
) -> None:
    hook = receiver(200)
    task_id = create(emulator, api_key, webhookUrl=hook.url)["data"]["taskId"]
    body = hook.wait(1)[0]
    assert set(body) == {"event", "taskId", "eventData"}
    assert body["event"] == "TASK_END" and body["taskId"] == task_id
    event = json.loads(body["eventData"])
    assert event == finished_outputs(emulator, api_key, task_id)
    record = wait_for(
        lambda: (
            (d := detail(emulator, api_key, task_id)["data"])
            and d["callbackStatus"] == "SUCCESS"
            and d
        )
    )
    assert record["taskId"] == task_id and record["webhookUrl"] == hook.url
    assert record["eventData"] == body["eventData"] and record["retryCount"] == 0
    assert record["callbackResponse"] == "received"
    assert api_key not in json.dumps(record)
    assert set(record) >= {"id", "createTime", "updateTime"}


def test_webhook_of_a_failed_task_carries_the_805_answer(
    make_emulator: Callable[..., Emulator], api_key: str, receiver: Callable[[int], Receiver]
) -> None:
    emu = make_emulator(fail_rate=1.0)
    hook = receiver(200)
    create(emu, api_key, webhookUrl=hook.url)
    event = json.loads(hook.wait(1)[0]["eventData"])
    assert event["code"] == 805 and "failedReason" in event["data"]


def test_webhook_retries_then_fails_and_can_be_resent(
    make_emulator: Callable[..., Emulator], api_key: str, receiver: Callable[[int], Receiver]
) -> None:
    emu = make_emulator(webhook_retries=2, webhook_retry_delay=0.05)
    broken, good = receiver(500), receiver(200)
    task_id = create(emu, api_key, webhookUrl=broken.url)["data"]["taskId"]
    assert len(broken.wait(3)) == 3
    record = wait_for(
        lambda: (
            (d := detail(emu, api_key, task_id)["data"]) and d["callbackStatus"] == "FAILED" and d
        )
    )
    assert record["retryCount"] == 2 and "HTTP 500" in record["callbackResponse"]
    answer = post(
        emu,
        "/task/openapi/retryWebhook",
        {"apiKey": api_key, "webhookId": record["id"], "webhookUrl": good.url},
    )
    assert answer == {"code": 0, "msg": "", "data": None}
    assert good.wait(1)[0]["taskId"] == task_id
    wait_for(lambda: detail(emu, api_key, task_id)["data"]["callbackStatus"] == "SUCCESS")
    assert emu.stats()["webhooks"] == {"sent": 1, "failed": 1, "events": 1}


def test_webhook_to_a_closed_port_records_an_io_error(
    make_emulator: Callable[..., Emulator], api_key: str, receiver: Callable[[int], Receiver]
) -> None:
    emu = make_emulator(webhook_retries=0)
    closed = receiver(200)
    closed.close()
    task_id = create(emu, api_key, webhookUrl=closed.url)["data"]["taskId"]
    record = wait_for(
        lambda: (
            (d := detail(emu, api_key, task_id)["data"]) and d["callbackStatus"] == "FAILED" and d
        )
    )
    assert record["callbackResponse"].startswith(f'I/O error on POST request for "{closed.url}"')


def test_webhook_detail_without_a_webhook_is_code_1(emulator: Emulator, api_key: str) -> None:
    task_id = create(emulator, api_key)["data"]["taskId"]
    assert detail(emulator, api_key, task_id) == {
        "code": 1,
        "msg": "webhook event not exists",
        "data": None,
    }
    unknown = post(emulator, "/task/openapi/retryWebhook", {"apiKey": api_key, "webhookId": "123"})
    assert unknown["code"] == 1


def test_a_preview_holding_json_text_is_not_read_as_a_message() -> None:
    # A preview image can carry text (a JPEG comment, a PNG text chunk); JSON inside one must
    # not pass for a message, as it would if the frame were searched for a {...} block.
    jpeg = b"\xff\xd8\xff\xfe" + b'{"type": "execution_success"}' + b"\xff\xd9"
    assert decode_frame(events.preview_frame(jpeg)) is None
    png = images.render_png(8, 8, images.digest("x"))
    assert decode_frame(events.preview_frame(png)) is None
    assert decode_frame(b'{"type": "executing", "data": {"node": "3"}}') == {
        "type": "executing",
        "data": {"node": "3"},
    }
