"""Fault injection: random (``error_rate``) and counted (``POST /emulator/faults``)."""

from __future__ import annotations

import random

#: Fault names and what the next N matching requests or tasks get.
FAULTS = {
    "http_500": "API request answered HTTP 500 with an HTML body",
    "code_1011": "API request answered code 1011 SYSTEM_BUSY",
    "code_423": "API request answered code 423 TASK_NOT_FOUNED",
    "code_435": "API request answered code 435 TASK_USER_EXCLAPI_INSTANCE_NOT_FOUND",
    "code_436": "API request answered code 436 TASK_USER_EXCLAPI_REQUIRED",
    "code_801": "API request answered code 801 APIKEY_UNSUPPORTED_FREE_USER",
    "code_806": "API request answered code 806 APIKEY_USER_NOT_FOUND",
    "code_810": "API request answered code 810 WORKFLOW_NOT_SAVED_OR_NOT_RUNNING",
    "code_811": "API request answered code 811 CORPAPIKEY_INVALID",
    "code_812": "API request answered code 812 CORPAPIKEY_INSUFFICIENT_FUNDS",
    "drop": "API request's connection closed without an answer",
    "create_busy": "task creation answered 421 TASK_QUEUE_MAXED",
    "instance_busy": "task creation answered 415 TASK_INSTANCE_MAXED",
    "fail_tasks": "created task ends FAILED (torch.OutOfMemoryError)",
    "no_outputs": "task ends SUCCESS with an empty output list",
    "download_500": "GET of an output file answered HTTP 500",
    "download_truncate": "GET of an output file sends half the bytes, then closes",
}
TRANSIENT = ("http_500", "code_1011", "drop")
#: Faults that answer an API request with a business code (only when asked for, never random).
CODES = tuple(name for name in FAULTS if name.startswith("code_") and name not in TRANSIENT)


class FaultError(ValueError):
    """A /emulator/faults request names an unknown fault or a bad count."""


class Faults:
    """Counters of pending faults, optionally scoped to one path (``"http_500:/path"``)."""

    def __init__(self, error_rate: float, seed: int) -> None:
        self.error_rate = error_rate
        self.rng = random.Random(seed + 1)
        self.pending: dict[str, int] = {}
        self.injected: dict[str, int] = {}

    def add(self, counters: object) -> None:
        if not isinstance(counters, dict):
            raise FaultError("send a JSON object of {fault: count}")
        for name, count in counters.items():
            base = str(name).split(":", 1)[0]
            if base not in FAULTS:
                raise FaultError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise FaultError(f"fault {name!r}: count must be a non-negative integer")
            self.pending[str(name)] = self.pending.get(str(name), 0) + count

    def take(self, name: str, path: str = "") -> bool:
        """Consume one pending ``name`` fault for ``path`` (scoped counters first)."""
        for key in (f"{name}:{path}", name):
            if self.pending.get(key, 0) > 0:
                self.pending[key] -= 1
                self.injected[name] = self.injected.get(name, 0) + 1
                return True
        return False

    def transient(self, path: str) -> str | None:
        """The transient fault an API request meets, if any (counted first, then random)."""
        for name in (*TRANSIENT, *CODES):
            if self.take(name, path):
                return name
        if self.error_rate and self.rng.random() < self.error_rate:
            name = self.rng.choice(TRANSIENT)
            self.injected[name] = self.injected.get(name, 0) + 1
            return name
        return None

    def state(self) -> dict[str, object]:
        return {
            "pending": {k: v for k, v in self.pending.items() if v},
            "injected": dict(self.injected),
            "known": FAULTS,
        }
