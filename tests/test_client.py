"""Every client method against the emulator over a real loopback socket."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from PIL import Image

from rhflow.api.client import Client, TaskOutputs
from rhflow.api.follow import ProgressEvent, follow
from rhflow.emulator import IMAGE_TO_IMAGE, TEXT_APP, TEXT_TO_IMAGE, TWO_OUTPUTS, Emulator
from rhflow.errors import (
    ApiError,
    FileTooLargeError,
    GenericError,
    InvalidNodeInfoError,
    LegacyTaskNotFoundError,
    ParamsInvalidError,
    PersonalQueueFullError,
    PromptValidationError,
    QueueFullError,
    ServerError,
    SystemBusyError,
    TaskExpiredError,
    TaskNotFoundError,
    TransportError,
    UnauthorizedError,
    UserNotFoundError,
    WalletInsufficientError,
    WebappNotFoundError,
    WorkflowNotFoundError,
)

SMALL: list[dict[str, Any]] = [
    {"nodeId": "5", "fieldName": "width", "fieldValue": 64},
    {"nodeId": "5", "fieldName": "height", "fieldValue": 64},
]
EmulatorFactory = Callable[..., Emulator]


@pytest.fixture
def client(emulator: Emulator, api_key: str) -> Iterator[Client]:
    with Client(api_key, emulator.url) as made:
        yield made


def _client(emu: Emulator, key: str) -> Client:
    return Client(key, emu.url, timeout=5)


def _wait(client: Client, task_id: str, seconds: float = 10.0) -> TaskOutputs:
    """Poll outputs until the task ends (tasks last 0.2 s here)."""
    deadline = time.monotonic() + seconds
    while True:
        result = client.outputs(task_id)
        if result.done:
            return result
        assert time.monotonic() < deadline, f"task {task_id} still {result.state}"
        time.sleep(0.02)


def _faults(emu: Emulator, **counts: int) -> None:
    requests.post(emu.url + "/emulator/faults", json=counts, timeout=5).raise_for_status()


def _requests(emu: Emulator, path: str) -> int:
    stats = requests.get(emu.url + "/emulator/stats", timeout=5).json()
    return int(stats["requests"].get(path, 0))


def _png(width: int, height: int, color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


# -- the API document's own flow ------------------------------------------------------------


def test_the_documented_example_flow(client: Client, tmp_path: Path) -> None:
    """Create with nodeInfoList, poll outputs, download the fileUrl: section 4.2 and 5.2."""
    node_info_list: list[dict[str, Any]] = [
        {"nodeId": "6", "fieldName": "text", "fieldValue": "1 girl in classroom"},
        {"nodeId": "3", "fieldName": "seed", "fieldValue": "1231231"},
        *SMALL,
    ]
    created = client.create_task("1904136902449209346", node_info_list)
    assert created.task_id.isdigit() and len(created.task_id) == 19
    assert created.status in ("QUEUED", "RUNNING")
    assert created.node_errors == {}
    assert created.prompt_tips is not None and created.prompt_tips["outputs_to_execute"] == ["9"]

    result = _wait(client, created.task_id)
    assert result.state == "SUCCESS" and result.succeeded
    (output,) = result.outputs
    assert (output.file_type, output.node_id) == ("png", "9")
    assert output.task_cost_time is not None and output.consume_coins is not None

    download = client.download(output.file_url, tmp_path / "out.png")
    data = download.path.read_bytes()
    assert download.sha256 == hashlib.sha256(data).hexdigest()
    assert download.bytes == len(data)
    with Image.open(download.path) as image:
        assert image.size == (64, 64)
    assert client.status(created.task_id) == "SUCCESS"


def test_simple_create_and_status_through_the_states(client: Client) -> None:
    created = client.create_task(TWO_OUTPUTS, SMALL)
    assert client.status(created.task_id) in ("QUEUED", "RUNNING")
    result = _wait(client, created.task_id)
    assert sorted((o.node_id, o.file_type) for o in result.outputs) == [("10", "txt"), ("9", "png")]
    assert client.status(created.task_id) == "SUCCESS"


def test_outputs_while_running_carry_the_websocket_url(client: Client) -> None:
    created = client.create_task(TEXT_TO_IMAGE, SMALL)
    running = client.outputs(created.task_id)
    assert (running.state, running.done) == ("RUNNING", False)
    assert running.message == "APIKEY_TASK_IS_RUNNING"
    assert running.net_wss_url is not None and running.net_wss_url.startswith("ws://127.0.0.1")


def test_queued_task_has_no_websocket_until_it_runs(
    make_emulator: EmulatorFactory, api_key: str
) -> None:
    emu = make_emulator(queue_seconds=(0.3, 0.3))
    with _client(emu, api_key) as client:
        created = client.create_task(TEXT_TO_IMAGE, SMALL)
        assert (created.status, created.net_wss_url) == ("QUEUED", None)
        queued = client.outputs(created.task_id)
        assert (queued.state, queued.message, queued.net_wss_url) == (
            "QUEUED",
            "APIKEY_TASK_IS_QUEUED",
            None,
        )
        assert client.status(created.task_id) == "QUEUED"
        assert _wait(client, created.task_id).succeeded


def test_the_documents_plain_form_of_unfinished_and_failed(
    make_emulator: EmulatorFactory, api_key: str
) -> None:
    emu = make_emulator(outputs_style="plain", queue_seconds=(0.2, 0.2))
    _faults(emu, fail_tasks=1)
    with _client(emu, api_key) as client:
        failing = client.create_task(TEXT_TO_IMAGE, SMALL)
        queued = client.outputs(failing.task_id)
        assert (queued.state, queued.message) == ("QUEUED", "任务正在排队中")
        failed = _wait(client, failing.task_id)
        assert (failed.state, failed.message) == ("FAILED", "任务执行失败")
        assert str(failed.failed_reason) == "the task failed: 任务执行失败"

        created = client.create_task(TEXT_TO_IMAGE, SMALL)
        states = set()
        while not (result := client.outputs(created.task_id)).done:
            states.add((result.state, result.message))
            time.sleep(0.02)
        assert states <= {("QUEUED", "任务正在排队中"), ("RUNNING", "任务正在运行中")}
        assert ("RUNNING", "任务正在运行中") in states
        assert result.succeeded


@pytest.mark.parametrize("style", ["string", "list"])
def test_failed_task_reason_with_either_traceback_form(
    make_emulator: EmulatorFactory, api_key: str, style: str
) -> None:
    emu = make_emulator(traceback_style=style)
    _faults(emu, fail_tasks=1)
    with _client(emu, api_key) as client:
        created = client.create_task(TEXT_TO_IMAGE, SMALL)
        result = _wait(client, created.task_id)
        assert (result.state, result.done, result.succeeded) == ("FAILED", True, False)
        assert result.message == "APIKEY_TASK_STATUS_ERROR"
        reason = result.failed_reason
        assert reason is not None
        assert reason.exception_type == "torch.OutOfMemoryError"
        assert reason.node_id and reason.node_name
        assert len(reason.traceback) >= 1
        assert all(line.startswith("  File ") for line in reason.traceback)
        assert str(reason).startswith(
            f"node {reason.node_id} ({reason.node_name}) raised torch.OutOfMemoryError: "
        )
        assert "\n" not in str(reason)
        queried = client.query(created.task_id)
        assert queried.state == "FAILED"
        assert queried.failed_reason is not None
        assert queried.failed_reason.traceback == reason.traceback


def test_success_with_no_outputs(make_emulator: EmulatorFactory, api_key: str) -> None:
    emu = make_emulator()
    _faults(emu, no_outputs=1)
    with _client(emu, api_key) as client:
        result = _wait(client, client.create_task(TEXT_TO_IMAGE, SMALL).task_id)
        assert (result.state, result.outputs) == ("SUCCESS", ())


# -- the other methods ---------------------------------------------------------------------


def test_query_reports_the_same_outputs(client: Client) -> None:
    created = client.create_task(TEXT_TO_IMAGE, SMALL)
    first = client.query(created.task_id)
    assert first.state in ("QUEUED", "RUNNING") and not first.done
    via_v1 = _wait(client, created.task_id)
    via_v2 = client.query(created.task_id)
    assert via_v2.state == "SUCCESS"
    assert [o.file_url for o in via_v2.outputs] == [o.file_url for o in via_v1.outputs]
    assert via_v2.outputs[0].node_id == "9"


def test_query_text_outputs(client: Client) -> None:
    created = client.create_task(TWO_OUTPUTS, SMALL)
    _wait(client, created.task_id)
    texts = [o.text for o in client.query(created.task_id).outputs if o.file_type == "txt"]
    assert texts and texts[0]


def test_query_of_an_unknown_task(client: Client) -> None:
    with pytest.raises(TaskExpiredError):
        client.query("1904737800233889793")


def test_get_workflow_json(client: Client) -> None:
    graph = client.get_workflow_json(1904136902449209346)
    assert {node: graph[node]["class_type"] for node in ("3", "4", "5", "6", "7", "8", "9")} == {
        "3": "KSampler",
        "4": "CheckpointLoaderSimple",
        "5": "EmptyLatentImage",
        "6": "CLIPTextEncode",
        "7": "CLIPTextEncode",
        "8": "VAEDecode",
        "9": "SaveImage",
    }


def test_whole_workflow_json_replaces_the_stored_graph(client: Client, tmp_path: Path) -> None:
    graph = client.get_workflow_json(TEXT_TO_IMAGE)
    graph["5"]["inputs"].update(width=32, height=48)
    created = client.create_task(TEXT_TO_IMAGE, workflow=graph, add_metadata=False)
    (output,) = _wait(client, created.task_id).outputs
    with Image.open(client.download(output.file_url, tmp_path / "w.png").path) as image:
        assert image.size == (32, 48)


def test_run_ai_app_with_a_19_digit_webapp_id(client: Client) -> None:
    assert int(TEXT_APP) > 2**53  # a float would round it
    created = client.run_ai_app(
        int(TEXT_APP), [{"nodeId": 6, "fieldName": "text", "fieldValue": "a cat"}, *SMALL]
    )
    assert _wait(client, created.task_id).succeeded


def test_run_quick_ai_app(client: Client) -> None:
    created = client.run_quick_ai_app(
        TEXT_APP,
        "002",
        [
            {
                "nodeId": "6",
                "nodeName": "CLIPTextEncode",
                "fieldName": "text",
                "fieldType": "STRING",
                "fieldValue": "a dog",
                "description": "prompt",
            },
            *SMALL,
        ],
    )
    assert _wait(client, created.task_id).succeeded


def test_cancel_a_running_task(client: Client) -> None:
    created = client.create_task(TEXT_TO_IMAGE, SMALL)
    client.cancel(created.task_id)
    result = client.outputs(created.task_id)
    assert result.state == "FAILED"
    assert result.failed_reason is not None
    assert result.failed_reason.exception_type == "InterruptedError"


def test_cancel_a_queued_task(make_emulator: EmulatorFactory, api_key: str) -> None:
    emu = make_emulator(queue_seconds=(5, 5))
    with _client(emu, api_key) as client:
        created = client.create_task(TEXT_TO_IMAGE, SMALL)
        assert created.status == "QUEUED"
        client.cancel(created.task_id)
        assert client.status(created.task_id) == "FAILED"
    stats = requests.get(emu.url + "/emulator/stats", timeout=5).json()
    assert stats["tasks"]["cancelled"] == 1


def test_account_counts_tasks_and_coins(make_emulator: EmulatorFactory, api_key: str) -> None:
    emu = make_emulator(coins=50, account="consumer", queue_seconds=0)  # running at once
    with _client(emu, api_key) as client:
        before = client.account()
        assert (before.remain_coins, before.current_task_counts, before.api_type) == (
            50.0,
            0,
            "NORMAL",
        )
        created = client.create_task(TEXT_TO_IMAGE, SMALL)
        assert client.account().current_task_counts == 1
        (output,) = _wait(client, created.task_id).outputs
        after = client.account()
        assert after.current_task_counts == 0
        assert after.remain_coins == 50.0 - (output.consume_coins or 0)
        assert output.consume_coins and output.consume_coins > 0


def test_upload_then_use_the_name_in_a_load_image_field(client: Client, tmp_path: Path) -> None:
    picture = _png(40, 24, (200, 10, 10))
    path = tmp_path / "red.png"
    path.write_bytes(picture)
    upload = client.upload(path)
    assert upload.file_name == f"api/{hashlib.sha256(picture).hexdigest()}.png"
    assert upload.file_type == "input"
    created = client.create_task(
        IMAGE_TO_IMAGE, [{"nodeId": "2", "fieldName": "image", "fieldValue": upload.file_name}]
    )
    (output,) = _wait(client, created.task_id).outputs
    with Image.open(client.download(output.file_url, tmp_path / "o.png").path) as image:
        assert image.size == (40, 24)


def test_upload_of_bytes_and_of_a_stream(client: Client) -> None:
    picture = _png(8, 8, (1, 2, 3))
    digest = hashlib.sha256(picture).hexdigest()
    assert client.upload(picture, file_type="image").file_name == f"api/{digest}.png"
    assert client.upload(io.BytesIO(picture), filename="x.png").file_name == f"api/{digest}.png"


def test_an_unknown_uploaded_name_is_refused_at_create_like_comfyui(client: Client) -> None:
    with pytest.raises(PromptValidationError) as info:
        client.create_task(
            IMAGE_TO_IMAGE,
            [{"nodeId": "2", "fieldName": "image", "fieldValue": "api/missing.png"}],
        )
    assert "Invalid image file: api/missing.png" in str(info.value)


# -- webhooks ------------------------------------------------------------------------------


class _Receiver:
    """A loopback webhook endpoint that hands each POSTed JSON body to the test."""

    def __init__(self) -> None:
        self.bodies: queue.Queue[dict[str, Any]] = queue.Queue()
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                bodies.put(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    made = _Receiver()
    yield made
    made.close()


def test_webhook_event_detail_and_retry(client: Client, receiver: _Receiver) -> None:
    created = client.create_task(TEXT_TO_IMAGE, SMALL, webhook_url=receiver.url)
    event = receiver.bodies.get(timeout=10)
    assert (event["event"], event["taskId"]) == ("TASK_END", created.task_id)
    from_hook = TaskOutputs.from_response(json.loads(event["eventData"]))
    assert from_hook == client.outputs(created.task_id)
    assert from_hook.succeeded

    detail = client.webhook_detail(created.task_id)
    assert (detail.task_id, detail.webhook_url, detail.callback_status) == (
        created.task_id,
        receiver.url,
        "SUCCESS",
    )
    assert detail.event_data == event["eventData"]
    assert detail.retry_count == 0 and detail.id.isdigit()

    client.retry_webhook(detail.id)
    assert receiver.bodies.get(timeout=10)["taskId"] == created.task_id


def test_webhook_detail_of_a_task_without_one(client: Client) -> None:
    created = client.create_task(TEXT_TO_IMAGE, SMALL)
    with pytest.raises(GenericError) as info:
        client.webhook_detail(created.task_id)
    assert str(info.value) == "RunningHub answered 1 ERROR: webhook event not exists"


# -- every error the emulator can produce ---------------------------------------------------


def test_301_missing_parameter(client: Client) -> None:
    with pytest.raises(ParamsInvalidError) as info:
        client.create_task("")
    assert info.value.code == 301 and not info.value.retryable


def test_301_bad_task_id(client: Client) -> None:
    with pytest.raises(ParamsInvalidError, match="taskId must be positive"):
        client.outputs("-5")


def test_380_unknown_workflow(client: Client) -> None:
    with pytest.raises(WorkflowNotFoundError) as info:
        client.create_task("1111111111111111111")
    assert str(info.value) == "RunningHub answered 380 WORKFLOW_NOT_EXISTS (check the workflow id)"
    with pytest.raises(WorkflowNotFoundError):
        client.get_workflow_json("1111111111111111111")


def test_wrong_api_path_is_http_404(emulator: Emulator, api_key: str) -> None:
    with Client(api_key, emulator.url + "/v9") as client, pytest.raises(ApiError) as info:
        client.status("1")
    assert (info.value.code, info.value.retryable, info.value.fatal) == (404, False, False)
    assert str(info.value) == (
        "RunningHub answered 404 HTTP_404: POST /task/openapi/status answered HTTP 404: "
        "no such endpoint; check --base-url"
    )


def test_416_empty_wallet_is_fatal(make_emulator: EmulatorFactory, api_key: str) -> None:
    emu = make_emulator(coins=0, account="consumer")
    with _client(emu, api_key) as client, pytest.raises(WalletInsufficientError) as info:
        client.create_task(TEXT_TO_IMAGE, SMALL)
    assert info.value.fatal


def test_421_at_the_concurrency_limit_is_busy(make_emulator: EmulatorFactory, api_key: str) -> None:
    emu = make_emulator(concurrency=1, task_seconds=(5, 5))
    with _client(emu, api_key) as client:
        first = client.create_task(TEXT_TO_IMAGE, SMALL)
        with pytest.raises(QueueFullError) as info:
            client.create_task(TEXT_TO_IMAGE, SMALL)
        assert info.value.busy and info.value.retryable and not info.value.fatal
        queued = client.create_task(TEXT_TO_IMAGE, SMALL, use_personal_queue=True)
        assert queued.status == "QUEUED"
        client.cancel(first.task_id)
        client.cancel(queued.task_id)


def test_421_injected(make_emulator: EmulatorFactory, api_key: str) -> None:
    emu = make_emulator()
    _faults(emu, create_busy=1)
    with _client(emu, api_key) as client:
        with pytest.raises(QueueFullError):
            client.create_task(TEXT_TO_IMAGE, SMALL)
        assert client.create_task(TEXT_TO_IMAGE, SMALL).task_id
    assert _requests(emu, "/task/openapi/create") == 2


def test_814_personal_queue_full(make_emulator: EmulatorFactory, api_key: str) -> None:
    emu = make_emulator(concurrency=1, personal_queue_limit=0, task_seconds=(5, 5))
    with _client(emu, api_key) as client:
        first = client.create_task(TEXT_TO_IMAGE, SMALL)
        with pytest.raises(PersonalQueueFullError) as info:
            client.create_task(TEXT_TO_IMAGE, SMALL, use_personal_queue=True)
        assert info.value.busy
        client.cancel(first.task_id)


def test_433_dangling_link_names_the_node(client: Client) -> None:
    graph = client.get_workflow_json(TEXT_TO_IMAGE)
    graph["9"]["inputs"]["images"] = ["99", 0]
    with pytest.raises(PromptValidationError) as info:
        client.create_task(TEXT_TO_IMAGE, workflow=json.dumps(graph))
    assert "9" in info.value.message and not info.value.retryable


def test_803_unknown_node_or_field(client: Client) -> None:
    with pytest.raises(InvalidNodeInfoError, match="no node '42'"):
        client.create_task(TEXT_TO_IMAGE, [{"nodeId": "42", "fieldName": "text", "fieldValue": 1}])
    with pytest.raises(InvalidNodeInfoError) as info:
        client.create_task(TEXT_TO_IMAGE, [{"nodeId": 3, "fieldName": "seeed", "fieldValue": 1}])
    assert info.value.code == 803


def test_802_unknown_key_is_fatal(make_emulator: EmulatorFactory, api_key: str) -> None:
    emu = make_emulator(api_keys=("another-key-entirely-000000000000",))
    with _client(emu, api_key) as client:
        with pytest.raises(UnauthorizedError) as info:
            client.account()
        assert info.value.fatal
        assert str(info.value) == "RunningHub answered 802 APIKEY_UNAUTHORIZED (check RH_API_KEY)"
        with pytest.raises(UserNotFoundError):
            client.query("1904737800233889793")


def test_807_unknown_task(client: Client) -> None:
    for call in (client.outputs, client.status):
        with pytest.raises(TaskNotFoundError):
            call("1904737800233889793")
    with pytest.raises(LegacyTaskNotFoundError):  # cancel answers 423 (API document 4.4)
        client.cancel("1904737800233889793")


def test_807_another_keys_task(client: Client, emulator: Emulator) -> None:
    created = client.create_task(TEXT_TO_IMAGE, SMALL)
    with (
        _client(emulator, "someone-else-0000000000000000000") as other,
        pytest.raises(TaskNotFoundError),
    ):
        other.outputs(created.task_id)


def test_809_file_too_large(make_emulator: EmulatorFactory, api_key: str) -> None:
    emu = make_emulator(upload_limit=1000)
    with _client(emu, api_key) as client, pytest.raises(FileTooLargeError) as info:
        client.upload(b"\0" * 1001, filename="big.png")
    assert str(info.value) == (
        "RunningHub answered 809 APIKEY_FILE_SIZE_EXCEEDED (files are limited to 30 MB)"
    )


def test_901_unknown_app(client: Client) -> None:
    with pytest.raises(WebappNotFoundError):
        client.run_ai_app("1877265245566922700", [])
    with pytest.raises(WebappNotFoundError):
        client.run_quick_ai_app("1877265245566922700", "001", [])


@pytest.mark.parametrize(
    ("fault", "error", "retryable"),
    [
        ("code_1011", SystemBusyError, True),
        ("http_500", ServerError, True),
        ("drop", TransportError, True),
    ],
)
def test_transient_faults_are_raised_once_and_never_retried(
    make_emulator: EmulatorFactory,
    api_key: str,
    fault: str,
    error: type[ApiError],
    retryable: bool,
) -> None:
    emu = make_emulator()
    _faults(emu, **{fault: 1})
    with _client(emu, api_key) as client:
        with pytest.raises(error) as info:
            client.create_task(TEXT_TO_IMAGE, SMALL)
        assert info.value.retryable is retryable
        assert api_key not in str(info.value)
        assert _requests(emu, "/task/openapi/create") == 1
        assert client.create_task(TEXT_TO_IMAGE, SMALL).task_id  # the next call is fine


# -- downloads -----------------------------------------------------------------------------


@pytest.fixture
def finished(
    make_emulator: EmulatorFactory, api_key: str
) -> Iterator[tuple[Emulator, Client, str]]:
    emu = make_emulator()
    with _client(emu, api_key) as client:
        (output,) = _wait(client, client.create_task(TEXT_TO_IMAGE, SMALL).task_id).outputs
        yield emu, client, output.file_url


def test_download_500_leaves_no_file(
    finished: tuple[Emulator, Client, str], tmp_path: Path
) -> None:
    emu, client, url = finished
    _faults(emu, download_500=1)
    with pytest.raises(ServerError) as info:
        client.download(url, tmp_path / "a.png")
    assert info.value.retryable
    assert list(tmp_path.iterdir()) == []
    assert client.download(url, tmp_path / "a.png").bytes > 0


def test_truncated_download_raises_and_leaves_no_file(
    finished: tuple[Emulator, Client, str], tmp_path: Path
) -> None:
    emu, client, url = finished
    _faults(emu, download_truncate=1)
    with pytest.raises(TransportError) as info:
        client.download(url, tmp_path / "a.png")
    assert info.value.retryable
    assert list(tmp_path.iterdir()) == []
    whole = client.download(url, tmp_path / "a.png")
    assert whole.sha256 == hashlib.sha256((tmp_path / "a.png").read_bytes()).hexdigest()


# -- the follower on the emulator's WebSocket ------------------------------------------------


def test_follow_a_task_on_the_emulators_websocket(client: Client) -> None:
    created = client.create_task(TEXT_TO_IMAGE, SMALL)
    assert created.net_wss_url is not None
    events: list[ProgressEvent] = []

    async def main() -> str:
        async with aiohttp.ClientSession() as session:
            return await follow(
                created.net_wss_url or "", session=session, on_event=events.append, timeout=10
            )

    assert asyncio.run(main()) == "success"
    kinds = [e.kind for e in events]
    assert kinds[:3] == ["status", "start", "cached"]
    assert "progress" in kinds and "executed" in kinds
    steps = [e for e in events if e.kind == "progress"]
    assert steps[-1].node == "3" and steps[-1].value == steps[-1].max == 20
    assert _wait(client, created.task_id).succeeded


def test_follow_a_failing_task(make_emulator: EmulatorFactory, api_key: str) -> None:
    emu = make_emulator(queue_seconds=0)  # netWssUrl from create
    _faults(emu, fail_tasks=1)
    with _client(emu, api_key) as client:
        created = client.create_task(TEXT_TO_IMAGE, SMALL)
        events: list[ProgressEvent] = []

        async def main() -> str:
            async with aiohttp.ClientSession() as session:
                return await follow(
                    created.net_wss_url or "", session=session, on_event=events.append, timeout=10
                )

        assert asyncio.run(main()) == "error"
        assert events[-1].raw["data"]["exception_type"] == "torch.OutOfMemoryError"


def test_threads_share_one_client_without_exhausting_its_pool(
    make_emulator: EmulatorFactory, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """16 calls at once (each answer takes 50 ms) all keep their connection for reuse."""
    client = _client(make_emulator(latency=0.05), api_key)
    barrier = threading.Barrier(16)

    def call(_: int) -> int:
        barrier.wait(timeout=10)
        return client.account().current_task_counts

    with caplog.at_level("WARNING", logger="urllib3"), ThreadPoolExecutor(16) as pool:
        counts = list(pool.map(call, range(16)))
    client.close()
    assert counts == [0] * 16
    assert "Connection pool is full" not in caplog.text


def test_a_short_key_that_occurs_inside_answers_does_not_corrupt_them(emulator: Emulator) -> None:
    # "k" occurs in taskId, clientId and netWssUrl: only error messages may be scrubbed,
    # never the answers themselves.
    with Client("k", emulator.url) as client:
        created = client.create_task(TEXT_TO_IMAGE)
        assert created.task_id.isdigit() and len(created.client_id or "") == 32
        while not (result := client.outputs(created.task_id)).done:
            time.sleep(0.05)
        assert result.succeeded and result.outputs[0].file_url.startswith(emulator.url)
        with pytest.raises(TaskNotFoundError) as info:
            client.outputs("1")
    assert str(info.value) == (
        "RunningHub answered 807 APIKEY_TASK_NOT_FOUND (no task with that id)"
    )
