"""``rhflow emulator`` as a real process, and the reference documents' own client flows."""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from PIL import Image
from test_emulator_api import post, wait_for

from rhflow.emulator import IMAGE_TO_IMAGE, TEXT_TO_IMAGE, Emulator

URL_LINE = re.compile(r"^RunningHub emulator listening on (http://127\.0\.0\.1:\d+)$")


@pytest.fixture
def emulator_process() -> Iterator[Callable[..., tuple[subprocess.Popen[str], str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            [sys.executable, "-m", "rhflow", "emulator", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        started.append(process)
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        match = URL_LINE.match(line)
        assert match, f"unexpected first line {line!r}; stderr: {process.stderr.read()!r}"
        return process, match.group(1)

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_until_signalled(
    emulator_process: Callable[..., tuple[subprocess.Popen[str], str]],
    api_key: str,
    signum: int,
) -> None:
    process, url = emulator_process("--task-seconds", "0.05", "--concurrency", "3")
    answer = requests.post(
        url + "/uc/openapi/accountStatus", json={"apikey": api_key}, timeout=10
    ).json()
    assert answer["code"] == 0
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert "Traceback" not in stderr


def test_cli_options_reach_the_emulator(
    emulator_process: Callable[..., tuple[subprocess.Popen[str], str]], api_key: str
) -> None:
    process, url = emulator_process(
        "--api-key", api_key, "--no-websocket", "--task-seconds", "0.05"
    )
    bad = requests.post(
        url + "/task/openapi/create",
        json={"apiKey": "wrong", "workflowId": TEXT_TO_IMAGE},
        timeout=10,
    )
    assert bad.json()["code"] == 802
    good = requests.post(
        url + "/task/openapi/create",
        json={"apiKey": api_key, "workflowId": TEXT_TO_IMAGE},
        timeout=10,
    )
    assert good.json()["data"]["netWssUrl"] is None
    process.terminate()
    process.communicate(timeout=10)
    assert process.returncode == 0


def test_cli_bad_duration_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rhflow", "emulator", "--task-seconds", "abc"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "Error: --task-seconds 'abc' is not a duration: write seconds as "
        "S or MIN-MAX, e.g. 2 or 0.5-3\n"
    )


# -- the API document's example (section 10.1), only the base URL changed ------------------------


def test_api_document_example_flow(make_emulator: Callable[..., Emulator], api_key: str) -> None:
    emu = make_emulator(task_seconds=(0.1, 0.1))
    headers = {"Host": "www.runninghub.cn", "Content-Type": "application/json"}
    urls = {
        "create_task": emu.url + "/task/openapi/create",
        "get_outputs": emu.url + "/task/openapi/outputs",
        "get_nodes": emu.url + "/api/openapi/getJsonApiFormat",
    }

    def create_task(node_info_list: list[dict[str, Any]]) -> tuple[Any, Any]:
        resp = requests.post(
            urls["create_task"],
            headers=headers,
            data=json.dumps(
                {"apiKey": api_key, "workflowId": TEXT_TO_IMAGE, "nodeInfoList": node_info_list}
            ),
        )
        resp.raise_for_status()
        result = resp.json()
        if result.get("code") == 0:
            data = result.get("data", {})
            return data.get("netWssUrl"), data.get("taskId")
        return None, None

    def get_task_results(task_id: str, max_retries: int = 3) -> Any:
        for _ in range(max_retries):
            resp = requests.post(
                urls["get_outputs"],
                headers=headers,
                data=json.dumps({"apiKey": api_key, "taskId": task_id}),
            )
            resp.raise_for_status()
            data = resp.json().get("data")
            if isinstance(data, list) and data:
                return data
            # the document sleeps 5 s here; wait for the task to end instead
            wait_for(
                lambda: (
                    post(emu, "/task/openapi/status", {"apiKey": api_key, "taskId": task_id})[
                        "data"
                    ]
                    == "SUCCESS"
                )
            )
        return None

    wss_url, task_id = create_task(
        [
            {"nodeId": "6", "fieldName": "text", "fieldValue": "1 girl in classroom, anime style"},
            {"nodeId": "3", "fieldName": "seed", "fieldValue": "1231231"},
        ]
    )
    assert wss_url is None and task_id  # queued at first: no WebSocket yet (FAQ Q7)
    results = get_task_results(task_id)
    assert results and results[0]["fileType"] == "png"
    image = requests.get(results[0]["fileUrl"], timeout=10)
    assert Image.open(io.BytesIO(image.content)).size == (512, 512)


# -- the walkthrough (004): upload, submit, poll with 804 / 813 / 805 -----------------------------


def _walkthrough(
    base_url: str, api_key: str, image_value: str | None, image_path: bytes | None
) -> tuple[str, Any]:
    host = urlsplit(base_url).netloc
    api_host = "www.runninghub.cn"

    def upload_file(data: bytes) -> Any:
        response = requests.post(
            base_url + "/task/openapi/upload",
            headers={"Host": api_host},
            files={"file": ("R.png", data)},
            data={"apiKey": api_key, "fileType": "input"},
        )
        return response.json()

    def submit_task(workflow_id: str, node_info_list: list[dict[str, Any]]) -> Any:
        conn = http.client.HTTPConnection(host)
        payload = json.dumps(
            {"apiKey": api_key, "workflowId": workflow_id, "nodeInfoList": node_info_list}
        )
        conn.request(
            "POST",
            "/task/openapi/create",
            payload,
            {"Host": api_host, "Content-Type": "application/json"},
        )
        data = json.loads(conn.getresponse().read().decode("utf-8"))
        conn.close()
        return data

    def query_task_outputs(task_id: str) -> Any:
        conn = http.client.HTTPConnection(host)
        payload = json.dumps({"apiKey": api_key, "taskId": task_id})
        conn.request(
            "POST",
            "/task/openapi/outputs",
            payload,
            {"Host": api_host, "Content-Type": "application/json"},
        )
        data = json.loads(conn.getresponse().read().decode("utf-8"))
        conn.close()
        return data

    if image_path is not None:
        result = upload_file(image_path)
        assert result.get("msg") == "success"
        image_value = result["data"]["fileName"]
    submit_result = submit_task(
        IMAGE_TO_IMAGE, [{"nodeId": "2", "fieldName": "image", "fieldValue": image_value}]
    )
    assert submit_result.get("code") == 0
    assert json.loads(submit_result["data"]["promptTips"])["node_errors"] == {}
    task_id = submit_result["data"]["taskId"]
    seen: list[int] = []

    def poll() -> tuple[str, Any] | None:
        outputs = query_task_outputs(task_id)
        code, data = outputs.get("code"), outputs.get("data")
        seen.append(code)
        if code == 0 and data:
            return "done", data
        if code == 805:
            return "failed", (data or {}).get("failedReason")
        assert code in (804, 813), outputs
        return None

    outcome: tuple[str, Any] = wait_for(poll)
    assert set(seen[:-1]) <= {804, 813}
    return outcome


def test_walkthrough_flow_with_an_upload(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator(queue_seconds=(0.05, 0.05), task_seconds=(0.1, 0.1))
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10), (0, 90, 200)).save(buffer, format="PNG")
    kind, data = _walkthrough(emu.url, api_key, None, buffer.getvalue())
    assert kind == "done"
    image = requests.get(data[0]["fileUrl"], timeout=10).content
    assert Image.open(io.BytesIO(image)).size == (20, 10)


def test_walkthrough_flow_reports_805(make_emulator: Callable[..., Emulator], api_key: str) -> None:
    emu = make_emulator(task_seconds=(0.1, 0.1), fail_rate=1.0)
    kind, reason = _walkthrough(emu.url, api_key, "example.png", None)
    assert kind == "failed"
    assert reason["node_name"] == "KSampler"
    assert reason["exception_type"] == "torch.OutOfMemoryError"
    assert json.loads(reason["traceback"])
