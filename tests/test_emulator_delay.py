"""How much the emulator itself delays answers and frames when many tasks end together.

The makespan of a run against the emulator must be rhflow's, not the emulator's: fifty tasks
that end at the same moment must not hold up every answer while their outputs are made. The
test measures the delay and reports it (``pytest -s -k delay`` prints the figures); it asserts
only that the figures were measured, since speed belongs in benchmarks.
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import requests
from test_emulator_api import finished_outputs, post, wait_for

from rhflow.emulator import TEXT_TO_IMAGE, Emulator, images
from rhflow.emulator.records import OutputFile
from rhflow.emulator.renders import Renders

TASKS = 50
RUN_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Delay:
    """Seconds the emulator added, beyond its idle answer time, while the tasks ended."""

    probe: float  # the slowest answer to an unrelated request, minus the idle median
    frame: float  # the latest execution_success frame, after its task's clock said it ended
    ready: float  # the latest output file fully downloaded, after its task's clock ended


async def _post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Any:
    async with session.post(url, json=body) as response:
        return await response.json()


async def _follow(
    session: aiohttp.ClientSession, url: str, key: str, created: dict[str, Any], end: float
) -> tuple[float, float]:
    """Lateness of the task's execution_success frame and of its downloaded output."""
    frame_late = float("nan")
    async with session.ws_connect(created["netWssUrl"]) as ws:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            if message.json()["type"] == "execution_success":
                frame_late = time.monotonic() - end
                break
    body = {"apiKey": key, "taskId": created["taskId"]}
    while (answer := await _post(session, url + "/task/openapi/outputs", body))["code"] != 0:
        await asyncio.sleep(0.01)
    async with session.get(answer["data"][0]["fileUrl"]) as response:
        await response.read()
    return frame_late, time.monotonic() - end


async def _probe(session: aiohttp.ClientSession, url: str, key: str, until: float) -> list[float]:
    latencies = []
    while time.monotonic() < until:
        sent = time.monotonic()
        await _post(session, url + "/uc/openapi/accountStatus", {"apikey": key})
        latencies.append(time.monotonic() - sent)
        await asyncio.sleep(0.005)
    return latencies


async def _measure(url: str, key: str) -> Delay:
    async with aiohttp.ClientSession() as session:
        idle = await _probe(session, url, key, time.monotonic() + 0.3)
        created, ends = [], []
        for seed in range(TASKS):
            nodes = [{"nodeId": "3", "fieldName": "seed", "fieldValue": seed}]
            body = {"apiKey": key, "workflowId": TEXT_TO_IMAGE, "nodeInfoList": nodes}
            answer = await _post(session, url + "/task/openapi/create", body)
            assert answer["code"] == 0, answer
            created.append(answer["data"])
            ends.append(time.monotonic() + RUN_SECONDS)
        follows = [
            _follow(session, url, key, data, end) for data, end in zip(created, ends, strict=True)
        ]
        busy, *lateness = await asyncio.gather(_probe(session, url, key, ends[-1] + 1.0), *follows)
    baseline = statistics.median(idle)
    return Delay(
        probe=max(busy) - baseline,
        frame=max(frame for frame, _ in lateness),
        ready=max(ready for _, ready in lateness),
    )


def measure_delay(emu: Emulator, key: str) -> Delay:
    """Create TASKS tasks back to back (they end together) and measure what the emulator adds."""
    return asyncio.run(_measure(emu.url, key))


def test_the_emulator_s_own_delay_at_fifty_tasks_ending_together(
    make_emulator: Callable[..., Emulator], api_key: str, record_property: Any
) -> None:
    emu = make_emulator(task_seconds=(RUN_SECONDS, RUN_SECONDS), queue_seconds=0, seed=3)
    delay = measure_delay(emu, api_key)
    for name in ("probe", "frame", "ready"):
        record_property(f"delay_{name}_seconds", getattr(delay, name))
    print(
        f"\nemulator delay at {TASKS} tasks ending together: slowest answer +{delay.probe:.3f} s, "
        f"latest end frame +{delay.frame:.3f} s, latest output ready +{delay.ready:.3f} s"
    )
    assert all(value == value for value in (delay.probe, delay.frame, delay.ready))  # not NaN
    assert emu.stats()["tasks"]["succeeded"] == TASKS


def test_outputs_are_rendered_while_the_task_runs(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator(task_seconds=(0.3, 0.3), queue_seconds=0)
    created = post(emu, "/task/openapi/create", {"apiKey": api_key, "workflowId": TEXT_TO_IMAGE})
    task_id = created["data"]["taskId"]
    wait_for(lambda: emu.stats()["files_rendered"] == 1)  # before anyone asks for the file
    assert post(emu, "/task/openapi/status", {"apiKey": api_key, "taskId": task_id})["data"] == (
        "RUNNING"
    )
    (item,) = finished_outputs(emu, api_key, task_id)["data"]
    first = requests.get(item["fileUrl"], timeout=10).content
    assert requests.get(item["fileUrl"], timeout=10).content == first
    assert emu.stats()["files_rendered"] == 1  # served from the cache, not made again


def test_the_pixels_are_those_of_earlier_versions() -> None:
    """Rendering rows with slices instead of per-pixel loops kept every byte the same."""
    made = b"".join(
        images.render_png(w, h, images.digest("k", w))
        for w, h in [(512, 512), (7, 300), (1000, 3), (64, 64)]
    )
    assert hashlib.sha256(made).hexdigest() == (
        "110a8c8d4d49b787592c5fbbd8f349adfcae664aef115c04797207ceb39e8997"
    )


def test_a_file_pushed_out_of_the_cache_is_rendered_again() -> None:
    async def scenario() -> tuple[bytes, bytes, int]:
        renders = Renders(limit=1)
        one = OutputFile("a.png", "9", "png", "image", ("image", 16, 16, b"a" * 32, None))
        two = OutputFile("b.png", "9", "png", "image", ("image", 16, 16, b"b" * 32, None))
        try:
            first = await renders.data(one)
            await renders.data(two)
            await asyncio.sleep(0)  # let the worker's result reach the cache
            again = await renders.data(one)
            return first, again, renders.rendered
        finally:
            renders.close()

    first, again, rendered = asyncio.run(scenario())
    assert first == again and first.startswith(images.PNG_SIGNATURE)
    assert rendered == 3
