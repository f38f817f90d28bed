"""The client's reading of the answers the references document, from their literal JSON."""
# ruff: noqa: E501  (the reference payloads are kept verbatim)

from __future__ import annotations

import json

import pytest

from rhflow.api.client import (
    Account,
    FailedReason,
    Output,
    TaskCreated,
    TaskOutputs,
    WebhookDetail,
)
from rhflow.errors import (
    BadResponseError,
    InvalidApiKeyError,
    SystemBusyError,
    TaskNotFoundError,
    UnknownServerError,
    UserNotFoundError,
)

# The API document's create answer (section 4.1), verbatim.
CREATE_ANSWER = r"""{"code": 0, "msg": "success", "data": {
  "netWssUrl": "wss://www.runninghub.cn:443/ws/c_instance?c_host=10.129.240.44&c_port=80&clientId=e825290b08ca2015b8f62f0bbdb5f5f6&workflowId=1904136902449209346&Rh-Comfy-Auth=...",
  "taskId": "1904737800233889793",
  "clientId": "e825290b08ca2015b8f62f0bbdb5f5f6",
  "taskStatus": "RUNNING",
  "promptTips": "{\"result\": true, \"error\": null, \"outputs_to_execute\": [\"9\"], \"node_errors\": {}}"}}"""

OUTPUTS_SUCCESS = r"""{"code":0,"msg":"success","data":[{"fileUrl":"https://rh-images.xiaoyaoyou.com/x/output/ComfyUI_00033_hpgko_1742822929.png","fileType":"png","taskCostTime":"83","nodeId":"12","thirdPartyConsumeMoney":null,"consumeMoney":null,"consumeCoins":"17"}]}"""

OUTPUTS_FAILED = r"""{"code":805,"msg":"APIKEY_TASK_STATUS_ERROR","data":{"failedReason":{
 "current_outputs": "{}",
 "exception_type": "TypeError",
 "node_name": "SONIC_PreData",
 "current_inputs": "{}",
 "traceback": "[\"  File \\\"/workspace/ComfyUI/execution.py\\\", line 1208, in execute\\n ...\"]",
 "node_id": "276",
 "exception_message": "SONIC_PreData.sampler_main() missing 2 required positional arguments: 'clip_vision' and 'vae'"
}}}"""

QUERY_SUCCESS = r"""{"taskId":"2013508786110730241","status":"SUCCESS","errorCode":"","errorMessage":"",
 "failedReason":{},
 "usage":{"consumeMoney":null,"consumeCoins":null,"taskCostTime":"0","thirdPartyConsumeMoney":null},
 "results":[{"url":"https://rh-images-1252422369.cos.ap-beijing.myqcloud.com/u/output/ComfyUI_00001_plhjr_1768892915.png",
             "nodeId":"2","outputType":"png","text":null}],
 "clientId":"","promptTips":""}"""

WEBHOOK_DETAIL = r"""{"code":0,"msg":"success","data":{"id":"1904444422778503169","userApiKey":"******************","taskId":"1904444422770114561",
   "webhookUrl":"https://your-webhook-url","eventData":"{}",
   "callbackStatus":"FAILED","callbackResponse":"I/O error on POST request for \"https://your-webhook-url\": Remote host terminated the handshake",
   "retryCount":3,"createTime":"2025-03-25T16:05:07","updateTime":"2025-03-25T16:08:10"}}"""


def test_create_answer_of_the_document() -> None:
    created = TaskCreated.from_data(json.loads(CREATE_ANSWER)["data"])
    assert created.task_id == "1904737800233889793"
    assert created.status == "RUNNING"
    assert created.client_id == "e825290b08ca2015b8f62f0bbdb5f5f6"
    assert created.net_wss_url is not None and created.net_wss_url.startswith("wss://")
    assert created.prompt_tips == {
        "result": True,
        "error": None,
        "outputs_to_execute": ["9"],
        "node_errors": {},
    }
    assert created.node_errors == {}


def test_queued_create_has_no_websocket_and_garbage_prompt_tips_is_tolerated() -> None:
    data = {
        "taskId": 1904737800233889793,
        "taskStatus": "QUEUED",
        "netWssUrl": None,
        "clientId": "c",
        "promptTips": "not json {",
    }
    created = TaskCreated.from_data(data)
    assert created.task_id == "1904737800233889793"  # a 19-digit number stays exact
    assert created.net_wss_url is None
    assert created.prompt_tips is None
    assert created.node_errors == {}


def test_create_answer_without_task_id_is_a_bad_response() -> None:
    with pytest.raises(BadResponseError):
        TaskCreated.from_data({"taskStatus": "RUNNING"})


def test_outputs_success_of_the_document() -> None:
    result = TaskOutputs.from_response(json.loads(OUTPUTS_SUCCESS))
    assert result.state == "SUCCESS" and result.done and result.succeeded
    assert result.outputs == (
        Output(
            file_url="https://rh-images.xiaoyaoyou.com/x/output/ComfyUI_00033_hpgko_1742822929.png",
            file_type="png",
            node_id="12",
            task_cost_time=83.0,
            consume_coins=17.0,
            consume_money=None,
            text=None,
        ),
    )


def test_cost_and_coins_as_numbers_as_in_webhook_event_data() -> None:
    event_data = (
        '{"code":0,"msg":"success","data":[{"fileUrl":"https://h/a.PNG",'
        '"taskCostTime":78,"nodeId":9,"consumeCoins":3.5}]}'
    )
    (output,) = TaskOutputs.from_response(json.loads(event_data)).outputs
    assert output.task_cost_time == 78.0
    assert output.consume_coins == 3.5
    assert output.node_id == "9"
    assert output.file_type == "png"  # taken from the URL when fileType is missing


def test_success_with_no_outputs() -> None:
    result = TaskOutputs.from_response({"code": 0, "msg": "success", "data": []})
    assert (result.state, result.outputs, result.succeeded) == ("SUCCESS", (), True)


@pytest.mark.parametrize(
    ("payload", "state", "wss"),
    [
        ({"code": 813, "msg": "APIKEY_TASK_IS_QUEUED", "data": None}, "QUEUED", None),
        (
            {"code": 804, "msg": "APIKEY_TASK_IS_RUNNING", "data": {"netWssUrl": "wss://h/ws"}},
            "RUNNING",
            "wss://h/ws",
        ),
        # the official plugin checks msg before code; a fork sends code 0 with the QUEUED msg
        ({"code": 0, "msg": "APIKEY_TASK_IS_QUEUED", "data": None}, "QUEUED", None),
        ({"code": 0, "msg": "APIKEY_TASK_IS_RUNNING", "data": None}, "RUNNING", None),
        # the API document's own variant: code 0 with data null
        ({"code": 0, "msg": "任务正在运行中", "data": None}, "RUNNING", None),
        ({"code": 0, "msg": "任务正在排队中", "data": None}, "QUEUED", None),
    ],
)
def test_unfinished_states_in_both_documented_forms(
    payload: dict[str, object], state: str, wss: str | None
) -> None:
    result = TaskOutputs.from_response(payload)
    assert (result.state, result.net_wss_url, result.done) == (state, wss, False)
    assert result.message == payload["msg"]


def test_failed_reason_of_the_document() -> None:
    result = TaskOutputs.from_response(json.loads(OUTPUTS_FAILED))
    assert result.state == "FAILED" and result.done and not result.succeeded
    reason = result.failed_reason
    assert reason is not None
    assert (reason.node_id, reason.node_name, reason.exception_type) == (
        "276",
        "SONIC_PreData",
        "TypeError",
    )
    assert reason.traceback == (
        '  File "/workspace/ComfyUI/execution.py", line 1208, in execute\n ...',
    )
    assert reason.raw["current_inputs"] == "{}"
    assert str(reason) == (
        "node 276 (SONIC_PreData) raised TypeError: SONIC_PreData.sampler_main() missing 2 "
        "required positional arguments: 'clip_vision' and 'vae'"
    )


@pytest.mark.parametrize(
    ("traceback", "expected"),
    [
        (["line 1\n", "line 2\n"], ("line 1\n", "line 2\n")),
        ('["a", "b"]', ("a", "b")),
        ("Traceback (most recent call last): boom", ("Traceback (most recent call last): boom",)),
        ("", ()),
        (None, ()),
    ],
)
def test_traceback_as_list_string_or_missing(traceback: object, expected: tuple[str, ...]) -> None:
    raw = {"node_id": 192, "node_name": "UNETLoader", "exception_message": "Value not in list"}
    if traceback is not None:
        raw["traceback"] = traceback
    reason = FailedReason.from_raw(raw)
    assert reason.traceback == expected
    assert str(reason) == "node 192 (UNETLoader) failed: Value not in list"


def test_failed_reason_str_is_one_line_even_with_sparse_fields() -> None:
    reason = FailedReason.from_raw(
        {"exception_type": "torch.OutOfMemoryError", "exception_message": "CUDA out\nof memory"}
    )
    assert str(reason) == "the task raised torch.OutOfMemoryError: CUDA out of memory"


def test_document_failure_variant_code_500() -> None:
    result = TaskOutputs.from_response({"code": 500, "msg": "任务执行失败", "data": None})
    assert result.state == "FAILED"
    assert str(result.failed_reason) == "the task failed: 任务执行失败"


def test_code_500_unknown_error_is_still_an_error() -> None:
    with pytest.raises(UnknownServerError) as info:
        TaskOutputs.from_response({"code": 500, "msg": "UNKNOWN_ERROR", "data": None})
    assert info.value.retryable


def test_other_codes_raise_their_error() -> None:
    with pytest.raises(TaskNotFoundError) as info:
        TaskOutputs.from_response({"code": 807, "msg": "APIKEY_TASK_NOT_FOUND", "data": None})
    assert str(info.value) == "RunningHub answered 807 APIKEY_TASK_NOT_FOUND (no task with that id)"


def test_v2_query_success() -> None:
    result = TaskOutputs.from_query(json.loads(QUERY_SUCCESS))
    assert result.state == "SUCCESS"
    (output,) = result.outputs
    assert output.file_url.endswith("ComfyUI_00001_plhjr_1768892915.png")
    assert (output.file_type, output.node_id, output.task_cost_time, output.text) == (
        "png",
        "2",
        0.0,
        None,
    )


def test_v2_query_text_output_and_unfinished_states() -> None:
    payload = {
        "taskId": "1",
        "status": "SUCCESS",
        "errorCode": "",
        "usage": None,
        "results": [{"url": "", "nodeId": 5, "outputType": "txt", "text": "a cat"}],
    }
    (output,) = TaskOutputs.from_query(payload).outputs
    assert (output.text, output.node_id, output.task_cost_time) == ("a cat", "5", None)
    running = TaskOutputs.from_query({"status": "RUNNING", "errorCode": "", "results": None})
    assert (running.state, running.done) == ("RUNNING", False)
    odd = TaskOutputs.from_query({"status": "CANCEL", "errorCode": ""})
    assert (odd.state, odd.done) == ("CANCEL", False)


def test_v2_query_failed_task_is_a_state() -> None:
    payload = {
        "taskId": "1",
        "status": "FAILED",
        "errorCode": "1000",
        "errorMessage": "unknown error",
        "results": None,
        "failedReason": {
            "node_id": "3",
            "node_name": "KSampler",
            "exception_type": "RuntimeError",
            "exception_message": "boom",
            "traceback": ["x"],
        },
    }
    result = TaskOutputs.from_query(payload)
    assert result.state == "FAILED"
    assert str(result.failed_reason) == "node 3 (KSampler) raised RuntimeError: boom"
    bare = TaskOutputs.from_query({**payload, "failedReason": {}})
    assert str(bare.failed_reason) == "the task failed: unknown error"


@pytest.mark.parametrize(
    ("code", "error"),
    [("806", UserNotFoundError), ("1011", SystemBusyError), ("1002", InvalidApiKeyError)],
)
def test_v2_query_error_codes_raise(code: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        TaskOutputs.from_query({"taskId": "", "status": "", "errorCode": code, "errorMessage": "x"})


def test_account_numbers_as_strings_or_numbers() -> None:
    documented = {
        "remainCoins": "99999",
        "currentTaskCounts": "0",
        "remainMoney": "999",
        "currency": "CNY",
        "apiType": "NORMAL",
    }
    assert Account.from_data(documented) == Account(99999.0, 0, 999.0, "CNY", "NORMAL")
    numbers = {
        "remainCoins": 5,
        "currentTaskCounts": 2,
        "remainMoney": None,
        "currency": None,
        "apiType": "SHARED",
    }
    assert Account.from_data(numbers) == Account(5.0, 2, None, None, "SHARED")


def test_webhook_detail_of_the_reference() -> None:
    detail = WebhookDetail.from_data(json.loads(WEBHOOK_DETAIL)["data"])
    assert detail.id == "1904444422778503169"
    assert detail.task_id == "1904444422770114561"
    assert (detail.callback_status, detail.retry_count) == ("FAILED", 3)
    assert detail.callback_response.startswith("I/O error on POST request")
    assert (detail.create_time, detail.update_time) == (
        "2025-03-25T16:05:07",
        "2025-03-25T16:08:10",
    )
    assert "userApiKey" not in WebhookDetail.__slots__
