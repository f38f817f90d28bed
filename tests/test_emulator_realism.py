"""The emulator behaves like the real service where clients notice (issue 8), over loopback:
queueing by default, accounts, the endpoints real clients call, validation, and the business
codes a client meets in real life, produced on demand and handled by rhflow."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from test_emulator_api import create, finished_outputs, post, wait_for
from test_executor import faults, run, sweep_yaml, write

from rhflow.api.client import Client
from rhflow.emulator import (
    IMAGE_TO_IMAGE,
    TEXT_APP,
    TEXT_TO_IMAGE,
    TWO_OUTPUTS,
    VIDEO,
    Emulator,
    EmulatorConfig,
)
from rhflow.errors import (
    ApiError,
    CorpKeyInvalidError,
    ExclusiveApiRequiredError,
    FreeUserError,
    InstanceNotFoundError,
    InsufficientFundsError,
    LegacyTaskNotFoundError,
    UserNotFoundError,
    WorkflowNotSavedError,
)

Factory = Callable[..., Emulator]
SMALL = [
    {"nodeId": "5", "fieldName": "width", "fieldValue": 64},
    {"nodeId": "5", "fieldName": "height", "fieldValue": 64},
]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pipelines' relative ``output`` folders resolve against the working directory."""
    monkeypatch.chdir(tmp_path)


def outputs(emu: Emulator, key: str, task_id: str) -> dict[str, Any]:
    return post(emu, "/task/openapi/outputs", {"apiKey": key, "taskId": task_id})


# -- 1. tasks queue by default -----------------------------------------------------------------


def test_queueing_is_the_default_and_short() -> None:
    low, high = EmulatorConfig().queue_seconds
    assert 0 < low < high <= 1.0


def test_a_queued_task_has_no_websocket_until_it_runs(make_emulator: Factory, api_key: str) -> None:
    emu = make_emulator()  # the default queueing
    data = create(emu, api_key)["data"]
    assert data["taskStatus"] == "QUEUED" and data["netWssUrl"] is None
    assert outputs(emu, api_key, data["taskId"]) == {
        "code": 813,
        "msg": "APIKEY_TASK_IS_QUEUED",
        "data": None,
    }
    running = wait_for(lambda: (a := outputs(emu, api_key, data["taskId"]))["code"] == 804 and a)
    assert running["data"]["netWssUrl"].startswith(emu.url.replace("http", "ws") + "/ws/")
    assert finished_outputs(emu, api_key, data["taskId"])["code"] == 0


def test_queue_seconds_zero_runs_at_once(make_emulator: Factory, api_key: str) -> None:
    data = create(make_emulator(queue_seconds=0), api_key)["data"]
    assert data["taskStatus"] == "RUNNING" and data["netWssUrl"].startswith("ws://")


def test_rhflow_runs_a_sweep_with_the_default_queueing(
    make_emulator: Factory, api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(task_seconds=(0.6, 0.6))  # longer than a poll: each is seen running
    events: list[dict[str, Any]] = []
    result = run(emu, write(tmp_path, sweep_yaml(3)), api_key, events)
    assert result.manifest.status == "succeeded" and result.manifest.counts["succeeded"] == 3
    assert {e["status"] for e in events if e["event"] == "task_submitted"} == {"queued"}
    stats = emu.stats()
    assert stats["tasks"]["created"] == 3 and stats["websocket_connections"] == 3


# -- 7. accounts -------------------------------------------------------------------------------


def test_a_consumer_key_runs_one_task_at_a_time(make_emulator: Factory, api_key: str) -> None:
    emu = make_emulator(account="consumer", task_seconds=(0.5, 0.5))
    assert create(emu, api_key)["code"] == 0
    assert create(emu, api_key)["code"] == 421
    # usePersonalQueue works for enterprise (exclusive) keys only
    assert create(emu, api_key, usePersonalQueue=True)["code"] == 421


def test_concurrency_overrides_the_account(make_emulator: Factory, api_key: str) -> None:
    emu = make_emulator(account="consumer", concurrency=2, task_seconds=(1, 1))
    assert [create(emu, api_key)["code"] for _ in range(3)] == [0, 0, 421]


def test_an_enterprise_key_queues_personally_and_pays_money(
    make_emulator: Factory, api_key: str
) -> None:
    # the first task runs long enough that the second is created while it runs, even under load
    emu = make_emulator(concurrency=1, money=0.02, queue_seconds=0, task_seconds=(2, 2))
    first = create(emu, api_key)["data"]["taskId"]
    queued = create(emu, api_key, usePersonalQueue=True)["data"]
    assert queued["taskStatus"] == "QUEUED"
    done = finished_outputs(emu, api_key, first)["data"][0]
    assert (done["consumeMoney"], done["consumeCoins"]) == ("0.01", "0")
    finished_outputs(emu, api_key, queued["taskId"])
    account = post(emu, "/uc/openapi/accountStatus", {"apikey": api_key})["data"]
    assert (account["remainMoney"], account["currency"], account["remainCoins"]) == (
        "0.00",
        "CNY",
        "100000",
    )
    assert create(emu, api_key) == {
        "code": 812,
        "msg": "CORPAPIKEY_INSUFFICIENT_FUNDS",
        "data": None,
    }


def test_current_task_counts_counts_running_tasks_only(
    make_emulator: Factory, api_key: str
) -> None:
    emu = make_emulator(queue_seconds=(0.3, 0.3), task_seconds=(0.5, 0.5))
    task_id = create(emu, api_key)["data"]["taskId"]
    counts = post(emu, "/uc/openapi/accountStatus", {"apikey": api_key})["data"]
    assert counts["currentTaskCounts"] == "0"
    wait_for(lambda: outputs(emu, api_key, task_id)["code"] == 804)
    counts = post(emu, "/uc/openapi/accountStatus", {"apikey": api_key})["data"]
    assert counts["currentTaskCounts"] == "1"


# -- 7. business codes on demand, and how rhflow takes each ------------------------------------

CREATE = "/task/openapi/create"
CODES = [
    (806, UserNotFoundError, True),
    (801, FreeUserError, True),
    (811, CorpKeyInvalidError, True),
    (812, InsufficientFundsError, True),
    (436, ExclusiveApiRequiredError, True),
    (810, WorkflowNotSavedError, False),
    (435, InstanceNotFoundError, False),
]


@pytest.mark.parametrize(("code", "error", "fatal"), CODES)
def test_the_client_raises_the_class_of_each_code(
    make_emulator: Factory, api_key: str, code: int, error: type[ApiError], fatal: bool
) -> None:
    emu = make_emulator()
    faults(emu, **{f"code_{code}:{CREATE}": 1})
    with Client(api_key, emu.url) as client:
        with pytest.raises(error) as info:
            client.create_task(TEXT_TO_IMAGE, SMALL)
        assert info.value.code == code and info.value.fatal is fatal
        assert client.create_task(TEXT_TO_IMAGE, SMALL).task_id  # the fault was used up


@pytest.mark.parametrize(("code", "error", "fatal"), CODES)
def test_the_executor_stops_or_fails_one_task_for_each_code(
    make_emulator: Factory,
    api_key: str,
    tmp_path: Path,
    code: int,
    error: type[ApiError],
    fatal: bool,
) -> None:
    emu = make_emulator()
    faults(emu, **{f"code_{code}:{CREATE}": 1})
    manifest = run(emu, write(tmp_path, sweep_yaml(2, concurrency=1)), api_key).manifest
    assert manifest.status == "failed"
    if fatal:  # nothing else can succeed: the run stops, nothing more is sent
        assert (manifest.counts["failed"], manifest.counts["pending"]) == (1, 1)
        assert emu.stats()["tasks"]["created"] == 0
        assert error.name in manifest.errors[0]
    else:  # this task cannot run; the others still do
        assert (manifest.counts["failed"], manifest.counts["succeeded"]) == (1, 1)
        failed = next(t for t in manifest.tasks if t.status == "failed")
        assert error.name in json.dumps([failed.failure, failed.failure_detail])
    assert emu.stats()["tasks"]["duplicates"] == 0


def test_423_on_cancel_reaches_the_client_and_a_timed_out_task_still_ends(
    make_emulator: Factory, api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(queue_seconds=0, task_seconds=(5, 5))
    faults(emu, **{"code_423:/task/openapi/cancel": 1})
    with Client(api_key, emu.url) as client:
        created = client.create_task(TEXT_TO_IMAGE, SMALL)
        with pytest.raises(LegacyTaskNotFoundError):
            client.cancel(created.task_id)
        client.cancel(created.task_id)
    faults(emu, **{"code_423:/task/openapi/cancel": 1})
    text = sweep_yaml(1, timeout=0.5)
    manifest = run(emu, write(tmp_path, text), api_key).manifest
    (task,) = manifest.tasks
    assert task.status == "failed" and task.failure_detail is not None
    assert task.failure_detail["kind"] == "timeout"
    assert task.failure_detail["message"].endswith(  # not "cancelled": it may still run
        f"cancelling remote task {task.task_id} failed: "
        "RunningHub answered 423 TASK_NOT_FOUNED (no task with that id)"
    )


def test_codes_reach_v2_clients_as_strings(make_emulator: Factory, api_key: str) -> None:
    emu = make_emulator()
    path = f"/openapi/v2/run/workflow/{TEXT_TO_IMAGE}"
    faults(emu, **{f"code_812:{path}": 1})
    answer = post(emu, path, {}, headers={"Authorization": f"Bearer {api_key}"})
    assert (answer["errorCode"], answer["errorMessage"]) == ("812", "CORPAPIKEY_INSUFFICIENT_FUNDS")


# -- 5. endpoints real clients call ------------------------------------------------------------


def test_v2_aiapp_list_pages_the_apps(emulator: Emulator, api_key: str) -> None:
    for auth in (f"Bearer {api_key}", api_key):  # the OpenClaw skill sends the bare key
        answer = post(
            emulator,
            "/openapi/v2/aiapp/list",
            {"current": 1, "size": 10},
            headers={"Authorization": auth},
        )
        assert answer["code"] == 0
        data = answer["data"]
        assert (data["current"], data["size"], data["total"], data["pages"]) == (1, 10, 1, 1)
        assert data["hasNext"] is False
        (record,) = data["records"]
        assert record["webappId"] == TEXT_APP
        assert set(record) >= {"title", "description", "cover", "invokeExample"}
    too_big = post(
        emulator,
        "/openapi/v2/aiapp/list",
        {"size": 51},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert too_big["code"] == 301
    no_key = post(emulator, "/openapi/v2/aiapp/list", {}, headers={"Authorization": "Bearer "})
    assert no_key["code"] == 806


def test_v2_queue_status_and_api_key_list(make_emulator: Factory, api_key: str) -> None:
    emu = make_emulator(queue_seconds=0, task_seconds=(2, 2))
    create(emu, api_key)
    headers = {"Authorization": f"Bearer {api_key}"}
    status = requests.get(emu.url + "/openapi/v2/queue/status", headers=headers, timeout=5)
    assert status.json() == {
        "code": 0,
        "msg": "success",
        "data": {
            "apiKeyType": "EXCLUSIVE",
            "concurrentLimit": 50,
            "runningCount": 1,
            "queuedCount": 0,
            "totalCurrentTasks": 1,
            "instanceCount": 50,
        },
    }
    keys = requests.get(emu.url + "/openapi/v2/api-key/list", headers=headers, timeout=5).json()
    (entry,) = keys["data"]
    assert entry["key"] == api_key[:4] + "*" * 24 + api_key[-4:]
    assert api_key not in json.dumps(keys)
    assert set(entry) == {
        "key",
        "apiKeyName",
        "status",
        "quotaLimit",
        "quotaUsed",
        "visible",
        "expireAt",
        "createdAt",
    }


def test_lora_upload_url_then_put_then_cached(emulator: Emulator, api_key: str) -> None:
    lora = b"not really safetensors"
    md5 = hashlib.md5(lora).hexdigest()
    body = {"apiKey": api_key, "loraName": "style.safetensors", "md5Hex": md5}
    first = post(emulator, "/api/openapi/getLoraUploadUrl", body)
    assert first["code"] == 0
    assert first["data"]["fileName"] == f"api-lora-cn/{md5}.safetensors"
    bad = requests.put(first["data"]["url"], data=b"other bytes", timeout=5)
    assert bad.status_code == 400
    put = requests.put(
        first["data"]["url"],
        data=lora,
        headers={"Content-Type": "application/octet-stream"},
        timeout=5,
    )
    assert put.status_code == 200
    again = post(emulator, "/api/openapi/getLoraUploadUrl", body)
    assert again["data"] == {"fileName": f"api-lora-cn/{md5}.safetensors"}  # no url: cached
    assert post(emulator, "/api/openapi/getLoraUploadUrl", {**body, "md5Hex": "x"})["code"] == 301


def test_quick_creation_model_params(emulator: Emulator, api_key: str) -> None:
    answer = post(
        emulator,
        "/api/fast/creation/model/params",
        {"apiKey": api_key, "type": 1, "webappId": TEXT_APP},
    )
    assert answer["code"] == 0 and answer["data"]
    assert set(answer["data"][0]) == {  # the fields of section 7.2
        "id",
        "type",
        "webappId",
        "modelCategory",
        "modelName",
        "modelKey",
        "modelPreviewUrl",
        "content",
        "modelTrigger",
        "modelLoar1FileName",
        "modelLoar1Weight",
        "modelLoar2FileName",
        "modelLoar2Weight",
    }
    unknown = post(
        emulator, "/api/fast/creation/model/params", {"apiKey": api_key, "webappId": "5"}
    )
    assert unknown["code"] == 901


# -- 6. validation -----------------------------------------------------------------------------


def test_an_empty_key_is_refused(emulator: Emulator) -> None:
    created = emulator.stats()["tasks"]["created"]
    body = {"workflowId": TEXT_TO_IMAGE}
    for headers, extra in (
        ({"Authorization": "Bearer "}, {}),
        ({"Authorization": "Bearer"}, {}),
        ({}, {"apiKey": ""}),
        ({"Authorization": "Bearer real-key"}, {"apiKey": "  "}),
    ):
        answer = post(emulator, "/task/openapi/create", {**body, **extra}, headers=headers)
        assert answer["code"] == 301, (headers, extra)
    assert emulator.stats()["tasks"]["created"] == created


def test_quick_create_requires_node_info_list(emulator: Emulator, api_key: str) -> None:
    body = {"apiKey": api_key, "webappId": TEXT_APP, "quickCreateCode": "002"}
    answer = post(emulator, "/task/openapi/quick-ai-app/run", body)
    assert answer == {"code": 301, "msg": "nodeInfoList is required", "data": None}
    nodes = [{"nodeId": "6", "fieldName": "text", "fieldValue": "a fox"}]
    assert (
        post(emulator, "/task/openapi/quick-ai-app/run", {**body, "nodeInfoList": nodes})["code"]
        == 0
    )


def _graph(emu: Emulator, key: str) -> str:
    data = post(emu, "/api/openapi/getJsonApiFormat", {"apiKey": key, "workflowId": TEXT_TO_IMAGE})
    prompt: str = data["data"]["prompt"]
    return prompt


def test_workflow_with_an_unknown_id_follows_section_4_2_or_the_switch(
    make_emulator: Factory, api_key: str
) -> None:
    emu = make_emulator()
    graph = _graph(emu, api_key)
    answer = create(emu, api_key, workflowId="1111111111111111111", workflow=graph)
    assert answer["code"] == 0  # "workflowId is ignored" when workflow is given
    assert finished_outputs(emu, api_key, answer["data"]["taskId"])["code"] == 0
    observed = make_emulator(workflow_id_check="observed")
    refused = create(observed, api_key, workflowId="1111111111111111111", workflow=graph)
    assert refused == {"code": 380, "msg": "WORKFLOW_NOT_EXISTS", "data": None}


def test_rhflows_image_pipeline_uploads_before_create(
    make_emulator: Factory, api_key: str, tmp_path: Path
) -> None:
    # A LoadImage value must name an uploaded file: rhflow uploads local inputs first.
    emu = make_emulator()
    examples = Path(__file__).parent.parent / "pipelines"
    shutil.copytree(examples, tmp_path / "pipelines")
    result = run(emu, tmp_path / "pipelines" / "image-input.yaml", api_key)
    assert result.manifest.status == "succeeded"
    assert emu.stats()["uploads"] >= 1


# -- 3. real output files ----------------------------------------------------------------------


def test_video_output_is_an_mp4_a_decoder_opens(
    emulator: Emulator, api_key: str, tmp_path: Path
) -> None:
    task_id = create(emulator, api_key, workflowId=VIDEO)["data"]["taskId"]
    (item,) = finished_outputs(emulator, api_key, task_id)["data"]
    path = tmp_path / "video.mp4"
    path.write_bytes(requests.get(item["fileUrl"], timeout=10).content)
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 256, 256)
        frames = list(container.decode(video=0))
    assert len(frames) == 8
    lumas = {bytes(frame.planes[0])[:64] for frame in frames}
    assert len(lumas) == 8  # the frames differ: a moving picture


def test_video_output_passes_ffprobe(emulator: Emulator, api_key: str, tmp_path: Path) -> None:
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        pytest.skip("ffprobe is not installed (apt-get install ffmpeg)")
    nodes = [
        {"nodeId": "5", "fieldName": "width", "fieldValue": 100},
        {"nodeId": "5", "fieldName": "height", "fieldValue": 70},
        {"nodeId": "5", "fieldName": "batch_size", "fieldValue": 3},
    ]
    task_id = create(emulator, api_key, workflowId=VIDEO, nodeInfoList=nodes)["data"]["taskId"]
    (item,) = finished_outputs(emulator, api_key, task_id)["data"]
    path = tmp_path / "video.mp4"
    path.write_bytes(requests.get(item["fileUrl"], timeout=10).content)
    probe = subprocess.run(
        [ffprobe, "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    (stream,) = json.loads(probe.stdout)["streams"]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 100, 70)
    assert stream["nb_read_frames"] == "3"


def test_text_output_holds_only_the_text(emulator: Emulator, api_key: str) -> None:
    def text_of(caption: str) -> str:
        nodes = [
            *SMALL,
            {"nodeId": "10", "fieldName": "text", "fieldValue": caption},
        ]
        task_id = create(emulator, api_key, workflowId=TWO_OUTPUTS, nodeInfoList=nodes)["data"][
            "taskId"
        ]
        items = finished_outputs(emulator, api_key, task_id)["data"]
        return requests.get(items[1]["fileUrl"], timeout=10).content.decode("utf-8")

    assert text_of("a lighthouse, ink") == "a lighthouse, ink"
    assert text_of("a lighthouse, ink") == "a lighthouse, ink"  # deterministic
    assert text_of("雪") == "雪"


def test_an_image_to_image_task_still_runs_on_the_built_in_example(
    emulator: Emulator, api_key: str
) -> None:
    task_id = create(emulator, api_key, workflowId=IMAGE_TO_IMAGE)["data"]["taskId"]
    assert finished_outputs(emulator, api_key, task_id)["code"] == 0
