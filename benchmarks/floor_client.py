"""The floor: a plain asyncio client with no records, retries or checks. Per task it creates,
polls every 0.1 s while the task is queued, follows the WebSocket to ``execution_success``,
asks for the outputs and downloads the files; ``--concurrency`` tasks at a time. What it
takes beyond the ideal is the emulator's share and the machine's, which rhflow cannot beat.

    python benchmarks/floor_client.py --base-url http://127.0.0.1:8800 --tasks 500 \\
        --concurrency 50 --out /tmp/floor
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp

WORKFLOW_ID = "1904136902449209346"


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Any:
    async with session.post(url, json=body) as response:
        return await response.json()


async def one_task(
    session: aiohttp.ClientSession, base: str, key: str, seed: int, out: Path
) -> None:
    nodes = [
        {"nodeId": "3", "fieldName": "seed", "fieldValue": seed},
        {"nodeId": "5", "fieldName": "width", "fieldValue": 64},
        {"nodeId": "5", "fieldName": "height", "fieldValue": 64},
    ]
    body = {"apiKey": key, "workflowId": WORKFLOW_ID, "nodeInfoList": nodes}
    while (created := await post(session, base + "/task/openapi/create", body))["code"] != 0:
        await asyncio.sleep(0.1)  # 421: the key is busy
    ask = {"apiKey": key, "taskId": created["data"]["taskId"]}
    wss = created["data"].get("netWssUrl")
    while not wss:  # queued: the socket comes once the task runs
        await asyncio.sleep(0.1)
        answer = await post(session, base + "/task/openapi/outputs", ask)
        if answer["code"] == 0:
            break
        wss = (answer.get("data") or {}).get("netWssUrl")
    if wss:
        async with session.ws_connect(wss) as ws:
            async for message in ws:
                if '"execution_success"' in message.data:
                    break
    while (answer := await post(session, base + "/task/openapi/outputs", ask))["code"] != 0:
        await asyncio.sleep(0.05)
    for i, item in enumerate(answer["data"]):
        async with session.get(item["fileUrl"]) as response:
            (out / f"{seed}-{i}.png").write_bytes(await response.read())


async def run(base: str, key: str, tasks: int, concurrency: int, out: Path) -> None:
    seeds = iter(range(1, tasks + 1))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for seed in seeds:
                await one_task(session, base, key, seed, out)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    key = os.environ["RH_API_KEY"]
    asyncio.run(run(args.base_url, key, args.tasks, args.concurrency, args.out))


if __name__ == "__main__":
    main()
