"""How a task can end badly, as values the executor passes around.

``TaskFailure`` carries the structured reason the manifest shows (``kind``, ``message`` and, for
a task ComfyUI failed, the node and exception); ``Lost`` means the server no longer knows a
remote task: one picked up from an earlier run is submitted again; one created in this run
counts as a failed attempt (kind ``lost``), retried only within ``retries``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rhflow.api.client import TaskOutputs
from rhflow.errors import ApiError


class TaskFailure(Exception):
    """Why a task stopped: ``detail`` is ``{"kind", "message", ...}`` as the manifest shows it.

    ``keep`` is the status the state store keeps instead of "failed" when the task is not over
    for good: "downloading" (its files can still be fetched) or "running" (it could not be
    checked and may still run remotely), so that the next run picks it up instead of paying
    for it again."""

    def __init__(
        self,
        detail: Mapping[str, Any],
        *,
        retry: bool,
        fatal: bool = False,
        keep: str | None = None,
    ) -> None:
        self.detail = dict(detail)
        self.retry = retry
        self.fatal = fatal
        self.keep = keep
        super().__init__(self.detail["message"])

    @property
    def message(self) -> str:
        return str(self.detail["message"])

    @property
    def kind(self) -> str:
        return str(self.detail["kind"])


class Lost(Exception):
    """The remote task is gone (unknown to the server)."""


def failure_of(outputs: TaskOutputs) -> dict[str, Any]:
    """The structured failure of a FAILED task."""
    reason = outputs.failed_reason
    if reason is None:
        return {"kind": "failed", "message": f"the task failed ({outputs.message or 'no reason'})"}
    return {
        "kind": "failed",
        "message": str(reason),
        "code": None,
        "node_id": reason.node_id,
        "node_name": reason.node_name,
        "exception_type": reason.exception_type,
    }


def api_failure(err: ApiError, doing: str, *, keep: str | None = None) -> TaskFailure:
    detail = {"kind": "api_error", "message": f"{doing}: {err}", "code": err.code}
    return TaskFailure(detail, retry=False, fatal=err.fatal, keep=keep)
