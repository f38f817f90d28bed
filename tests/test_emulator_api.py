"""The emulator's v1 and v2 endpoints over real loopback HTTP: shapes, codes, error paths."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from rhflow.emulator import IMAGE_TO_IMAGE, TEXT_APP, TEXT_TO_IMAGE, Emulator


def post(emu: Emulator, path: str, body: Any = None, **kwargs: Any) -> dict[str, Any]:
    response = requests.post(emu.url + path, json=body, timeout=10, **kwargs)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def wait_for(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll ``check`` until it returns something truthy (the state we wait on)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def create(emu: Emulator, key: str, **body: Any) -> dict[str, Any]:
    return post(emu, "/task/openapi/create", {"apiKey": key, "workflowId": TEXT_TO_IMAGE, **body})


def finished_outputs(emu: Emulator, key: str, task_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        answer = post(emu, "/task/openapi/outputs", {"apiKey": key, "taskId": task_id})
        return None if answer["code"] in (804, 813) else answer

    result: dict[str, Any] = wait_for(done)
    return result


# -- create -----------------------------------------------------------------------------------


def test_create_answers_the_documented_shape(emulator: Emulator, api_key: str) -> None:
    answer = create(emulator, api_key)
    assert answer["code"] == 0 and answer["msg"] == "success"
    data = answer["data"]
    assert set(data) == {"netWssUrl", "taskId", "clientId", "taskStatus", "promptTips"}
    assert isinstance(data["taskId"], str) and len(data["taskId"]) == 19
    assert data["taskId"].isdigit()
    assert len(data["clientId"]) == 32 and int(data["clientId"], 16) >= 0
    assert data["taskStatus"] == "RUNNING"
    assert data["netWssUrl"].startswith(emulator.url.replace("http", "ws") + "/ws/c_instance?")
    tips = json.loads(data["promptTips"])
    assert tips == {"result": True, "error": None, "outputs_to_execute": ["9"], "node_errors": {}}


def test_api_key_may_come_as_a_bearer_header(emulator: Emulator, api_key: str) -> None:
    answer = post(
        emulator,
        "/task/openapi/create",
        {"workflowId": TEXT_TO_IMAGE},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert answer["code"] == 0


def test_ids_are_accepted_as_numbers(emulator: Emulator, api_key: str) -> None:
    answer = post(
        emulator,
        "/task/openapi/create",
        {
            "apiKey": api_key,
            "workflowId": int(TEXT_TO_IMAGE),
            "nodeInfoList": [{"nodeId": 3, "fieldName": "seed", "fieldValue": 5}],
        },
    )
    assert answer["code"] == 0
    task_id = answer["data"]["taskId"]
    status = post(emulator, "/task/openapi/status", {"apiKey": api_key, "taskId": int(task_id)})
    assert status["code"] == 0 and status["data"] in ("RUNNING", "SUCCESS")


def test_missing_api_key_is_301(emulator: Emulator) -> None:
    answer = post(emulator, "/task/openapi/create", {"workflowId": TEXT_TO_IMAGE})
    assert answer["code"] == 301 and "apiKey" in answer["msg"] and answer["data"] is None


def test_missing_workflow_id_is_301(emulator: Emulator, api_key: str) -> None:
    answer = post(emulator, "/task/openapi/create", {"apiKey": api_key})
    assert answer == {"code": 301, "msg": "workflowId is required", "data": None}


def test_invalid_json_body_is_301(emulator: Emulator) -> None:
    response = requests.post(
        emulator.url + "/task/openapi/create",
        data="{not json",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.json()["code"] == 301
    assert "not valid JSON" in response.json()["msg"]


def test_unknown_workflow_is_380(emulator: Emulator, api_key: str) -> None:
    answer = create(emulator, api_key, workflowId="1111111111111111111")
    assert answer == {"code": 380, "msg": "WORKFLOW_NOT_EXISTS", "data": None}


def test_unknown_key_is_802_when_keys_are_configured(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator(api_keys=(api_key,))
    assert create(emu, api_key)["code"] == 0
    answer = create(emu, "not-a-known-key")
    assert answer == {"code": 802, "msg": "APIKEY_UNAUTHORIZED", "data": None}


def test_node_info_naming_a_missing_node_is_803(emulator: Emulator, api_key: str) -> None:
    answer = create(
        emulator, api_key, nodeInfoList=[{"nodeId": "12", "fieldName": "text", "fieldValue": "x"}]
    )
    assert answer["code"] == 803
    assert answer["msg"] == (
        "nodeInfoList[0]: the workflow has no node '12' (nodes: 3, 4, 5, 6, 7, 8, 9)"
    )


def test_node_info_naming_a_missing_field_is_803(emulator: Emulator, api_key: str) -> None:
    answer = create(
        emulator, api_key, nodeInfoList=[{"nodeId": "3", "fieldName": "seeed", "fieldValue": 1}]
    )
    assert answer["code"] == 803
    assert "node 3 (KSampler) has no field 'seeed'" in answer["msg"]
    assert "seed" in answer["msg"].split("fields:")[1]


def test_value_that_cannot_be_coerced_is_433(emulator: Emulator, api_key: str) -> None:
    answer = create(
        emulator, api_key, nodeInfoList=[{"nodeId": "3", "fieldName": "seed", "fieldValue": "abc"}]
    )
    assert answer["code"] == 433
    tips = json.loads(answer["data"]["promptTips"])
    assert tips["result"] is False
    error = tips["node_errors"]["3"]["errors"][0]
    assert error["type"] == "invalid_input_type"
    assert error["message"] == "Failed to convert an input value to a INT value"
    assert tips["node_errors"]["3"]["class_type"] == "KSampler"


def test_workflow_json_with_a_dangling_link_is_433(emulator: Emulator, api_key: str) -> None:
    graph = json.loads(
        post(
            emulator,
            "/api/openapi/getJsonApiFormat",
            {"apiKey": api_key, "workflowId": TEXT_TO_IMAGE},
        )["data"]["prompt"]
    )
    graph["8"]["inputs"]["samples"] = ["99", 0]
    answer = create(emulator, api_key, workflow=json.dumps(graph))
    assert answer["code"] == 433
    assert "links to node 99" in answer["msg"]
    tips = json.loads(answer["data"]["promptTips"])
    assert list(tips["node_errors"]) == ["8"]
    assert tips["error"]["type"] == "prompt_outputs_failed_validation"


def test_workflow_string_that_is_not_json_is_301(emulator: Emulator, api_key: str) -> None:
    answer = create(emulator, api_key, workflow="{broken")
    assert answer["code"] == 301 and "workflow is not valid JSON" in answer["msg"]


def test_custom_workflow_json_runs(emulator: Emulator, api_key: str) -> None:
    graph = json.loads(
        post(
            emulator,
            "/api/openapi/getJsonApiFormat",
            {"apiKey": api_key, "workflowId": TEXT_TO_IMAGE},
        )["data"]["prompt"]
    )
    graph["5"]["inputs"].update(width=48, height=32)
    answer = create(emulator, api_key, workflow=json.dumps(graph))
    assert answer["code"] == 0
    outputs = finished_outputs(emulator, api_key, answer["data"]["taskId"])
    assert outputs["code"] == 0 and outputs["data"][0]["fileType"] == "png"


def test_numeric_strings_are_accepted_for_numeric_fields(emulator: Emulator, api_key: str) -> None:
    answer = create(
        emulator,
        api_key,
        nodeInfoList=[
            {"nodeId": "3", "fieldName": "seed", "fieldValue": "1231231"},
            {"nodeId": "3", "fieldName": "cfg", "fieldValue": "7.5"},
            {"nodeId": "5", "fieldName": "width", "fieldValue": "64"},
        ],
    )
    assert answer["code"] == 0


def test_use_personal_queue_accepts_bool_and_string(emulator: Emulator, api_key: str) -> None:
    for value in (True, "true", "false", False):
        assert create(emulator, api_key, usePersonalQueue=value)["code"] == 0


def test_unknown_api_path_is_http_404(emulator: Emulator, api_key: str) -> None:
    response = requests.post(
        emulator.url + "/task/openapi/creat", json={"apiKey": api_key}, timeout=10
    )
    assert response.status_code == 404
    body = response.json()
    assert {k: body[k] for k in ("status", "error", "path")} == {
        "status": 404,
        "error": "Not Found",
        "path": "/task/openapi/creat",
    }
    wrong_method = requests.get(emulator.url + "/task/openapi/create", timeout=10)
    assert wrong_method.status_code == 405


# -- status / outputs / cancel -----------------------------------------------------------------


def test_outputs_of_unknown_task_is_807(emulator: Emulator, api_key: str) -> None:
    answer = post(
        emulator, "/task/openapi/outputs", {"apiKey": api_key, "taskId": "1904152026220003329"}
    )
    assert answer == {"code": 807, "msg": "APIKEY_TASK_NOT_FOUND", "data": None}


def test_tasks_of_another_key_are_not_found(emulator: Emulator, api_key: str) -> None:
    task_id = create(emulator, api_key)["data"]["taskId"]
    answer = post(emulator, "/task/openapi/status", {"apiKey": "other-key", "taskId": task_id})
    assert answer["code"] == 807


def test_task_id_zero_is_301(emulator: Emulator, api_key: str) -> None:
    answer = post(emulator, "/task/openapi/status", {"apiKey": api_key, "taskId": 0})
    assert answer == {"code": 301, "msg": "taskId must be positive", "data": None}


def test_status_is_a_bare_state_string(emulator: Emulator, api_key: str) -> None:
    task_id = create(emulator, api_key)["data"]["taskId"]
    first = post(emulator, "/task/openapi/status", {"apiKey": api_key, "taskId": task_id})
    assert first == {"code": 0, "msg": "", "data": "RUNNING"}
    wait_for(
        lambda: (
            post(emulator, "/task/openapi/status", {"apiKey": api_key, "taskId": task_id})["data"]
            == "SUCCESS"
        )
    )


def test_cancel_unknown_task_is_423_as_documented_or_807_by_switch(
    emulator: Emulator, make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    answer = post(emulator, "/task/openapi/cancel", {"apiKey": api_key, "taskId": "123"})
    assert answer == {"code": 423, "msg": "TASK_NOT_FOUNED", "data": None}
    observed = make_emulator(cancel_unknown=807)
    answer = post(observed, "/task/openapi/cancel", {"apiKey": api_key, "taskId": "123"})
    assert answer == {"code": 807, "msg": "APIKEY_TASK_NOT_FOUND", "data": None}


def test_cancel_running_task_reports_805_with_reason(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator(task_seconds=(5, 5))
    task_id = create(emu, api_key)["data"]["taskId"]
    assert post(emu, "/task/openapi/cancel", {"apiKey": api_key, "taskId": task_id}) == {
        "code": 0,
        "msg": "success",
        "data": None,
    }
    answer = post(emu, "/task/openapi/outputs", {"apiKey": api_key, "taskId": task_id})
    assert answer["code"] == 805 and answer["msg"] == "APIKEY_TASK_STATUS_ERROR"
    assert "cancelled" in answer["data"]["failedReason"]["exception_message"]
    status = post(emu, "/task/openapi/status", {"apiKey": api_key, "taskId": task_id})
    assert status["data"] == "FAILED"
    assert emu.stats()["tasks"]["cancelled"] == 1


def test_cancel_queued_task(make_emulator: Callable[..., Emulator], api_key: str) -> None:
    emu = make_emulator(queue_seconds=(5, 5))
    data = create(emu, api_key)["data"]
    assert data["taskStatus"] == "QUEUED" and data["netWssUrl"] is None
    post(emu, "/task/openapi/cancel", {"apiKey": api_key, "taskId": data["taskId"]})
    answer = post(emu, "/task/openapi/outputs", {"apiKey": api_key, "taskId": data["taskId"]})
    assert answer["code"] == 805
    account = post(emu, "/uc/openapi/accountStatus", {"apikey": api_key})
    assert account["data"]["currentTaskCounts"] == "0"


def test_outputs_state_machine_queued_running_success(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator(queue_seconds=(0.2, 0.2), task_seconds=(0.2, 0.2))
    task_id = create(emu, api_key)["data"]["taskId"]

    def outputs() -> dict[str, Any]:
        return post(emu, "/task/openapi/outputs", {"apiKey": api_key, "taskId": task_id})

    assert outputs() == {"code": 813, "msg": "APIKEY_TASK_IS_QUEUED", "data": None}
    running = wait_for(lambda: (a := outputs())["code"] == 804 and a)
    assert running["msg"] == "APIKEY_TASK_IS_RUNNING"
    assert running["data"]["netWssUrl"].startswith("ws://127.0.0.1:")
    done = wait_for(lambda: (a := outputs())["code"] == 0 and a)
    item = done["data"][0]
    assert set(item) == {
        "fileUrl",
        "fileType",
        "taskCostTime",
        "nodeId",
        "consumeCoins",
        "consumeMoney",
        "thirdPartyConsumeMoney",
    }
    assert item["nodeId"] == "9" and item["fileType"] == "png"
    assert isinstance(item["taskCostTime"], str) and isinstance(item["consumeCoins"], str)


def test_failed_task_is_805_with_failed_reason(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator(fail_rate=1.0)
    task_id = create(emu, api_key)["data"]["taskId"]
    answer = finished_outputs(emu, api_key, task_id)
    assert answer["code"] == 805 and answer["msg"] == "APIKEY_TASK_STATUS_ERROR"
    reason = answer["data"]["failedReason"]
    assert set(reason) == {
        "current_outputs",
        "exception_type",
        "node_name",
        "current_inputs",
        "traceback",
        "node_id",
        "exception_message",
    }
    assert reason["node_id"] == "3" and reason["node_name"] == "KSampler"
    assert reason["exception_type"] == "torch.OutOfMemoryError"
    assert isinstance(json.loads(reason["traceback"]), list)


def test_traceback_style_list(make_emulator: Callable[..., Emulator], api_key: str) -> None:
    emu = make_emulator(fail_rate=1.0, traceback_style="list")
    answer = finished_outputs(emu, api_key, create(emu, api_key)["data"]["taskId"])
    assert isinstance(answer["data"]["failedReason"]["traceback"], list)


def test_plain_outputs_style(make_emulator: Callable[..., Emulator], api_key: str) -> None:
    emu = make_emulator(outputs_style="plain", queue_seconds=(0.2, 0.2), fail_rate=1.0)
    task_id = create(emu, api_key)["data"]["taskId"]
    queued = post(emu, "/task/openapi/outputs", {"apiKey": api_key, "taskId": task_id})
    assert queued == {"code": 0, "msg": "任务正在排队中", "data": None}

    def failed() -> dict[str, Any] | None:
        answer = post(emu, "/task/openapi/outputs", {"apiKey": api_key, "taskId": task_id})
        return answer if answer["code"] != 0 else None

    assert wait_for(failed) == {"code": 500, "msg": "任务执行失败", "data": None}


# -- account, workflow JSON, AI apps -----------------------------------------------------------


def test_account_status_uses_lower_case_apikey(emulator: Emulator, api_key: str) -> None:
    answer = post(emulator, "/uc/openapi/accountStatus", {"apikey": "fresh-account-key"})
    assert answer["code"] == 0
    assert answer["data"] == {  # a consumer key: coins only
        "remainCoins": "100000",
        "currentTaskCounts": "0",
        "remainMoney": None,
        "currency": None,
        "apiType": "NORMAL",
    }


def test_enterprise_account_shows_money(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator()  # the default account
    answer = post(emu, "/uc/openapi/accountStatus", {"apikey": api_key})
    assert answer["data"] == {  # money, and coins left alone
        "remainCoins": "100000",
        "currentTaskCounts": "0",
        "remainMoney": "1000.00",
        "currency": "CNY",
        "apiType": "EXCLUSIVE",
    }


def test_coins_are_deducted_and_running_out_is_416(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator(coins=1, account="consumer")
    task_id = create(emu, api_key)["data"]["taskId"]
    outputs = finished_outputs(emu, api_key, task_id)
    assert outputs["data"][0]["consumeCoins"] == "1"
    account = post(emu, "/uc/openapi/accountStatus", {"apikey": api_key})
    assert account["data"]["remainCoins"] == "0"
    answer = create(emu, api_key)
    assert answer == {"code": 416, "msg": "TASK_CREATE_FAILED_BY_NOT_ENOUGH_WALLET", "data": None}


def test_get_json_api_format_returns_the_graph_as_a_string(
    emulator: Emulator, api_key: str
) -> None:
    answer = post(
        emulator, "/api/openapi/getJsonApiFormat", {"apiKey": api_key, "workflowId": TEXT_TO_IMAGE}
    )
    assert answer["code"] == 0 and answer["msg"] == "SUCCESS"
    graph = json.loads(answer["data"]["prompt"])
    assert {nid: node["class_type"] for nid, node in graph.items()} == {
        "3": "KSampler",
        "4": "CheckpointLoaderSimple",
        "5": "EmptyLatentImage",
        "6": "CLIPTextEncode",
        "7": "CLIPTextEncode",
        "8": "VAEDecode",
        "9": "SaveImage",
    }
    assert all(node["_meta"]["title"] for node in graph.values())
    assert set(graph["3"]["inputs"]) >= {
        "seed",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "denoise",
        "model",
        "positive",
        "negative",
        "latent_image",
    }
    assert set(graph["5"]["inputs"]) == {"width", "height", "batch_size"}
    img2img = json.loads(
        post(
            emulator,
            "/api/openapi/getJsonApiFormat",
            {"apiKey": api_key, "workflowId": IMAGE_TO_IMAGE},
        )["data"]["prompt"]
    )
    assert img2img["2"]["class_type"] == "LoadImage"
    assert img2img["2"]["inputs"]["image"] == "example.png"


def test_get_json_api_format_unknown_workflow_is_380(emulator: Emulator, api_key: str) -> None:
    answer = post(
        emulator, "/api/openapi/getJsonApiFormat", {"apiKey": api_key, "workflowId": "42"}
    )
    assert answer["code"] == 380


def test_ai_app_run_with_string_or_number_id(emulator: Emulator, api_key: str) -> None:
    nodes = [{"nodeId": "6", "fieldName": "text", "fieldValue": "a cat", "description": "x"}]
    for webapp_id in (TEXT_APP, int(TEXT_APP)):
        answer = post(
            emulator,
            "/task/openapi/ai-app/run",
            {"apiKey": api_key, "webappId": webapp_id, "nodeInfoList": nodes},
        )
        assert answer["code"] == 0 and answer["data"]["taskStatus"] == "RUNNING"
    outputs = finished_outputs(emulator, api_key, answer["data"]["taskId"])
    assert outputs["code"] == 0 and outputs["data"][0]["nodeId"] == "9"


def test_ai_app_unknown_is_901(emulator: Emulator, api_key: str) -> None:
    answer = post(
        emulator,
        "/task/openapi/ai-app/run",
        {"apiKey": api_key, "webappId": "1", "nodeInfoList": []},
    )
    assert answer == {"code": 901, "msg": "WEBAPP_NOT_EXISTS", "data": None}


def test_ai_app_bad_node_is_803(emulator: Emulator, api_key: str) -> None:
    answer = post(
        emulator,
        "/task/openapi/ai-app/run",
        {
            "apiKey": api_key,
            "webappId": TEXT_APP,
            "nodeInfoList": [{"nodeId": "77", "fieldName": "text", "fieldValue": "x"}],
        },
    )
    assert answer["code"] == 803


def test_quick_ai_app_run(emulator: Emulator, api_key: str) -> None:
    body = {
        "apiKey": api_key,
        "webappId": TEXT_APP,
        "quickCreateCode": "002",
        "nodeInfoList": [
            {
                "nodeId": "6",
                "nodeName": "CLIPTextEncode",
                "fieldName": "text",
                "fieldType": "STRING",
                "fieldValue": "a dog",
                "description": "p",
            }
        ],
    }
    assert post(emulator, "/task/openapi/quick-ai-app/run", body)["code"] == 0
    del body["quickCreateCode"]
    answer = post(emulator, "/task/openapi/quick-ai-app/run", body)
    assert answer == {"code": 301, "msg": "quickCreateCode is required", "data": None}


def test_api_call_demo(emulator: Emulator, api_key: str) -> None:
    response = requests.get(
        emulator.url + "/api/webapp/apiCallDemo",
        params={"apiKey": api_key, "webappId": TEXT_APP},
        timeout=10,
    )
    answer = response.json()
    assert answer["code"] == 0
    assert emulator.url + "/task/openapi/ai-app/run" in answer["data"]["curl"]
    fields = {(n["nodeId"], n["fieldName"]) for n in answer["data"]["nodeInfoList"]}
    assert ("6", "text") in fields and ("3", "seed") in fields
    unknown = requests.get(
        emulator.url + "/api/webapp/apiCallDemo",
        params={"apiKey": api_key, "webappId": "5"},
        timeout=10,
    ).json()
    assert unknown["code"] == 901


# -- v2 ----------------------------------------------------------------------------------------


def test_v2_query_flat_shape(emulator: Emulator, api_key: str) -> None:
    task_id = create(emulator, api_key)["data"]["taskId"]
    headers = {"Authorization": f"Bearer {api_key}"}

    def query() -> dict[str, Any]:
        return post(emulator, "/openapi/v2/query", {"taskId": task_id}, headers=headers)

    first = query()
    assert first["taskId"] == task_id and first["status"] == "RUNNING"
    assert first["results"] is None and first["errorCode"] == ""
    done = wait_for(lambda: (a := query())["status"] == "SUCCESS" and a)
    assert done["results"][0]["outputType"] == "png"
    assert done["results"][0]["url"].startswith(emulator.url + "/files/")
    assert done["failedReason"] == {}
    assert (done["usage"]["consumeCoins"], done["usage"]["consumeMoney"]) == ("1", None)


def test_v2_query_bad_key_and_unknown_task(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator(api_keys=(api_key,))
    bad = post(emu, "/openapi/v2/query", {"taskId": "1"}, headers={"Authorization": "Bearer wrong"})
    assert bad["status"] == "" and bad["errorCode"] == "806"
    unknown = post(
        emu, "/openapi/v2/query", {"taskId": "1"}, headers={"Authorization": f"Bearer {api_key}"}
    )
    assert unknown["errorCode"] == "1004"


def test_v2_run_workflow_and_ai_app(emulator: Emulator, api_key: str) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    nodes = [{"nodeId": "6", "fieldName": "text", "fieldValue": "v2"}]
    run = post(
        emulator,
        f"/openapi/v2/run/workflow/{TEXT_TO_IMAGE}",
        {"nodeInfoList": nodes},
        headers=headers,
    )
    assert run["status"] == "RUNNING" and run["errorCode"] == "" and len(run["taskId"]) == 19
    app = post(
        emulator, f"/openapi/v2/run/ai-app/{TEXT_APP}", {"nodeInfoList": nodes}, headers=headers
    )
    assert app["status"] == "RUNNING"
    missing = post(emulator, "/openapi/v2/run/workflow/42", {}, headers=headers)
    assert missing["errorCode"] == "380" and missing["taskId"] == ""


def test_v2_upload_binary(emulator: Emulator, api_key: str) -> None:
    response = requests.post(
        emulator.url + "/openapi/v2/media/upload/binary",
        files={"file": ("x.png", b"\x89PNG fake")},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=10,
    )
    data = response.json()["data"]
    assert data["fileName"].startswith("openapi/") and data["fileName"].endswith(".png")
    assert requests.get(data["download_url"], timeout=10).content == b"\x89PNG fake"


# -- transient faults --------------------------------------------------------------------------


def _faults(emu: Emulator, **counters: int) -> None:
    response = requests.post(emu.url + "/emulator/faults", json=counters, timeout=10)
    assert response.status_code == 200


def test_fault_http_500(make_emulator: Callable[..., Emulator], api_key: str) -> None:
    emu = make_emulator()
    _faults(emu, http_500=1)
    response = requests.post(
        emu.url + "/task/openapi/create",
        json={"apiKey": api_key, "workflowId": TEXT_TO_IMAGE},
        timeout=10,
    )
    assert response.status_code == 500
    with pytest.raises(ValueError):
        response.json()
    assert create(emu, api_key)["code"] == 0


def test_fault_code_1011(make_emulator: Callable[..., Emulator], api_key: str) -> None:
    emu = make_emulator()
    _faults(emu, code_1011=1)
    assert create(emu, api_key) == {  # the identifier of the API document's table, 11.1
        "code": 1011,
        "msg": "System is currently busy, please retry later",
        "data": None,
    }
    assert create(emu, api_key)["code"] == 0


def test_fault_drop(make_emulator: Callable[..., Emulator], api_key: str) -> None:
    emu = make_emulator()
    _faults(emu, drop=1)
    with pytest.raises(requests.ConnectionError):
        requests.post(emu.url + "/uc/openapi/accountStatus", json={"apikey": api_key}, timeout=10)
    assert post(emu, "/uc/openapi/accountStatus", {"apikey": api_key})["code"] == 0


def test_fault_scoped_to_a_path(make_emulator: Callable[..., Emulator], api_key: str) -> None:
    emu = make_emulator()
    _faults(emu, **{"code_1011:/task/openapi/outputs": 1})
    assert create(emu, api_key)["code"] == 0
    answer = post(emu, "/task/openapi/outputs", {"apiKey": api_key, "taskId": "1"})
    assert answer["code"] == 1011


def test_fault_create_busy_and_instance_busy(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator()
    _faults(emu, create_busy=2, instance_busy=1)
    assert create(emu, api_key)["code"] == 421
    assert create(emu, api_key)["code"] == 421
    assert create(emu, api_key) == {"code": 415, "msg": "TASK_INSTANCE_MAXED", "data": None}
    assert create(emu, api_key)["code"] == 0


def test_unknown_fault_is_refused(emulator: Emulator) -> None:
    response = requests.post(emulator.url + "/emulator/faults", json={"nope": 1}, timeout=10)
    assert response.status_code == 400 and "unknown fault 'nope'" in response.json()["error"]


def test_random_error_rate_gives_only_transient_faults(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator(error_rate=0.5, seed=3)
    seen = set()
    for _ in range(30):
        try:
            response = requests.post(
                emu.url + "/uc/openapi/accountStatus", json={"apikey": api_key}, timeout=10
            )
        except requests.ConnectionError:
            seen.add("drop")
            continue
        seen.add(response.status_code if response.status_code != 200 else response.json()["code"])
    assert seen <= {"drop", 500, 1011, 0}
    assert 0 in seen and len(seen) >= 3


def test_latency_delays_answers(make_emulator: Callable[..., Emulator], api_key: str) -> None:
    emu = make_emulator(latency=0.15)
    start = time.monotonic()
    post(emu, "/uc/openapi/accountStatus", {"apikey": api_key})
    assert time.monotonic() - start >= 0.15


def test_float_ids_are_refused_rather_than_rounded(emulator: Emulator, api_key: str) -> None:
    answer = post(
        emulator, "/task/openapi/create", {"apiKey": api_key, "workflowId": float(TEXT_TO_IMAGE)}
    )
    assert answer["code"] == 301 and "precision" in answer["msg"]


def test_v2_query_of_a_failed_task(make_emulator: Callable[..., Emulator], api_key: str) -> None:
    emu = make_emulator(fail_rate=1.0, traceback_style="list")
    task_id = create(emu, api_key)["data"]["taskId"]
    headers = {"Authorization": api_key}  # a bare key without "Bearer " is tolerated

    def failed() -> dict[str, Any] | None:
        answer = post(emu, "/openapi/v2/query", {"taskId": task_id}, headers=headers)
        return answer if answer["status"] == "FAILED" else None

    answer = wait_for(failed)
    assert answer["errorCode"] == "1000" and "out of memory" in answer["errorMessage"]
    assert answer["failedReason"]["node_name"] == "KSampler"
    assert isinstance(answer["failedReason"]["traceback"], list)


def test_v2_upload_errors(make_emulator: Callable[..., Emulator], api_key: str) -> None:
    emu = make_emulator(api_keys=(api_key,), upload_limit=10)

    def send(key: str, data: bytes) -> dict[str, Any]:
        response = requests.post(
            emu.url + "/openapi/v2/media/upload/binary",
            files={"file": ("a.png", data)},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        result: dict[str, Any] = response.json()
        return result

    assert send("wrong", b"1")["code"] == 401
    assert send(api_key, b"x" * 11) == {
        "code": 1008,
        "message": "File size limit exceeded",
        "data": None,
    }
    assert send(api_key, b"x" * 10)["code"] == 0


def test_v2_query_without_task_id_is_1007(emulator: Emulator, api_key: str) -> None:
    answer = post(emulator, "/openapi/v2/query", {}, headers={"Authorization": f"Bearer {api_key}"})
    assert answer["errorCode"] == "1007"
    assert (
        answer["errorMessage"] == "Invalid parameters, please check your input: taskId is required"
    )


def test_upload_that_is_not_multipart_is_301(emulator: Emulator, api_key: str) -> None:
    broken = requests.post(
        emulator.url + "/task/openapi/upload",
        data=b"--xyz\r\nno headers here",
        headers={
            "Content-Type": "multipart/form-data; boundary=xyz",
            "Authorization": f"Bearer {api_key}",
        },
        timeout=10,
    )
    assert broken.status_code == 200 and broken.json()["code"] == 301


def test_value_not_in_list_is_433(emulator: Emulator, api_key: str) -> None:
    answer = create(
        emulator,
        api_key,
        nodeInfoList=[
            {"nodeId": "3", "fieldName": "sampler_name", "fieldValue": "no_such_sampler"}
        ],
    )
    assert answer["code"] == 433
    error = json.loads(answer["data"]["promptTips"])["node_errors"]["3"]["errors"][0]
    assert error["type"] == "value_not_in_list"
    assert error["details"].startswith("sampler_name: 'no_such_sampler' not in ['euler',")


def test_every_field_sent_back_as_a_string_is_accepted(emulator: Emulator, api_key: str) -> None:
    """The walkthrough turns every input of the graph, links included, into a string."""
    graph = json.loads(
        post(
            emulator,
            "/api/openapi/getJsonApiFormat",
            {"apiKey": api_key, "workflowId": TEXT_TO_IMAGE},
        )["data"]["prompt"]
    )
    node_info_list = [
        {
            "nodeId": str(node_id),
            "fieldName": name,
            "fieldValue": json.dumps(value) if isinstance(value, (list, dict)) else str(value),
        }
        for node_id, node in graph.items()
        for name, value in node["inputs"].items()
    ]
    for entry in node_info_list:
        if entry["fieldName"] in ("width", "height"):
            entry["fieldValue"] = "32"
    answer = create(emulator, api_key, nodeInfoList=node_info_list)
    assert answer["code"] == 0, answer
    outputs = finished_outputs(emulator, api_key, answer["data"]["taskId"])
    image = requests.get(outputs["data"][0]["fileUrl"], timeout=10).content
    assert image[16:24] == (32).to_bytes(4, "big") * 2  # the PNG header's width and height
