"""The API document's batch example (section 10.3, with 10.1's helpers), as written there,
pointed at ``--base-url``: three threads, each creates a task, then sleeps 5 s and asks for its
outputs, up to 60 times. ``get_task_results`` itself asks up to 3 times, 5 s apart. It prints
the file URL and downloads nothing.

    python benchmarks/batch_script.py --base-url http://127.0.0.1:8800 --tasks 9
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

API_KEY = os.environ.get("RH_API_KEY", "your-api-key")
WORKFLOW_ID = "1904136902449209346"
HEADERS = {"Host": "www.runninghub.cn", "Content-Type": "application/json"}
URLS: dict[str, str] = {}


def create_task(node_info_list: list[dict[str, Any]]) -> tuple[Any, Any]:
    """10.1: start a ComfyUI task."""
    try:
        resp = requests.post(
            URLS["create_task"],
            headers=HEADERS,
            data=json.dumps(
                {"apiKey": API_KEY, "workflowId": WORKFLOW_ID, "nodeInfoList": node_info_list}
            ),
        )
        resp.raise_for_status()
        result = resp.json()
        if result.get("code") == 0:
            data = result.get("data", {})
            return data.get("netWssUrl"), data.get("taskId")
        print(f"create failed: {result}")
        return None, None
    except Exception as e:
        print(f"create raised: {e}")
        return None, None


def get_task_results(task_id: str, max_retries: int = 3) -> Any:
    """10.1: the task's results."""
    for _attempt in range(max_retries):
        try:
            resp = requests.post(
                URLS["get_outputs"],
                headers=HEADERS,
                data=json.dumps({"apiKey": API_KEY, "taskId": task_id}),
            )
            resp.raise_for_status()
            data = resp.json().get("data")
            if isinstance(data, list) and data:
                return data
            time.sleep(5)
        except Exception as e:
            print(f"outputs raised: {e}")
            time.sleep(5)
    return None


def process_single_task(prompt: str, index: int) -> Any:
    """10.3: one task."""
    node_info_list = [{"nodeId": "6", "fieldName": "text", "fieldValue": prompt}]
    _wss_url, task_id = create_task(node_info_list)
    if task_id:
        print(f"[{index}] task {task_id} created")
        for _ in range(60):  # at most 5 minutes
            time.sleep(5)
            results = get_task_results(task_id)
            if results:
                print(f"[{index}] done: {results[0].get('fileUrl')}")
                return results
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--tasks", type=int, default=9)
    args = parser.parse_args()
    URLS["create_task"] = args.base_url + "/task/openapi/create"
    URLS["get_outputs"] = args.base_url + "/task/openapi/outputs"
    prompts = [f"prompt {i}" for i in range(args.tasks)]
    with ThreadPoolExecutor(max_workers=3) as executor:
        futures = [executor.submit(process_single_task, p, i) for i, p in enumerate(prompts)]
    if not all(f.result() for f in futures):
        raise SystemExit("some tasks did not finish")


if __name__ == "__main__":
    main()
