"""Every error rhflow raises on purpose, in one tree.

    RhflowError                      anything a user can act on; str() is the message to show
    ├── ConfigError                  a pipeline file is invalid (carries every Problem found)
    ├── PlanError                    a valid pipeline that cannot be expanded (e.g. empty sweep)
    ├── UsageError                   a command-line option or argument is wrong
    ├── StateError                   the state store or a manifest cannot be read or written
    │   └── StateUnusableError       the output folder's state cannot be used: the run stops
    │       │                        before any create (exit 2)
    │       └── DamagedStateError    the state store's content cannot be read (rebuilt from
    │                                manifest.json when there is one)
    ├── OutputWriteError             an output file cannot be written (disk full, read-only...)
    ├── LockError                    rhflow.lock is unreadable, or --frozen and a workflow changed
    ├── CacheError                   a --cache entry cannot be read, written or trusted
    ├── RunInterrupted               Ctrl-C / SIGTERM stopped a run (exit code 130)
    └── ApiError(code, name, message)   RunningHub answered with an error, or could not be reached
        ├── TransportError           connection refused/reset/timed out (retryable)
        ├── BadResponseError         the answer was not the JSON envelope expected (retryable)
        │   └── RefusedAnswerError   an answer over a limit or against a rule (not retried)
        │       └── ForeignRedirectError   an API call redirected elsewhere (stops the run)
        ├── ServerError              HTTP 5xx (retryable)
        └── one class per documented code: QueueFullError (421), InvalidNodeInfoError (803), ...

Each ApiError class carries three flags the executor reads:

- ``retryable``: sending the same request again later may succeed (network faults, 5xx, busy);
- ``busy``: the platform is at its concurrency limit (415, 421, 814): wait and resubmit, which
  counts neither as a failure nor as a retry;
- ``fatal``: nothing else in the run can succeed either (bad key, no balance): stop the run.

``api_error(code, message)`` builds the right subclass for a code, so that callers write
``except QueueFullError`` or test ``err.retryable`` rather than comparing numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


class RhflowError(Exception):
    """Root of the errors rhflow raises for users; ``str(err)`` is a complete sentence."""

    exit_code: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a pipeline file, located by file, line and column (1-based)."""

    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.col}: {where}{self.message}"


class ConfigError(RhflowError):
    """A pipeline file is invalid; ``problems`` lists every problem found, sorted."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (p.file, p.line, p.col, p.path)))
        super().__init__("\n".join(str(p) for p in self.problems))


class PlanError(RhflowError):
    """A pipeline that validates but cannot be expanded into tasks."""

    exit_code = 2


class UsageError(RhflowError):
    """A command-line option or argument is wrong."""

    exit_code = 2


class StateError(RhflowError):
    """The state store or a manifest cannot be read or written."""


class StateUnusableError(StateError):
    """The output folder's state cannot be used (unwritable, a file where a folder belongs,
    a store of a newer rhflow): the run stops before anything is sent."""

    exit_code = 2


class LockError(RhflowError):
    """``rhflow.lock`` cannot be read, or (with ``--frozen``) a workflow differs from it."""

    exit_code = 2


class DamagedStateError(StateUnusableError):
    """The state store's content cannot be read (not a database, another schema, a bad
    value); ``reason`` says what was wrong."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        self.reason = reason or message
        super().__init__(message)


class OutputWriteError(RhflowError):
    """A file cannot be written into the output folder: ``folder`` and ``cause`` (the OS's
    words: "No space left on device", "File too large", ...). Not a network fault: every other
    download into the same folder would fail too, so the run stops creating tasks."""

    def __init__(self, folder: str, cause: str, *, errno: int | None = None) -> None:
        self.folder = folder
        self.cause = cause
        self.errno = errno
        super().__init__(f"cannot write into {folder}: {cause}")

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_write_error, (self.folder, self.cause, self.errno))


def _rebuild_write_error(folder: str, cause: str, errno: int | None) -> OutputWriteError:
    return OutputWriteError(folder, cause, errno=errno)


class CacheError(RhflowError):
    """A ``--cache`` entry cannot be read or written, or does not match its sha256: the run
    ignores it with a warning and goes on."""


class RunInterrupted(RhflowError):
    """The run was stopped by Ctrl-C or SIGTERM."""

    exit_code = 130


class ApiError(RhflowError):
    """RunningHub answered with a non-zero code, or could not be reached.

    ``code`` is the API's number (or the HTTP status for ServerError, 0 for transport faults),
    ``name`` its identifier (``TASK_QUEUE_MAXED``), ``message`` what the server said. The API key
    is never part of any of them: the client removes it before raising.
    """

    code: int = -1
    name: str = "API_ERROR"
    hint: ClassVar[str] = ""
    retryable: ClassVar[bool] = False
    busy: ClassVar[bool] = False
    fatal: ClassVar[bool] = False

    def __init__(self, message: str = "", *, code: int | None = None, name: str | None = None):
        if code is not None:
            self.code = code
        if name is not None:
            self.name = name
        self.message = message or self.name
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = f"RunningHub answered {self.code} {self.name}"
        if self.message and self.message != self.name:
            text += f": {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_api_error, (type(self), self.message, self.code, self.name))


def _rebuild_api_error(cls: type[ApiError], message: str, code: int, name: str) -> ApiError:
    return cls(message, code=code, name=name)


class TransportError(ApiError):
    """No answer. ``sent`` says whether the request may have reached the server first (a
    connection dropped or timed out after sending): a create may then have been made."""

    code = 0
    name = "CONNECTION_ERROR"
    hint = "the server could not be reached; check --base-url and the network"
    retryable = True
    sent: bool = True


class UnreachableError(TransportError):
    """The server did not answer the first request of a command: nothing was sent, so nothing
    is retried. ``host`` and ``cause`` name what failed; exit code 2 (check the options)."""

    name = "UNREACHABLE"
    retryable = False
    fatal = True
    exit_code = 2
    sent = False

    def __init__(self, host: str, cause: str) -> None:
        self.host = host
        self.cause = cause
        super().__init__(cause)

    def __str__(self) -> str:
        return f"cannot reach {self.host}: {self.cause}; check --base-url and the network"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.host, self.cause))


class BadResponseError(ApiError):
    code = 0
    name = "BAD_RESPONSE"
    hint = "the server's answer was not the JSON RunningHub sends"
    retryable = True


class StalledError(TransportError):
    """A download that brought less than the minimum rate: a hiccup of the network or of the
    file host, so it is tried once more (``retries_at_most``), but a host that stays that slow
    is not waited on again and again."""

    name = "STALLED"
    hint = ""
    retries_at_most: ClassVar[int] = 1


class RefusedAnswerError(BadResponseError):
    """An answer rhflow will not take: over a size or time cap, a file URL that is not
    http(s), an id no integer can hold, too many outputs. The same request would get the same
    answer, so it is not retried."""

    name = "REFUSED_ANSWER"
    hint = ""
    retryable = False


class ForeignRedirectError(RefusedAnswerError):
    """An API call was redirected to another origin (or in a way not followed): the request
    carries the key, so it is not sent there. Every call would be, so the run stops."""

    name = "REDIRECT_REFUSED"
    fatal = True
    exit_code = 2


class ServerError(ApiError):
    code = 500
    name = "HTTP_ERROR"
    retryable = True


class GenericError(ApiError):
    code, name = 1, "ERROR"


class ParamsInvalidError(ApiError):
    code, name = 301, "PARAMS_INVALID"
    hint = "a required parameter is missing or has the wrong type"


class WorkflowNotFoundError(ApiError):
    code, name, hint = 380, "WORKFLOW_NOT_EXISTS", "check the workflow id"


class TokenInvalidError(ApiError):
    code, name, hint = 412, "TOKEN_INVALID", "the API path is wrong; check --base-url"


class InstanceBusyError(ApiError):
    code, name, hint = 415, "TASK_INSTANCE_MAXED", "no free exclusive instance; retry in 30-120 s"
    retryable = busy = True


class WalletInsufficientError(ApiError):
    code, name, hint = 416, "TASK_CREATE_FAILED_BY_NOT_ENOUGH_WALLET", "top up the wallet"
    fatal = True


class QueueFullError(ApiError):
    code, name, hint = 421, "TASK_QUEUE_MAXED", "the key's concurrency limit is reached"
    retryable = busy = True


class LegacyTaskNotFoundError(ApiError):
    code, name, hint = 423, "TASK_NOT_FOUNED", "no task with that id"


class PromptValidationError(ApiError):
    code, name = 433, "VALIDATE_PROMPT_FAILED"
    hint = "the workflow graph is invalid; see node_errors"


class InstanceNotFoundError(ApiError):
    code, name, hint = 435, "TASK_USER_EXCLAPI_INSTANCE_NOT_FOUND", "set instance_type: plus"


class ExclusiveApiRequiredError(ApiError):
    code, name, hint = 436, "TASK_USER_EXCLAPI_REQUIRED", "the exclusive membership has expired"
    fatal = True


class UnknownServerError(ApiError):
    code, name = 500, "UNKNOWN_ERROR"
    retryable = True


class FreeUserError(ApiError):
    code, name, hint = 801, "APIKEY_UNSUPPORTED_FREE_USER", "free accounts cannot use the API"
    fatal = True


class UnauthorizedError(ApiError):
    code, name, hint = 802, "APIKEY_UNAUTHORIZED", "check RH_API_KEY"
    fatal = True


class InvalidNodeInfoError(ApiError):
    code, name = 803, "APIKEY_INVALID_NODE_INFO"
    hint = "a nodeInfoList entry names a node or field the workflow lacks"


class TaskIsRunningError(ApiError):
    code, name = 804, "APIKEY_TASK_IS_RUNNING"


class TaskStatusError(ApiError):
    code, name = 805, "APIKEY_TASK_STATUS_ERROR"


class UserNotFoundError(ApiError):
    code, name, hint = 806, "APIKEY_USER_NOT_FOUND", "check RH_API_KEY"
    fatal = True


class TaskNotFoundError(ApiError):
    code, name, hint = 807, "APIKEY_TASK_NOT_FOUND", "no task with that id"


class UploadFailedError(ApiError):
    code, name = 808, "APIKEY_UPLOAD_FAILED"
    retryable = True


class FileTooLargeError(ApiError):
    code, name, hint = 809, "APIKEY_FILE_SIZE_EXCEEDED", "files are limited to 30 MB"


class WorkflowNotSavedError(ApiError):
    code, name = 810, "WORKFLOW_NOT_SAVED_OR_NOT_RUNNING"
    hint = "save the workflow and run it once on the website"


class CorpKeyInvalidError(ApiError):
    code, name, hint = 811, "CORPAPIKEY_INVALID", "check RH_API_KEY"
    fatal = True


class InsufficientFundsError(ApiError):
    code, name, hint = 812, "CORPAPIKEY_INSUFFICIENT_FUNDS", "top up the enterprise balance"
    fatal = True


class TaskIsQueuedError(ApiError):
    code, name = 813, "APIKEY_TASK_IS_QUEUED"


class PersonalQueueFullError(ApiError):
    code, name, hint = 814, "PERSONAL_QUEUE_COUNT_LIMIT", "at most 1000 tasks may be queued"
    retryable = busy = True


class WebappNotFoundError(ApiError):
    code, name, hint = 901, "WEBAPP_NOT_EXISTS", "check the AI app's webappId"


class V2UnknownError(ApiError):
    code, name = 1000, "UNKNOWN"
    retryable = True


class InvalidUrlError(ApiError):
    code, name = 1001, "INVALID_URL"


class InvalidApiKeyError(ApiError):
    code, name, hint = 1002, "INVALID_API_KEY", "check RH_API_KEY"
    fatal = True


class RateLimitError(ApiError):
    code, name = 1003, "RATE_LIMIT_EXCEEDED"
    retryable = True


class TaskExpiredError(ApiError):
    code, name = 1004, "TASK_NOT_FOUND"


class InternalError(ApiError):
    code, name = 1005, "INTERNAL_ERROR"
    retryable = True


class ExecutionTimeoutError(ApiError):
    code, name = 1006, "TASK_TIMEOUT"


class InvalidParamsError(ApiError):
    code, name = 1007, "INVALID_PARAMS"


class V2FileTooLargeError(ApiError):
    code, name = 1008, "FILE_TOO_LARGE"


class MethodNotSupportedError(ApiError):
    code, name = 1009, "METHOD_NOT_SUPPORTED"


class ServiceUnavailableError(ApiError):
    code, name = 1010, "SERVICE_UNAVAILABLE"
    retryable = True


class SystemBusyError(ApiError):
    code, name = 1011, "SYSTEM_BUSY"
    retryable = True


class UpstreamError(ApiError):
    code, name = 1012, "UPSTREAM_ERROR"
    retryable = True


class FileProcessingError(ApiError):
    code, name = 1013, "FILE_PROCESSING_FAILED"


class SharedKeyRequiredError(ApiError):
    code, name = 1014, "ENTERPRISE_SHARED_KEY_REQUIRED"
    fatal = True


class GenerationFailedError(ApiError):
    code, name = 1015, "GENERATION_FAILED"


class NodeInfoError(ApiError):
    code, name = 1101, "NODE_INFO_ERROR"


class ModerationError(ApiError):
    code, name = 1501, "CONTENT_MODERATION_FAILED"


class ModelTimeoutError(ApiError):
    code, name = 1504, "MODEL_TIMEOUT"
    retryable = True


class RealPeopleProhibitedError(ApiError):
    code, name = 1505, "REAL_PEOPLE_PROHIBITED"


#: code -> exception class, for every code the API documents.
API_ERRORS: dict[int, type[ApiError]] = {
    cls.code: cls
    for cls in (
        GenericError,
        ParamsInvalidError,
        WorkflowNotFoundError,
        TokenInvalidError,
        InstanceBusyError,
        WalletInsufficientError,
        QueueFullError,
        LegacyTaskNotFoundError,
        PromptValidationError,
        InstanceNotFoundError,
        ExclusiveApiRequiredError,
        UnknownServerError,
        FreeUserError,
        UnauthorizedError,
        InvalidNodeInfoError,
        TaskIsRunningError,
        TaskStatusError,
        UserNotFoundError,
        TaskNotFoundError,
        UploadFailedError,
        FileTooLargeError,
        WorkflowNotSavedError,
        CorpKeyInvalidError,
        InsufficientFundsError,
        TaskIsQueuedError,
        PersonalQueueFullError,
        WebappNotFoundError,
        V2UnknownError,
        InvalidUrlError,
        InvalidApiKeyError,
        RateLimitError,
        TaskExpiredError,
        InternalError,
        ExecutionTimeoutError,
        InvalidParamsError,
        V2FileTooLargeError,
        MethodNotSupportedError,
        ServiceUnavailableError,
        SystemBusyError,
        UpstreamError,
        FileProcessingError,
        SharedKeyRequiredError,
        GenerationFailedError,
        NodeInfoError,
        ModerationError,
        ModelTimeoutError,
        RealPeopleProhibitedError,
    )
}

#: code -> identifier (the ``msg`` RunningHub sends), used by the emulator too.
API_CODE_NAMES: dict[int, str] = {code: cls.name for code, cls in API_ERRORS.items()}


def api_error(code: int | str, message: str = "") -> ApiError:
    """The ApiError subclass for ``code`` (an int, or the digit string v2 answers carry)."""
    try:
        number = int(code)
    except (TypeError, ValueError):
        return ApiError(message or str(code), code=-1, name=str(code))
    cls = API_ERRORS.get(number)
    if cls is not None:
        return cls(message)
    if 500 <= number < 600:
        return ServerError(message, code=number, name=f"HTTP_{number}")
    return ApiError(message, code=number, name=message or f"CODE_{number}")


#: Keys shorter than this are masked only where rhflow sends them (headers, body fields), never
#: in free text: a one-letter key would otherwise turn every message into asterisks.
MIN_MASKED_KEY = 8


def redact(text: str, secret: str | tuple[str, ...]) -> str:
    """``text`` with every occurrence of ``secret`` (or of each secret of a tuple: the keys of
    a pool) replaced by ``***``.

    A secret under ``MIN_MASKED_KEY`` characters is not searched for at all: it would match
    ordinary words. A longer one cannot occur by chance, so every occurrence is the key, even
    glued to other text (``apiKey=KEY``, ``"KEY"``, ``xKEYy``), and masking it mangles nothing."""
    for one in (secret,) if isinstance(secret, str) else secret:
        if len(one) >= MIN_MASKED_KEY:
            text = text.replace(one, "***")
    return text


def redact_all(value: Any, secret: str | tuple[str, ...]) -> Any:
    """A copy of decoded JSON ``value`` with ``secret`` masked (see :func:`redact`) in every
    string, keys included; walked without recursion, so any depth json accepts is fine."""
    secrets = (secret,) if isinstance(secret, str) else secret
    if all(len(one) < MIN_MASKED_KEY for one in secrets):
        return value
    if not isinstance(value, (str, dict, list)):
        return value
    if isinstance(value, str):
        return redact(value, secret)
    root: dict[Any, Any] | list[Any] = {} if isinstance(value, dict) else []
    pending: list[tuple[Any, Any]] = [(value, root)]
    while pending:
        source, copy = pending.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, item in items:
            if isinstance(item, (dict, list)):
                new: Any = {} if isinstance(item, dict) else []
                pending.append((item, new))
            else:
                new = redact(item, secret) if isinstance(item, str) else item
            if isinstance(copy, dict):
                copy[redact(key, secret) if isinstance(key, str) else key] = new
            else:
                copy.append(new)
    return root
