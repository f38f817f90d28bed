"""The public ``runninghub-sdk`` (PyPI, https://github.com/difyz9/runninghub-sdk) used as its
README shows, against the server at ``$RH_BASE_URL`` with ``$RH_API_KEY``: the quick start
(sync and async) and the other API-key calls. Nothing of the SDK is changed; each call prints
one line ``name: value`` for tests/test_external_clients.py to read."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from runninghub_sdk import RunningHubClient, modify_nodes

BASE, KEY = os.environ["RH_BASE_URL"], os.environ["RH_API_KEY"]
WORKFLOW, APP = sys.argv[1], sys.argv[2]


def show(name: str, value: object) -> None:
    print(f"{name}: {value}", flush=True)


with RunningHubClient(api_key=KEY, base_url=BASE) as client:
    modifier = (
        modify_nodes().text("6", "a cinematic sunset over the sea").seed("3", 12345).steps("3", 25)
    )
    task = client.run_with_modifier(WORKFLOW, modifier)
    show("created", task.task_status.value)
    outputs = client.wait_for_completion(task.task_id)
    for output in outputs:
        show("file_url", output.file_url)
    show("status", client.get_status(task.task_id).value)
    folder = Path(tempfile.mkdtemp())
    for path in client.download_task_outputs(task.task_id, folder):
        show("downloaded", Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n")
    account = client.get_account_status()
    show("account", f"{account.api_type} {account.current_task_counts}")
    show("workflow nodes", sorted(client.get_workflow_json_parsed(WORKFLOW))[:3])
    upload = client.upload_image(b"\x89PNG\r\n\x1a\n" + bytes(100))
    show("uploaded", upload["fileName"].startswith("openapi/"))
    demo = client.get_ai_app_api_demo(APP)
    show("app fields", [f"{n.node_id}.{n.field_name}" for n in demo.node_info_list])
    queued = client.run(WORKFLOW)
    client.cancel(queued.task_id)
    show("after cancel", client.get_status(queued.task_id).value)
    app = client.run_ai_app(APP, [{"nodeId": "6", "fieldName": "text", "fieldValue": "hi"}])
    show("app outputs", len(client.wait_for_completion(app.task_id)))


async def main() -> None:
    async with RunningHubClient(api_key=KEY, base_url=BASE) as client:
        modifier = modify_nodes().text("6", "a beautiful landscape")
        task = await client.async_run_with_modifier(WORKFLOW, modifier)
        outputs = await client.async_wait_for_completion(task.task_id)
        for output in outputs:
            show("async file_url", output.file_url)


asyncio.run(main())
