"""RunningHub's answers read into typed values: what the client's calls return.

    TaskOutputs.from_response(payload)    # a v1 outputs answer (or a webhook's eventData)
    TaskOutputs.from_query(payload)       # a v2 /openapi/v2/query answer
    TaskCreated.from_data(data)           # create / ai-app run

Pure functions of the decoded JSON: no HTTP here (``rhflow.api.client`` owns the transport). Ids
(taskId, nodeId, webappId) are strings everywhere: 19-digit ids do not survive a float.
Numbers sent as strings (``"83"``) are read as numbers; an answer code other than the
documented task states becomes the matching :class:`rhflow.errors.ApiError`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from rhflow.errors import (
    ApiError,
    BadResponseError,
    InvalidApiKeyError,
    RefusedAnswerError,
    api_error,
)

QUEUED, RUNNING, SUCCESS, FAILED = "QUEUED", "RUNNING", "SUCCESS", "FAILED"


# -- values ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskCreated:
    """The answer to create / ai-app run: the remote task id and what the platform said."""

    task_id: str
    status: str
    client_id: str | None
    net_wss_url: str | None
    prompt_tips: dict[str, Any] | None
    node_errors: dict[str, Any]

    @classmethod
    def from_data(cls, data: Any) -> TaskCreated:
        if not isinstance(data, Mapping) or not _id(data.get("taskId")):
            raise BadResponseError(f"task creation answered without a taskId: {_clip(data)}")
        tips = _parse_prompt_tips(data.get("promptTips"))
        errors = tips.get("node_errors") if tips else None
        return cls(
            task_id=answer_id(data["taskId"], "taskId"),
            status=_text(data.get("taskStatus") or data.get("status")),
            client_id=_text(data.get("clientId")) or None,
            net_wss_url=_text(data.get("netWssUrl")) or None,
            prompt_tips=tips,
            node_errors=dict(errors) if isinstance(errors, Mapping) else {},
        )


@dataclass(frozen=True, slots=True)
class Output:
    """One output file (or text) of a finished task."""

    file_url: str
    file_type: str
    node_id: str | None
    task_cost_time: float | None
    consume_coins: float | None
    consume_money: float | None
    text: str | None = None
    third_party_money: float | None = None

    @classmethod
    def from_item(cls, item: Mapping[str, Any], usage: Mapping[str, Any] | None = None) -> Output:
        """An output from a v1 ``data[]`` item or, with ``usage``, a v2 ``results[]`` item."""
        costs = usage if usage is not None else item
        url = _text(item.get("fileUrl") or item.get("url"))
        file_type = file_ext(_text(item.get("fileType") or item.get("outputType")), _url_ext(url))
        text = item.get("text")
        return cls(
            file_url=url,
            file_type=file_type,
            node_id=_clip(_id(item.get("nodeId")), MAX_ID) or None,
            task_cost_time=_number(costs.get("taskCostTime")),
            consume_coins=_number(costs.get("consumeCoins")),
            consume_money=_number(costs.get("consumeMoney")),
            text=text if isinstance(text, str) else None,
            third_party_money=_number(costs.get("thirdPartyConsumeMoney")),
        )


@dataclass(frozen=True, slots=True)
class FailedReason:
    """Why a task failed, as ComfyUI reported it (``failedReason`` of an 805 answer)."""

    node_id: str | None
    node_name: str | None
    exception_type: str | None
    exception_message: str | None
    traceback: tuple[str, ...]
    raw: dict[str, Any]

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> FailedReason:
        return cls(
            node_id=_id(raw.get("node_id")) or None,
            node_name=_text(raw.get("node_name")) or None,
            exception_type=_text(raw.get("exception_type")) or None,
            exception_message=_text(raw.get("exception_message")) or None,
            traceback=_parse_traceback(raw.get("traceback")),
            raw=dict(raw),
        )

    def __str__(self) -> str:
        if self.node_id and self.node_name:
            where = f"node {self.node_id} ({self.node_name})"
        elif self.node_id or self.node_name:
            where = f"node {self.node_id or self.node_name}"
        else:
            where = "the task"
        what = f" raised {self.exception_type}" if self.exception_type else " failed"
        text = where + what
        if self.exception_message:
            text += ": " + " ".join(self.exception_message.split())
        return text


@dataclass(frozen=True, slots=True)
class TaskOutputs:
    """A task's state as ``/task/openapi/outputs`` (or v2 ``/query``) reports it."""

    state: str
    outputs: tuple[Output, ...] = ()
    failed_reason: FailedReason | None = None
    net_wss_url: str | None = None
    message: str = ""

    @property
    def done(self) -> bool:
        return self.state in (SUCCESS, FAILED)

    @property
    def succeeded(self) -> bool:
        return self.state == SUCCESS

    @classmethod
    def from_response(cls, payload: Mapping[str, Any]) -> TaskOutputs:
        """Read a v1 outputs answer (also the ``eventData`` of a webhook, once parsed).

        Unfinished and failed tasks are states, not errors, in both documented forms:
        813/804/805 codes, or code 0 with ``data: null`` and code 500 for a failure.
        Any other non-zero code raises the matching ApiError.
        """
        code, msg, data = _code(payload), _message(payload), payload.get("data")
        if code == 813 or msg == "APIKEY_TASK_IS_QUEUED":
            return cls(QUEUED, message=msg)
        if code == 804 or msg == "APIKEY_TASK_IS_RUNNING":
            return cls(RUNNING, net_wss_url=_wss_url(data), message=msg)
        if code == 805 or (code == 500 and _says_failed(msg)):
            return cls(FAILED, failed_reason=_failed_reason(data, msg), message=msg)
        if code != 0:
            raise _error(code, msg, data)
        if isinstance(data, list):
            items = [Output.from_item(item) for item in data if isinstance(item, Mapping)]
            return cls(SUCCESS, tuple(items), message=msg)
        if isinstance(data, Mapping) and data.get("failedReason"):
            return cls(FAILED, failed_reason=_failed_reason(data, msg), message=msg)
        state = QUEUED if _says_queued(msg) else RUNNING
        return cls(state, net_wss_url=_wss_url(data), message=msg)

    @classmethod
    def from_query(cls, payload: Mapping[str, Any]) -> TaskOutputs:
        """Read a v2 ``/openapi/v2/query`` answer (flat: status, errorCode, results, usage)."""
        status = _text(payload.get("status")).upper()
        error_code = _text(payload.get("errorCode"))
        message = _text(payload.get("errorMessage"))
        if status == FAILED:
            return cls(FAILED, failed_reason=_query_failure(payload), message=message)
        if error_code and status not in (QUEUED, RUNNING, SUCCESS):
            raise _error(error_code, message)
        if status != SUCCESS:
            return cls(status or RUNNING, message=message)
        usage = payload.get("usage")
        usage = usage if isinstance(usage, Mapping) else {}
        results = payload.get("results") or []
        items = [Output.from_item(r, usage) for r in results if isinstance(r, Mapping)]
        return cls(SUCCESS, tuple(items), message=message)


@dataclass(frozen=True, slots=True)
class Account:
    """``accountStatus``: balance and the number of tasks the key has running."""

    remain_coins: float | None
    current_task_counts: int
    remain_money: float | None
    currency: str | None
    api_type: str | None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Account:
        return cls(
            remain_coins=_number(data.get("remainCoins")),
            current_task_counts=int(_number(data.get("currentTaskCounts")) or 0),
            remain_money=_number(data.get("remainMoney")),
            currency=_text(data.get("currency")) or None,
            api_type=_text(data.get("apiType")) or None,
        )


@dataclass(frozen=True, slots=True)
class AppField:
    """One editable field of an AI app as ``apiCallDemo`` lists it (values come as strings)."""

    node_id: str
    node_name: str
    field_name: str
    field_value: str
    field_type: str
    description: str

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> AppField:
        return cls(
            node_id=_text(item.get("nodeId")),
            node_name=_text(item.get("nodeName")),
            field_name=_text(item.get("fieldName")),
            field_value=_text(item.get("fieldValue")),
            field_type=_text(item.get("fieldType")) or "STRING",
            description=_text(item.get("descriptionEn") or item.get("description")),
        )


@dataclass(frozen=True, slots=True)
class AppInfo:
    """``apiCallDemo``: an AI app's name and the fields a run may set."""

    name: str
    fields: tuple[AppField, ...]

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> AppInfo:
        items = data.get("nodeInfoList") or []
        return cls(
            name=_text(data.get("webappName")),
            fields=tuple(AppField.from_item(i) for i in items if isinstance(i, Mapping)),
        )


@dataclass(frozen=True, slots=True)
class Upload:
    """An uploaded file: ``file_name`` (``api/<sha256>.<ext>``) goes into a loader's fieldValue."""

    file_name: str
    file_type: str


@dataclass(frozen=True, slots=True)
class WebhookDetail:
    """``getWebhookDetail``: the delivery record of a task's webhook."""

    id: str
    task_id: str
    webhook_url: str
    event_data: str
    callback_status: str
    callback_response: str
    retry_count: int
    create_time: str
    update_time: str

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> WebhookDetail:
        return cls(
            id=_id(data.get("id")),
            task_id=_id(data.get("taskId")),
            webhook_url=_text(data.get("webhookUrl")),
            event_data=_text(data.get("eventData")),
            callback_status=_text(data.get("callbackStatus")),
            callback_response=_text(data.get("callbackResponse")),
            retry_count=int(_number(data.get("retryCount")) or 0),
            create_time=_text(data.get("createTime")),
            update_time=_text(data.get("updateTime")),
        )


@dataclass(frozen=True, slots=True)
class DownloadResult:
    """A file downloaded into place: where, its SHA-256 and its size in bytes."""

    path: Path
    sha256: str
    bytes: int


# -- helpers -----------------------------------------------------------------------------------


def _error(code: int | str | None, message: str, data: Any = None) -> ApiError:
    """The ApiError for an answer; 433 names the invalid nodes, 401 is a bad key."""
    if code == 401:
        return InvalidApiKeyError(message, code=401, name="UNAUTHORIZED")
    if isinstance(data, Mapping) and _is_identifier(message):
        tips = _parse_prompt_tips(data.get("promptTips"))
        errors = tips.get("node_errors") if tips else None
        if isinstance(errors, Mapping) and errors:
            message = f"{message}: {_describe_node_errors(errors)}"
    return api_error(code if code is not None else -1, message)


def _is_identifier(message: str) -> bool:
    """True for a bare ``VALIDATE_PROMPT_FAILED``-style msg that explains nothing by itself."""
    return not message or re.fullmatch(r"[A-Z0-9_]+", message) is not None


def _describe_node_errors(errors: Mapping[str, Any]) -> str:
    parts = []
    for node_id, entry in errors.items():
        entry = entry if isinstance(entry, Mapping) else {}
        label = f"node {node_id}"
        if entry.get("class_type"):
            label += f" ({entry['class_type']})"
        found = entry.get("errors")
        texts = [_error_text(e) for e in found] if isinstance(found, list) else []
        texts = texts or [_clip(dict(entry))]
        parts.append(f"{label}: {'; '.join(texts)}")
    return "; ".join(parts)


def _error_text(error: Any) -> str:
    if not isinstance(error, Mapping):
        return str(error)
    message = _text(error.get("message"))
    details = _text(error.get("details"))
    return f"{message} ({details})" if details else message


def _code(payload: Mapping[str, Any]) -> int | None:
    code = payload.get("code")
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    try:
        return int(str(code).strip())
    except ValueError:
        return None


def _message(payload: Mapping[str, Any]) -> str:
    return _text(payload.get("msg") or payload.get("message") or payload.get("errorMessage"))


def _says_queued(msg: str) -> bool:
    return "排队" in msg or "QUEUED" in msg.upper()


def _says_failed(msg: str) -> bool:
    return "失败" in msg or "FAIL" in msg.upper()


def _wss_url(data: Any) -> str | None:
    return (_text(data.get("netWssUrl")) or None) if isinstance(data, Mapping) else None


def _failed_reason(data: Any, msg: str) -> FailedReason:
    raw = data.get("failedReason") if isinstance(data, Mapping) else None
    if isinstance(raw, str):
        raw = _try_json(raw)
    if not isinstance(raw, Mapping):
        raw = {"exception_message": msg} if msg else {}
    return FailedReason.from_raw(raw)


def _query_failure(payload: Mapping[str, Any]) -> FailedReason:
    raw = payload.get("failedReason")
    if isinstance(raw, Mapping) and raw:
        return FailedReason.from_raw(raw)
    message = _text(payload.get("errorMessage")) or _text(payload.get("errorCode"))
    return FailedReason.from_raw({"exception_message": message} if message else {})


def _parse_prompt_tips(value: Any) -> dict[str, Any] | None:
    if isinstance(value, str):
        value = _try_json(value)
    return dict(value) if isinstance(value, Mapping) else None


def _parse_traceback(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        parsed = _try_json(value)
        if isinstance(parsed, list):
            value = parsed
        else:
            return (value,) if value.strip() else ()
    if isinstance(value, list):
        return tuple(str(line) for line in value)
    return ()


def _try_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _id(value: Any) -> str:
    """An id as a string: ints (even 19 digits) exactly, integral floats without ``.0``."""
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


#: Longest id taken from an answer (RunningHub's are 19 digits).
MAX_ID = 64
_PLAIN_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
_PLAIN_EXT = re.compile(r"[a-z0-9]{1,16}")


def answer_id(value: Any, what: str) -> str:
    """An id the server sent (taskId), as a string; RefusedAnswerError for a float (it has
    lost the digits of a 19-digit id), a boolean, or anything but 1-64 letters, digits, ``_``
    and ``-``."""
    if isinstance(value, float):
        raise RefusedAnswerError(
            f"the answer's {what} is a float ({value!r}), which cannot hold a 19-digit id exactly"
        )
    text = "" if isinstance(value, bool) or value is None else str(value).strip()
    if not _PLAIN_ID.fullmatch(text):
        raise RefusedAnswerError(
            f"the answer's {what} {_clip(text, 40)!r} is not an id (1-64 letters and digits)"
        )
    return text


def file_ext(*candidates: str) -> str:
    """The first candidate that is a plain extension (1-16 letters or digits), lower-cased;
    "" when none is. A server-given ``fileType`` such as ``../../x``, ``/etc/passwd`` or one
    with a NUL byte never becomes part of a file name."""
    for candidate in candidates:
        ext = candidate.strip().lower()
        if _PLAIN_EXT.fullmatch(ext):
            return ext
    return ""


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def task_charges(outputs: Sequence[Output]) -> tuple[float, float | None]:
    """What a task cost: its coins, and its money (running time plus third-party APIs; None
    when no money was charged). Every output item repeats the task's figures (v2 gives one
    ``usage`` per task), so each is the largest an item gives, not their sum."""
    coins = _largest(o.consume_coins for o in outputs)
    money = [_largest(o.consume_money for o in outputs),
             _largest(o.third_party_money for o in outputs)]  # fmt: skip
    known = [m for m in money if m is not None]
    return coins or 0.0, round(sum(known), 6) if known else None


def _largest(values: Iterable[float | None]) -> float | None:
    """The largest of the finite, non-negative ``values`` (None when there is none)."""
    kept = [v for v in values if v is not None and math.isfinite(v) and v >= 0]
    return max(kept) if kept else None


def _number(value: Any) -> float | None:
    """A number sent as a number or a string (``"83"``, ``83``); None when absent or garbage."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _url_ext(url: str) -> str:
    return PurePosixPath(urlsplit(url).path).suffix.lstrip(".")


def _clip(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
