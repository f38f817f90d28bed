"""TASK_END webhooks: delivery with retries, and the records getWebhookDetail returns."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from rhflow.emulator.config import EmulatorConfig
from rhflow.emulator.records import new_id


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


@dataclass(slots=True)
class WebhookRecord:
    """One webhook event: what was sent where, and how the last delivery went."""

    id: str
    task_id: str
    key: str
    url: str
    event_data: str
    status: str = "PENDING"
    response: str = ""
    retry_count: int = 0
    create_time: str = ""
    update_time: str = ""

    def detail(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "userApiKey": "*" * 18,
            "taskId": self.task_id,
            "webhookUrl": self.url,
            "eventData": self.event_data,
            "callbackStatus": self.status,
            "callbackResponse": self.response,
            "retryCount": self.retry_count,
            "createTime": self.create_time,
            "updateTime": self.update_time,
        }


class Webhooks:
    """Sends TASK_END events in the background; ``records`` by taskId and by id."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.by_task: dict[str, WebhookRecord] = {}
        self.by_id: dict[str, WebhookRecord] = {}
        self.sent = 0
        self.failed = 0
        self._jobs: set[asyncio.Task[None]] = set()

    def send(self, task_id: str, key: str, url: str, outputs: dict[str, Any]) -> None:
        """Record and deliver the TASK_END event of a task (in the background)."""
        record = WebhookRecord(
            new_id(),
            task_id,
            key,
            url,
            json.dumps(outputs, ensure_ascii=False),
            create_time=_now(),
            update_time=_now(),
        )
        self.by_task[task_id] = record
        self.by_id[record.id] = record
        self._spawn(record)

    def resend(self, record: WebhookRecord, url: str | None) -> None:
        if url:
            record.url = url
        record.retry_count = 0
        self._spawn(record)

    def _spawn(self, record: WebhookRecord) -> None:
        job = asyncio.get_running_loop().create_task(self._deliver(record))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _deliver(self, record: WebhookRecord) -> None:
        body = {"event": "TASK_END", "taskId": record.task_id, "eventData": record.event_data}
        for attempt in range(self.config.webhook_retries + 1):
            if attempt:
                record.retry_count = attempt
                await asyncio.sleep(self.config.webhook_retry_delay)
            record.status = "RETRYING" if attempt else "PENDING"
            ok, record.response = await self._post(record.url, body)
            record.update_time = _now()
            if ok:
                record.status = "SUCCESS"
                self.sent += 1
                return
        record.status = "FAILED"
        self.failed += 1

    async def _post(self, url: str, body: dict[str, Any]) -> tuple[bool, str]:
        timeout = aiohttp.ClientTimeout(total=self.config.webhook_timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(url, json=body) as resp,
            ):
                text = (await resp.text(errors="replace"))[:1000]
                return 200 <= resp.status < 300, text if resp.status < 300 else (
                    f"HTTP {resp.status}: {text}"
                )
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            return False, f'I/O error on POST request for "{url}": {exc or type(exc).__name__}'

    async def close(self) -> None:
        for job in list(self._jobs):
            job.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)

    def stats(self) -> dict[str, int]:
        return {"sent": self.sent, "failed": self.failed, "events": len(self.by_id)}
