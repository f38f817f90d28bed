"""A loop like the official ComfyUI plugin's: one task at a time, create, poll its outputs
every 5 s until it is done, download the file, then the next task.

    python benchmarks/plugin_loop.py --base-url http://127.0.0.1:8800 --tasks 3 --out /tmp/x
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import requests

WORKFLOW_ID = "1904136902449209346"
POLL_SECONDS = 5.0


def post(session: requests.Session, url: str, body: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = session.post(url, json=body, timeout=30).json()
    return answer


def one_task(session: requests.Session, base: str, key: str, seed: int, out: Path) -> None:
    nodes = [
        {"nodeId": "3", "fieldName": "seed", "fieldValue": seed},
        {"nodeId": "5", "fieldName": "width", "fieldValue": 64},
        {"nodeId": "5", "fieldName": "height", "fieldValue": 64},
    ]
    body = {"apiKey": key, "workflowId": WORKFLOW_ID, "nodeInfoList": nodes}
    created = post(session, base + "/task/openapi/create", body)
    if created["code"] != 0:
        raise SystemExit(f"create failed: {created}")
    task_id = created["data"]["taskId"]
    while True:
        time.sleep(POLL_SECONDS)
        answer = post(session, base + "/task/openapi/outputs", {"apiKey": key, "taskId": task_id})
        if answer["code"] == 0 and answer["data"]:
            break
        if answer["code"] not in (804, 813, 0):
            raise SystemExit(f"task {task_id} failed: {answer}")
    for i, item in enumerate(answer["data"]):
        data = session.get(item["fileUrl"], timeout=60).content
        (out / f"{seed}-{i}.{item.get('fileType') or 'bin'}").write_bytes(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    key = os.environ["RH_API_KEY"]
    with requests.Session() as session:
        for seed in range(1, args.tasks + 1):
            one_task(session, args.base_url, key, seed, args.out)


if __name__ == "__main__":
    main()
