"""The emulator's task clock, concurrency, output files, uploads, stats and workflow folders."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from test_emulator_api import create, finished_outputs, post, wait_for

from rhflow.emulator import (
    IMAGE_TO_IMAGE,
    TEXT_TO_IMAGE,
    TWO_OUTPUTS,
    VIDEO,
    Emulator,
    EmulatorConfig,
)
from rhflow.errors import UsageError


def status(emu: Emulator, key: str, task_id: str) -> str:
    answer: str = post(emu, "/task/openapi/status", {"apiKey": key, "taskId": task_id})["data"]
    return answer


def png_bytes(width: int, height: int, colour: tuple[int, int, int] = (200, 10, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def upload(
    emu: Emulator, key: str, data: bytes, name: str = "in.png", file_type: str = "image"
) -> dict[str, Any]:
    response = requests.post(
        emu.url + "/task/openapi/upload",
        data={"apiKey": key, "fileType": file_type},
        files={"file": (name, data, "image/png")},
        timeout=10,
    )
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


def images_of(emu: Emulator, key: str, **body: Any) -> list[bytes]:
    task_id = create(emu, key, **body)["data"]["taskId"]
    outputs = finished_outputs(emu, key, task_id)
    assert outputs["code"] == 0, outputs
    return [requests.get(item["fileUrl"], timeout=10).content for item in outputs["data"]]


# -- concurrency -------------------------------------------------------------------------------


def test_concurrency_limit_answers_421(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator(concurrency=2, task_seconds=(0.3, 0.3), queue_seconds=(0.1, 0.1))
    first = create(emu, api_key)["data"]["taskId"]
    create(emu, api_key)
    assert create(emu, api_key) == {"code": 421, "msg": "TASK_QUEUE_MAXED", "data": None}
    account = post(emu, "/uc/openapi/accountStatus", {"apikey": api_key})["data"]
    assert account["currentTaskCounts"] == "0"  # running tasks only: both still queue
    wait_for(lambda: status(emu, api_key, first) == "RUNNING")
    account = post(emu, "/uc/openapi/accountStatus", {"apikey": api_key})["data"]
    assert account["currentTaskCounts"] == "2"
    assert create(emu, "another-key")["code"] == 0  # the limit is per key
    wait_for(lambda: status(emu, api_key, first) == "SUCCESS")
    assert create(emu, api_key)["code"] == 0
    assert emu.stats()["peak_running"] == 3


def test_personal_queue_waits_for_a_free_slot(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator(concurrency=1, task_seconds=(0.2, 0.2), queue_seconds=0)
    first = create(emu, api_key)["data"]["taskId"]
    second = create(emu, api_key, usePersonalQueue="true")["data"]
    assert second["taskStatus"] == "QUEUED" and second["netWssUrl"] is None
    assert (
        post(emu, "/task/openapi/outputs", {"apiKey": api_key, "taskId": second["taskId"]})["code"]
        == 813
    )
    account = post(emu, "/uc/openapi/accountStatus", {"apikey": api_key})["data"]
    assert account["currentTaskCounts"] == "1"  # the waiting one is not running
    assert (emu.stats()["running"], emu.stats()["queued"]) == (1, 1)
    wait_for(lambda: status(emu, api_key, second["taskId"]) == "RUNNING")
    assert status(emu, api_key, first) == "SUCCESS"
    wait_for(lambda: status(emu, api_key, second["taskId"]) == "SUCCESS")
    stats = emu.stats()
    assert stats["peak_running"] == 1 and stats["peak_active"] == 2


def test_personal_queue_limit_is_814(make_emulator: Callable[..., Emulator], api_key: str) -> None:
    emu = make_emulator(concurrency=1, personal_queue_limit=2, task_seconds=(5, 5))
    create(emu, api_key)
    assert create(emu, api_key, usePersonalQueue=True)["code"] == 0
    assert create(emu, api_key, usePersonalQueue=True)["code"] == 0
    answer = create(emu, api_key, usePersonalQueue=True)
    assert answer == {"code": 814, "msg": "PERSONAL_QUEUE_COUNT_LIMIT", "data": None}


def test_queued_then_running_then_done_on_the_clock(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator(queue_seconds=(0.15, 0.15), task_seconds=(0.15, 0.15))
    data = create(emu, api_key)["data"]
    assert data["taskStatus"] == "QUEUED"
    assert status(emu, api_key, data["taskId"]) == "QUEUED"
    wait_for(lambda: status(emu, api_key, data["taskId"]) == "RUNNING")
    wait_for(lambda: status(emu, api_key, data["taskId"]) == "SUCCESS")


# -- output files ------------------------------------------------------------------------------


def test_images_are_pngs_of_the_requested_size_and_batch(emulator: Emulator, api_key: str) -> None:
    files = images_of(
        emulator,
        api_key,
        nodeInfoList=[
            {"nodeId": "5", "fieldName": "width", "fieldValue": 64},
            {"nodeId": "5", "fieldName": "height", "fieldValue": "48"},
            {"nodeId": "5", "fieldName": "batch_size", "fieldValue": 2},
        ],
    )
    assert len(files) == 2
    for data in files:
        image = Image.open(io.BytesIO(data))
        assert image.format == "PNG" and image.size == (64, 48)
        assert len(image.getcolors(maxcolors=1 << 16) or []) > 10
        assert "prompt" in image.info
    assert files[0] != files[1]


def test_images_are_deterministic_functions_of_the_inputs(emulator: Emulator, api_key: str) -> None:
    def run(seed: int) -> bytes:
        return images_of(
            emulator,
            api_key,
            nodeInfoList=[
                {"nodeId": "5", "fieldName": "width", "fieldValue": 32},
                {"nodeId": "5", "fieldName": "height", "fieldValue": 32},
                {"nodeId": "3", "fieldName": "seed", "fieldValue": seed},
            ],
        )[0]

    first, again, other = run(1), run(1), run(2)
    assert first == again
    assert first != other
    pixels = Image.open(io.BytesIO(first)).tobytes()
    assert pixels != Image.open(io.BytesIO(other)).tobytes()


def test_add_metadata_false_leaves_no_prompt_chunk(emulator: Emulator, api_key: str) -> None:
    nodes = [
        {"nodeId": "5", "fieldName": "width", "fieldValue": 16},
        {"nodeId": "5", "fieldName": "height", "fieldValue": 16},
    ]
    data = images_of(emulator, api_key, nodeInfoList=nodes, addMetadata=False)[0]
    assert "prompt" not in Image.open(io.BytesIO(data)).info


def test_two_output_workflow_yields_an_image_and_a_text(emulator: Emulator, api_key: str) -> None:
    task_id = create(
        emulator,
        api_key,
        workflowId=TWO_OUTPUTS,
        nodeInfoList=[
            {"nodeId": "5", "fieldName": "width", "fieldValue": 16},
            {"nodeId": "5", "fieldName": "height", "fieldValue": 16},
            {"nodeId": "10", "fieldName": "text", "fieldValue": "hello caption"},
        ],
    )["data"]["taskId"]
    items = finished_outputs(emulator, api_key, task_id)["data"]
    assert [(i["nodeId"], i["fileType"]) for i in items] == [("9", "png"), ("10", "txt")]
    text = requests.get(items[1]["fileUrl"], timeout=10).text
    assert text == "hello caption"  # what SaveText writes, nothing more


def test_video_workflow_yields_an_mp4_like_file(emulator: Emulator, api_key: str) -> None:
    task_id = create(emulator, api_key, workflowId=VIDEO)["data"]["taskId"]
    items = finished_outputs(emulator, api_key, task_id)["data"]
    assert [i["fileType"] for i in items] == ["mp4"]
    response = requests.get(items[0]["fileUrl"], timeout=10)
    assert response.headers["Content-Type"] == "video/mp4"
    assert response.content[4:8] == b"ftyp"


def test_handed_out_urls_ignore_the_host_header(emulator: Emulator, api_key: str) -> None:
    headers = {"Host": "www.runninghub.cn"}
    answer = post(
        emulator,
        "/task/openapi/create",
        {"apiKey": api_key, "workflowId": TEXT_TO_IMAGE},
        headers=headers,
    )
    assert answer["data"]["netWssUrl"].startswith(emulator.url.replace("http://", "ws://"))

    def done() -> dict[str, Any] | None:
        result = post(
            emulator,
            "/task/openapi/outputs",
            {"apiKey": api_key, "taskId": answer["data"]["taskId"]},
            headers=headers,
        )
        return result if result["code"] == 0 else None

    assert wait_for(done)["data"][0]["fileUrl"].startswith(emulator.url + "/files/")


# -- uploads -----------------------------------------------------------------------------------


def test_upload_returns_a_sha256_name_and_echoes_file_type(
    emulator: Emulator, api_key: str
) -> None:
    data = png_bytes(40, 30)
    answer = upload(emulator, api_key, data, file_type="image")
    digest = hashlib.sha256(data).hexdigest()
    assert answer == {
        "code": 0,
        "msg": "success",
        "data": {"fileName": f"api/{digest}.png", "fileType": "image"},
    }
    assert upload(emulator, api_key, data, file_type="input")["data"]["fileType"] == "input"


def test_uploaded_image_feeds_image_to_image(emulator: Emulator, api_key: str) -> None:
    name = upload(emulator, api_key, png_bytes(40, 30))["data"]["fileName"]
    files = images_of(
        emulator,
        api_key,
        workflowId=IMAGE_TO_IMAGE,
        nodeInfoList=[{"nodeId": "2", "fieldName": "image", "fieldValue": name}],
    )
    assert Image.open(io.BytesIO(files[0])).size == (40, 30)


def test_default_example_image_always_exists(emulator: Emulator, api_key: str) -> None:
    files = images_of(emulator, api_key, workflowId=IMAGE_TO_IMAGE)
    assert Image.open(io.BytesIO(files[0])).size == (64, 64)


def test_never_uploaded_file_is_refused_at_create_like_comfyui(
    emulator: Emulator, api_key: str
) -> None:
    missing = "api/" + "0" * 64 + ".png"
    answer = create(
        emulator,
        api_key,
        workflowId=IMAGE_TO_IMAGE,
        nodeInfoList=[{"nodeId": "2", "fieldName": "image", "fieldValue": missing}],
    )
    assert answer["code"] == 433
    tips = json.loads(answer["data"]["promptTips"])
    assert tips["result"] is False
    assert tips["error"]["type"] == "prompt_outputs_failed_validation"
    (error,) = tips["node_errors"]["2"]["errors"]
    assert tips["node_errors"]["2"]["class_type"] == "LoadImage"
    assert error == {
        "type": "custom_validation_failed",
        "message": "Custom validation failed for node",
        "details": f"image - Invalid image file: {missing}",
        "extra_info": {"input_name": "image", "received_value": missing},
    }
    assert emulator.stats()["tasks"]["created"] == len(emulator.stats()["task_records"])


def test_load_image_accepts_names_the_served_workflows_hold(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    graph = json.loads(
        post(
            make_emulator(),
            "/api/openapi/getJsonApiFormat",
            {"apiKey": api_key, "workflowId": IMAGE_TO_IMAGE},
        )["data"]["prompt"]
    )
    graph["2"]["inputs"]["image"] = "portrait.jpg"  # a file the server's workflow names
    (tmp_path / "1111111111111111111.json").write_text(json.dumps(graph))
    emu = make_emulator(workflows_dir=str(tmp_path))
    assert create(emu, api_key, workflowId="1111111111111111111")["code"] == 0
    refused = create(
        emu,
        api_key,
        workflowId=IMAGE_TO_IMAGE,
        nodeInfoList=[{"nodeId": "2", "fieldName": "image", "fieldValue": "other.jpg"}],
    )
    assert refused["code"] == 433


def test_upload_over_the_limit_is_809(make_emulator: Callable[..., Emulator], api_key: str) -> None:
    emu = make_emulator(upload_limit=1000)
    assert upload(emu, api_key, b"x" * 1000, name="ok.bin")["code"] == 0
    answer = upload(emu, api_key, b"x" * 5000, name="big.bin")
    assert answer == {"code": 809, "msg": "APIKEY_FILE_SIZE_EXCEEDED", "data": None}


def test_upload_without_file_or_key_is_301(emulator: Emulator, api_key: str) -> None:
    no_file = requests.post(
        emulator.url + "/task/openapi/upload", files={"apiKey": (None, api_key)}, timeout=10
    ).json()
    assert no_file["code"] == 301 and "file" in no_file["msg"]
    no_key = requests.post(
        emulator.url + "/task/openapi/upload", files={"file": ("a.png", b"123")}, timeout=10
    ).json()
    assert no_key["code"] == 301


# -- faults on tasks and downloads --------------------------------------------------------------


def _faults(emu: Emulator, **counters: int) -> None:
    assert requests.post(emu.url + "/emulator/faults", json=counters, timeout=10).ok


def test_fail_tasks_fault_fails_the_next_task_only(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator()
    _faults(emu, fail_tasks=1)
    failed = create(emu, api_key)["data"]["taskId"]
    ok = create(emu, api_key)["data"]["taskId"]
    assert finished_outputs(emu, api_key, failed)["code"] == 805
    assert finished_outputs(emu, api_key, ok)["code"] == 0
    assert emu.stats()["tasks"]["failed"] == 1


def test_no_outputs_fault(make_emulator: Callable[..., Emulator], api_key: str) -> None:
    emu = make_emulator()
    _faults(emu, no_outputs=1)
    task_id = create(emu, api_key)["data"]["taskId"]
    assert finished_outputs(emu, api_key, task_id) == {"code": 0, "msg": "success", "data": []}


def test_download_faults(make_emulator: Callable[..., Emulator], api_key: str) -> None:
    emu = make_emulator()
    url = finished_outputs(emu, api_key, create(emu, api_key)["data"]["taskId"])["data"][0][
        "fileUrl"
    ]
    _faults(emu, download_500=1, download_truncate=1)
    assert requests.get(url, timeout=10).status_code == 500
    with pytest.raises(requests.RequestException):
        requests.get(url, timeout=10)
    full = requests.get(url, timeout=10)
    assert full.status_code == 200 and Image.open(io.BytesIO(full.content)).size == (512, 512)


def test_unknown_output_file_is_404(emulator: Emulator) -> None:
    assert requests.get(emulator.url + "/files/1/nothing.png", timeout=10).status_code == 404


# -- stats -------------------------------------------------------------------------------------


def test_stats_count_requests_bytes_and_duplicates(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator()
    nodes = [
        {"nodeId": "5", "fieldName": "width", "fieldValue": 16},
        {"nodeId": "5", "fieldName": "height", "fieldValue": 16},
    ]
    first = images_of(emu, api_key, nodeInfoList=nodes)
    second = images_of(emu, api_key, nodeInfoList=list(reversed(nodes)))
    third = images_of(emu, api_key, nodeInfoList=nodes)
    upload(emu, api_key, b"abc", name="a.txt")
    stats = requests.get(emu.url + "/emulator/stats", timeout=10).json()
    assert stats == emu.stats() | {"requests": stats["requests"]}
    assert stats["tasks"] == {
        "created": 3,
        "succeeded": 3,
        "failed": 0,
        "cancelled": 0,
        "duplicates": 1,
    }
    assert stats["requests"]["/task/openapi/create"] == 3
    assert stats["requests"]["/task/openapi/upload"] == 1
    assert stats["bytes_served"] == sum(len(d) for d in first + second + third)
    assert stats["uploads"] == 1 and stats["running"] == 0 and stats["queued"] == 0
    assert len(stats["task_records"]) == 3
    assert api_key not in json.dumps(stats)


# -- configuration -----------------------------------------------------------------------------


def test_workflows_folder_adds_workflows(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    graph = {
        "1": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 24, "height": 20, "batch_size": 1},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "mine"}},
    }
    (tmp_path / "1234567890123456789.json").write_text(json.dumps(graph))
    emu = make_emulator(workflows_dir=str(tmp_path))
    answer = post(
        emu,
        "/api/openapi/getJsonApiFormat",
        {"apiKey": api_key, "workflowId": "1234567890123456789"},
    )
    assert json.loads(answer["data"]["prompt"]) == graph
    files = images_of(emu, api_key, workflowId="1234567890123456789")
    assert Image.open(io.BytesIO(files[0])).size == (24, 20)


def test_bad_workflow_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "99.json").write_text("{nope")
    with pytest.raises(UsageError, match=r"--workflows: cannot read .*99\.json"):
        Emulator(EmulatorConfig(workflows_dir=str(tmp_path))).start()


def test_port_in_use_is_a_usage_error(emulator: Emulator) -> None:
    port = int(emulator.url.rsplit(":", 1)[1])
    with pytest.raises(UsageError, match=f"cannot listen on 127.0.0.1:{port}"):
        Emulator(EmulatorConfig(port=port)).start()


def test_config_rejects_bad_values() -> None:
    with pytest.raises(UsageError) as caught:
        EmulatorConfig(fail_rate=2)
    assert str(caught.value) == (
        "invalid emulator settings: fail_rate (--fail-rate) must be between 0 and 1, got 2"
    )
    with pytest.raises(UsageError, match=r"concurrency \(--concurrency\) must be at least 1"):
        EmulatorConfig(concurrency=0)
    with pytest.raises(UsageError, match="MIN must not exceed MAX"):
        EmulatorConfig(task_seconds=(3, 1))


def test_from_cli_parses_ranges_and_flags() -> None:
    config = EmulatorConfig.from_cli(
        host="127.0.0.1",
        port=0,
        task_seconds="1-3",
        queue_seconds="0.5",
        concurrency=2,
        fail_rate=0.1,
        error_rate=0.0,
        latency=0.0,
        no_websocket=True,
        workflows_dir=None,
        api_keys=("a", "b"),
        seed=7,
        coins=10,
        outputs_style="plain",
        traceback_style="list",
    )
    assert config.task_seconds == (1.0, 3.0) and config.queue_seconds == (0.5, 0.5)
    assert config.websocket is False and config.api_keys == ("a", "b")
    assert config.outputs_style == "plain" and config.seed == 7


@pytest.mark.parametrize("text", ["abc", "1-2-3", "", "3-1", "-1"])
def test_from_cli_rejects_bad_durations(text: str) -> None:
    with pytest.raises(UsageError, match="--task-seconds"):
        EmulatorConfig.from_cli(task_seconds=text)
