"""The RunningHub API over one ``requests.Session``: one method per endpoint, typed results.

    client = Client.from_env()                      # RH_API_KEY, RH_BASE_URL
    created = client.create_task("1904136902449209346", [{"nodeId": "6", ...}])
    result = client.outputs(created.task_id)        # QUEUED / RUNNING / SUCCESS / FAILED
    client.download(result.outputs[0].file_url, Path("out.png"))

The client makes exactly one request per call: it never retries (the executor owns the retry
policy). Every failure is an :class:`rhflow.errors.ApiError` subclass whose flags say whether
trying again may help. Ids (taskId, nodeId, webappId) are strings everywhere: 19-digit ids do
not survive a float. The API key goes in the body (``apiKey``, or ``apikey`` for accountStatus)
and in an ``Authorization: Bearer`` header, and never into a repr, a log line or an error.
The answers are read by :mod:`rhflow.api.results`, whose values are re-exported here.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import mimetypes
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Concatenate, ParamSpec, TypeVar
from urllib.parse import quote, quote_plus, urljoin, urlsplit

import requests
import urllib3

from rhflow.api.origins import origin_of
from rhflow.api.results import (
    FAILED,
    QUEUED,
    RUNNING,
    SUCCESS,
    Account,
    AppInfo,
    DownloadResult,
    FailedReason,
    Output,
    TaskCreated,
    TaskOutputs,
    Upload,
    WebhookDetail,
    _clip,
    _code,
    _error,
    _id,
    _message,
    _text,
)
from rhflow.api.transport import (
    Expired,
    MinRate,
    NotAllowed,
    TooLarge,
    abort,
    announced_length,
    check_file_url,
    chunks,
    deadline,
    new_session,
    read_capped,
    refused_headers,
)
from rhflow.api.transport import size_text as _size
from rhflow.atomic import replacing
from rhflow.errors import (
    ApiError,
    BadResponseError,
    ForeignRedirectError,
    OutputWriteError,
    RateLimitError,
    RefusedAnswerError,
    ServerError,
    StalledError,
    TransportError,
    UnreachableError,
    UsageError,
    redact,
    redact_all,
)
from rhflow.version import __version__

__all__ = [
    "FAILED",
    "QUEUED",
    "RUNNING",
    "SUCCESS",
    "Account",
    "AppInfo",
    "Client",
    "DownloadResult",
    "FailedReason",
    "MinRate",
    "Output",
    "TaskCreated",
    "TaskOutputs",
    "Upload",
    "WebhookDetail",
    "origin_of",
]

log = logging.getLogger(__name__)
#: One INFO line per HTTP request (method, endpoint without its query, answer, time): what
#: ``rhflow -v`` shows. Endpoints never carry the key; causes are scrubbed of it.
request_log = logging.getLogger("rhflow.requests")

DEFAULT_BASE_URL = "https://www.runninghub.cn"
#: Seconds to wait for a connection: a server that does not accept one in this time is down
#: (the first request of a command then fails at once instead of after ``timeout``).
CONNECT_TIMEOUT = 5.0
#: The server identity recorded for ``--emulator``: a new in-process emulator each run, on a
#: new port, so its port says nothing; every such run counts as the same (emulated) server.
BUILTIN_EMULATOR = "emulator://built-in"
#: Header the emulator puts on every answer, so that results can be marked as emulated.
EMULATOR_HEADER = "X-Rhflow-Emulator"
#: Largest API answer read (an outputs list of thousands of files is well under it).
MAX_ANSWER_BYTES = 32 << 20
#: Default cap on one output file (``--max-output-size``): beyond it the download is refused.
MAX_OUTPUT_BYTES = 4 << 30
#: Default time one output file may take to download (``--download-timeout``), in seconds.
DOWNLOAD_TIMEOUT = 1800.0
#: Default least rate of a download once its headers came (``--min-download-rate``): a file
#: that brings less than 1 KiB in 15 s has stalled (a byte dripped now and then, nothing at
#: all) and is abandoned then, not at ``--download-timeout``.
MIN_DOWNLOAD_RATE = MinRate(1024, 15.0)
#: The endpoints a run calls for every task (also over aiohttp: ``rhflow.api.aio``).
CREATE = "/task/openapi/create"
RUN_APP = "/task/openapi/ai-app/run"
RUN_QUICK_APP = "/task/openapi/quick-ai-app/run"
OUTPUTS = "/task/openapi/outputs"
#: Redirects followed: by an API call (same origin, 307/308 only), by a download (http(s)).
MAX_REDIRECTS = 5
NO_KEY_MESSAGE = (
    "no RunningHub API key: set RH_API_KEY or pass --api-key "
    "(or use --emulator to try without a key)"
)


# -- the client ------------------------------------------------------------------------------


P = ParamSpec("P")
R = TypeVar("R")


def _secret_kept(
    method: Callable[Concatenate[Client, P], R],
) -> Callable[Concatenate[Client, P], R]:
    """Errors leaving ``method`` never carry the API key: a server that echoes it, or a library
    message that quotes the request, gets it replaced by ``***`` (see
    :func:`rhflow.errors.redact`: a key too short to be told from words is left). Only
    messages are scrubbed; the answers themselves are parsed as sent."""

    @functools.wraps(method)
    def wrapper(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except ApiError as err:
            clean = self.cleaned(err)
            if clean is err:
                raise
            raise clean from None

    return wrapper


class Client:
    """RunningHub over HTTP. Thread-safe for concurrent calls; close it (or use ``with``)."""

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        *,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        upload_timeout: float = 300.0,
        max_output_bytes: int = MAX_OUTPUT_BYTES,
        download_timeout: float = DOWNLOAD_TIMEOUT,
        min_download_rate: MinRate | None = MIN_DOWNLOAD_RATE,
        headers_timeout: float | None = None,
        also_masked: Iterable[str] = (),
    ) -> None:
        if not api_key or not api_key.strip():
            raise UsageError(NO_KEY_MESSAGE)
        self._api_key = api_key.strip()
        #: Every key masked in server text: this one and ``also_masked`` (the other keys of a
        #: pool, all sent to the same server, which may echo any of them to any client).
        self._secrets = _spellings(self._api_key, *(k.strip() for k in also_masked if k.strip()))
        url = base_url or os.environ.get("RH_BASE_URL") or DEFAULT_BASE_URL
        self.base_url = url.rstrip("/")
        self.timeout = timeout
        self.upload_timeout = upload_timeout
        self.max_output_bytes = max_output_bytes
        self.download_timeout = download_timeout
        #: A download slower than this once its headers came is abandoned (None: no floor).
        self.min_download_rate = min_download_rate
        self._live: set[Any] = set()  # the deadline blocks of requests in flight
        #: Seconds the headers of an output file may take (redirects included): by default
        #: a connection and a read timeout.
        self.headers_timeout = (
            CONNECT_TIMEOUT + timeout if headers_timeout is None else headers_timeout
        )
        self._owns_session = session is None
        self._session = session if session is not None else new_session()
        #: Some request of this client got an HTTP answer: from then on a connection failure
        #: is a transient drop (retried by the executor), not a wrong address.
        self.answered = False
        #: The server said it is an emulator (``X-Rhflow-Emulator``): its outputs are placeholders.
        self.emulated = False

    @property
    def owns_session(self) -> bool:
        """Whether the client made its own session (none was given to it)."""
        return self._owns_session

    @property
    def host(self) -> str:
        """``host[:port]`` of the API, as shown in messages."""
        return urlsplit(self.base_url).netloc or self.base_url

    @property
    def origin(self) -> str:
        """``scheme://host:port`` of the API (the port always written): whose results these are."""
        return origin_of(self.base_url)

    @classmethod
    def from_env(
        cls, *, api_key: str | None = None, base_url: str | None = None, **kw: Any
    ) -> Client:
        """A client with the key from ``api_key`` or RH_API_KEY (UsageError when neither);
        of a comma-separated pool of keys, the first."""
        keys = split_keys(api_key or os.environ.get("RH_API_KEY"))
        if not keys:
            raise UsageError(NO_KEY_MESSAGE)
        kw.setdefault("also_masked", keys[1:])
        return cls(keys[0], base_url, **kw)

    @property
    def fingerprint(self) -> str:
        """The key's short, non-reversible name for records: see ``key_fingerprint``."""
        return key_fingerprint(self._api_key)

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r}, api_key='***')"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def abort(self) -> None:
        """End every request of this client now in flight, in any thread, as if its deadline
        had passed: a run that stopped because the server stopped answering does not wait
        for each of them to time out before the program can end."""
        abort(self._live)

    def close(self) -> None:
        """Close the connection pool (only when the client created the session itself)."""
        if self._owns_session:
            self._session.close()

    # -- tasks ---------------------------------------------------------------------------------

    @_secret_kept
    def create_task(
        self,
        workflow_id: str | int,
        node_info_list: Iterable[Mapping[str, Any]] | None = None,
        *,
        workflow: str | Mapping[str, Any] | None = None,
        add_metadata: bool | None = None,
        webhook_url: str | None = None,
        instance_type: str | None = None,
        use_personal_queue: bool | None = None,
    ) -> TaskCreated:
        """``/task/openapi/create``: run a saved workflow, optionally with overrides."""
        body = create_body(
            workflow_id,
            node_info_list,
            workflow=workflow,
            add_metadata=add_metadata,
            webhook_url=webhook_url,
            instance_type=instance_type,
            use_personal_queue=use_personal_queue,
        )
        return TaskCreated.from_data(self._data(CREATE, body))

    @_secret_kept
    def run_ai_app(
        self,
        webapp_id: str | int,
        node_info_list: Iterable[Mapping[str, Any]],
        *,
        webhook_url: str | None = None,
        instance_type: str | None = None,
    ) -> TaskCreated:
        """``/task/openapi/ai-app/run``: run an AI app (webapp)."""
        body = app_body(
            webapp_id, node_info_list, webhook_url=webhook_url, instance_type=instance_type
        )
        return TaskCreated.from_data(self._data(RUN_APP, body))

    @_secret_kept
    def run_quick_ai_app(
        self,
        webapp_id: str | int,
        quick_create_code: str,
        node_info_list: Iterable[Mapping[str, Any]],
    ) -> TaskCreated:
        """``/task/openapi/quick-ai-app/run``: run a quick-create module of an AI app."""
        body = quick_app_body(webapp_id, quick_create_code, node_info_list)
        return TaskCreated.from_data(self._data(RUN_QUICK_APP, body))

    @_secret_kept
    def get_workflow_json(self, workflow_id: str | int) -> dict[str, Any]:
        """``getJsonApiFormat``: the workflow's API-format graph ``{nodeId: {class_type, ...}}``."""
        data = self._data("/api/openapi/getJsonApiFormat", {"workflowId": _id(workflow_id)})
        prompt = data.get("prompt") if isinstance(data, Mapping) else None
        if isinstance(prompt, str):
            prompt = _loads(prompt, "getJsonApiFormat data.prompt")
        if not isinstance(prompt, Mapping):
            raise BadResponseError(f"getJsonApiFormat answered without a workflow: {_clip(data)}")
        return dict(prompt)

    @_secret_kept
    def app_fields(self, webapp_id: str | int) -> AppInfo:
        """``apiCallDemo``: an AI app's name and editable fields (its nodeInfoList)."""
        payload = self._request(
            "/api/webapp/apiCallDemo",
            query={"apiKey": self._api_key, "webappId": str(_id(webapp_id))},
        )
        _check_envelope(payload, "/api/webapp/apiCallDemo")
        data = _checked_data(payload, "/api/webapp/apiCallDemo")
        if not isinstance(data, Mapping) or not isinstance(data.get("nodeInfoList"), list):
            raise BadResponseError(f"apiCallDemo answered without a nodeInfoList: {_clip(data)}")
        return AppInfo.from_data(data)

    @_secret_kept
    def cancel(self, task_id: str | int) -> None:
        """``/task/openapi/cancel``: stop a queued or running task."""
        self._data("/task/openapi/cancel", {"taskId": _id(task_id)})

    @_secret_kept
    def status(self, task_id: str | int) -> str:
        """``/task/openapi/status``: QUEUED, RUNNING, SUCCESS, FAILED (others kept as given)."""
        data = self._data("/task/openapi/status", {"taskId": _id(task_id)})
        if isinstance(data, Mapping):
            data = data.get("taskStatus") or data.get("status")
        if not isinstance(data, str):
            raise BadResponseError(f"status answered without a state: {_clip(data)}")
        return data

    @_secret_kept
    def outputs(self, task_id: str | int) -> TaskOutputs:
        """``/task/openapi/outputs``: the task's state, its outputs or why it failed."""
        payload = self._envelope(OUTPUTS, {"taskId": _id(task_id)})
        return TaskOutputs.from_response(payload)

    @_secret_kept
    def query(self, task_id: str | int) -> TaskOutputs:
        """``/openapi/v2/query``: the same as :meth:`outputs` through the v2 endpoint."""
        payload = self._request("/openapi/v2/query", json_body={"taskId": _id(task_id)})
        if "status" not in payload and "errorCode" not in payload:
            data = _checked_data(payload, "/openapi/v2/query")
            if not isinstance(data, Mapping):
                raise BadResponseError(
                    f"/openapi/v2/query answered without a status: {_clip(data)}"
                )
            payload = dict(data)
        return TaskOutputs.from_query(payload)

    # -- account, files, webhooks ------------------------------------------------------------

    @_secret_kept
    def account(self) -> Account:
        """``/uc/openapi/accountStatus``: coins, money and the running task count."""
        data = self._data("/uc/openapi/accountStatus", {}, key_field="apikey")
        if not isinstance(data, Mapping):
            raise BadResponseError(f"accountStatus answered without data: {_clip(data)}")
        return Account.from_data(data)

    @_secret_kept
    def upload(
        self,
        file: str | Path | bytes | BinaryIO,
        *,
        filename: str | None = None,
        file_type: str = "input",
    ) -> Upload:
        """``/task/openapi/upload``: send a file; use the answer's ``file_name`` as fieldValue."""
        name, stream = _open_upload(file, filename)
        try:
            mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
            payload = self._request(
                "/task/openapi/upload",
                form={"apiKey": self._api_key, "fileType": file_type},
                files={"file": (name, stream, mime)},
                timeout=self.upload_timeout,
            )
        finally:
            if not isinstance(file, (bytes, bytearray)) and stream is not file:
                stream.close()
        data = _checked_data(payload, "/task/openapi/upload")
        if not isinstance(data, Mapping) or not _text(data.get("fileName")):
            raise BadResponseError(f"upload answered without a fileName: {_clip(data)}")
        return Upload(_text(data["fileName"]), _text(data.get("fileType")) or file_type)

    @_secret_kept
    def webhook_detail(self, task_id: str | int) -> WebhookDetail:
        """``getWebhookDetail``: the webhook delivery record of a task."""
        data = self._data("/task/openapi/getWebhookDetail", {"taskId": _id(task_id)})
        if not isinstance(data, Mapping):
            raise BadResponseError(f"getWebhookDetail answered without data: {_clip(data)}")
        return WebhookDetail.from_data(data)

    @_secret_kept
    def retry_webhook(self, webhook_id: str | int, webhook_url: str | None = None) -> None:
        """``retryWebhook``: send a task's webhook again, optionally to a new URL."""
        body: dict[str, Any] = {"webhookId": _id(webhook_id)}
        _put_optional(body, webhookUrl=webhook_url)
        self._data("/task/openapi/retryWebhook", body)

    @_secret_kept
    def download(self, url: str, dest: Path, *, chunk_size: int = 65536) -> DownloadResult:
        """Stream ``url`` into ``dest`` atomically; any failure leaves no file behind.

        The bytes go to a temporary file in ``dest``'s folder, checked against Content-Length
        when the server sends one, fsynced, then renamed over ``dest``. Only http(s) URLs are
        fetched, without the API key (output files may live on another host), following at
        most ``MAX_REDIRECTS`` redirects. A file over ``max_output_bytes`` or not complete
        within ``download_timeout`` seconds raises RefusedAnswerError (trying again would not
        help); other failures a retryable TransportError (network, truncation) or
        ServerError (HTTP); a file that cannot be written (disk full, file too large,
        read-only) raises OutputWriteError, which is no network fault.
        """
        dest = Path(dest)
        self.check_file_url(url)
        try:
            with replacing(dest) as out:
                digest, size = self._stream_into(url, out, chunk_size)
        except ApiError:
            raise
        except OSError as exc:
            raise _write_error(dest, exc) from exc
        return DownloadResult(dest, digest, size)

    # -- plumbing -----------------------------------------------------------------------------

    def _stream_into(self, url: str, out: BinaryIO, chunk_size: int) -> tuple[str, int]:
        where = self._scrub(_short_url(url))
        digest, size = hashlib.sha256(), 0
        started = time.monotonic()
        with deadline(
            self.download_timeout,
            headers=self.headers_timeout,
            min_rate=self.min_download_rate,
            live=self._live,
        ) as watch:
            try:
                with self._get_following(url) as resp:
                    watch.begun()
                    watch.check()  # the headers were cut short by the watchdog
                    self.file_answered(url, where, started, resp.status_code)
                    expected = announced_length(resp)
                    for chunk in chunks(resp, self.max_output_bytes, watch, chunk_size):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
            except (Expired, requests.RequestException) as exc:
                if watch.expired:
                    slow = self.too_slow(where, watch.reason, watch.window_bytes, size)
                    raise (
                        StalledError(slow)
                        if watch.reason == "stalled"
                        else RefusedAnswerError(slow)
                    ) from None
                if refused := refused_headers(exc):
                    raise self.file_headers_refused(where, refused) from None
                raise self.file_failed(where, str(exc)) from exc
            except TooLarge as exc:
                raise self.file_too_large(where, exc) from None
        self.check_length(where, size, expected)
        return digest.hexdigest(), size

    # What a download's answer, or its absence, comes to: shared with ``rhflow.api.aio``.

    @staticmethod
    def check_file_url(url: str) -> None:
        """RefusedAnswerError unless ``url`` is an http(s) URL with a host."""
        try:
            check_file_url(url)
        except NotAllowed as exc:
            raise RefusedAnswerError(
                f"the output file {exc}; rhflow downloads outputs only over http(s)"
            ) from None

    def file_answered(self, url: str, where: str, started: float, status: int) -> None:
        """Log the answer to a download; ServerError unless it is 200."""
        _log_request("GET", self._scrub(_without_query(url)), started, f"HTTP {status}")
        if status != 200:
            raise ServerError(
                f"downloading {where} answered HTTP {status}", code=status, name=f"HTTP_{status}"
            )

    @staticmethod
    def file_headers_refused(where: str, refused: str) -> RefusedAnswerError:
        return RefusedAnswerError(
            f"downloading {where}: the server's headers were refused ({refused})"
        )

    def file_failed(self, where: str, cause: str) -> TransportError:
        return TransportError(f"downloading {where} failed: {self._scrub(cause)}")

    @staticmethod
    def file_too_large(where: str, exc: TooLarge) -> RefusedAnswerError:
        announced = f" (it announced {exc.announced} bytes)" if exc.announced else ""
        return RefusedAnswerError(
            f"{where} is larger than the {_size(exc.limit)} allowed per output"
            f"{announced}; raise --max-output-size if such files are expected"
        )

    @staticmethod
    def check_length(where: str, size: int, expected: int | None) -> None:
        if expected is not None and size != expected:
            raise TransportError(f"download of {where} was cut short: {size} of {expected} bytes")

    def file_redirect(self, url: str, location: str) -> str:
        """Where a redirected download goes next: any http(s) URL."""
        target = urljoin(url, location)
        try:
            check_file_url(target)
        except NotAllowed as exc:
            raise RefusedAnswerError(
                f"the output file was redirected: {exc}; rhflow downloads outputs only over http(s)"
            ) from None
        return target

    def file_redirected_too_often(self, url: str) -> RefusedAnswerError:
        return RefusedAnswerError(
            f"downloading an output was redirected more than {MAX_REDIRECTS} times "
            f"(last to {self._scrub(_short_url(url))})"
        )

    def too_slow(self, where: str, reason: str | None, window_bytes: int, size: int) -> str:
        """Why a download was abandoned by its watch: no headers in time, a stalled body, or
        the whole deadline."""
        if reason == "headers":
            return (
                f"downloading {where}: the server sent no complete headers within "
                f"{self.headers_timeout:g} s"
            )
        rate = self.min_download_rate
        if reason == "stalled" and rate is not None:
            speed = window_bytes / rate.seconds
            return (
                f"downloading {where} stalled: {window_bytes} bytes in the last "
                f"{rate.seconds:g} s ({speed:.0f} bytes/s, {size} bytes in all), less than the "
                f"{rate} required; lower --min-download-rate if the file host is that slow"
            )
        return (
            f"downloading {where} took longer than {self.download_timeout:g} s "
            f"({size} bytes received); raise --download-timeout if the file is "
            "that slow to come"
        )

    def _get_following(self, url: str) -> requests.Response:
        """GET ``url`` (streamed, without the key), following http(s) redirects by hand."""
        for _ in range(MAX_REDIRECTS + 1):
            resp = self._session.get(
                url,
                stream=True,
                allow_redirects=False,
                timeout=(CONNECT_TIMEOUT, self.timeout),
                headers=self._plain_headers(),
            )
            if not resp.is_redirect:
                return resp
            resp.close()
            url = self.file_redirect(url, resp.headers["location"])
        raise self.file_redirected_too_often(url)

    def _data(self, path: str, body: dict[str, Any], *, key_field: str = "apiKey") -> Any:
        """POST a v1 JSON body and return ``data``; a non-zero code raises its ApiError."""
        return _checked_data(self._envelope(path, body, key_field=key_field), path)

    def _envelope(
        self, path: str, body: dict[str, Any], *, key_field: str = "apiKey"
    ) -> dict[str, Any]:
        payload = self._request(path, json_body={key_field: self._api_key, **body})
        _check_envelope(payload, path)
        return payload

    def _request(
        self,
        path: str,
        *,
        json_body: dict[str, Any] | None = None,
        form: dict[str, str] | None = None,
        files: dict[str, Any] | None = None,
        timeout: float | None = None,
        query: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One POST (a GET with ``query``), complete within ``timeout`` seconds (default
        ``self.timeout``); transport and HTTP failures become ApiErrors; returns the JSON
        object, the key masked in it."""
        started = time.monotonic()
        method = "GET" if query is not None else "POST"
        limit = timeout or self.timeout
        answering = False  # the headers came: a body that does not is a server dripping it
        # A long limit (an upload's) is for sending: the answer must still come in ``timeout``.
        answer = self.timeout if limit > self.timeout else None
        with deadline(limit, answer=answer, live=self._live) as watch:
            try:
                resp = self._send_following(method, path, query, json_body, form, files, limit)
                watch.begun()
                answering = True
                with resp:
                    body = read_capped(resp, MAX_ANSWER_BYTES, watch)
            except requests.exceptions.InvalidJSONError as exc:
                raise self.not_json(path, exc) from exc
            except (Expired, requests.RequestException) as exc:
                if watch.expired:
                    raise self.timed_out(
                        method, path, started, limit, answering=answering, reason=watch.reason
                    ) from None
                assert isinstance(exc, requests.RequestException)
                if refused := refused_headers(exc):
                    raise self.headers_refused(method, path, started, refused) from None
                error = self._transport_error(path, exc)
                _log_request(method, path, started, f"no answer ({error.message})")
                raise error from exc
            except TooLarge:
                raise self.too_large(method, path, started) from None
        return self.answer(method, path, started, resp.status_code, resp.headers, body)

    # What an answer, or its absence, comes to: shared with the calls over aiohttp.

    def not_json(self, path: str, exc: Exception) -> UsageError:
        return UsageError(
            f"POST {path}: the request cannot be sent as JSON: {self._scrub(str(exc))}"
        )

    def timed_out(
        self,
        method: str,
        path: str,
        started: float,
        limit: float,
        *,
        answering: bool,
        reason: str | None,
    ) -> ApiError:
        """A request whose deadline passed: before its headers (the server may have the
        request), or while its body came (a server dripping it)."""
        _log_request(method, path, started, "timed out")
        if reason == "headers":
            return TransportError(
                f"POST {path} timed out: no answer within {self.timeout:g} s of "
                "the request being sent"
            )
        kind = RefusedAnswerError if answering else TransportError
        return kind(
            f"POST {path} timed out: no complete answer within {limit:g} s"
            + (" (the answer began but its body did not end)" if answering else "")
        )

    def headers_refused(self, method: str, path: str, started: float, refused: str) -> ApiError:
        _log_request(method, path, started, "headers refused")
        return RefusedAnswerError(f"POST {path}: the server's headers were refused ({refused})")

    def too_large(self, method: str, path: str, started: float) -> ApiError:
        _log_request(method, path, started, "answer too large")
        return RefusedAnswerError(
            f"POST {path} answered more than {_size(MAX_ANSWER_BYTES)}; "
            "no RunningHub answer is that large"
        )

    def answer(
        self,
        method: str,
        path: str,
        started: float,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
    ) -> dict[str, Any]:
        """The JSON object of an answer (the key masked in it), or its ApiError."""
        self.answered = True
        if headers.get(EMULATOR_HEADER):
            self.emulated = True
        try:
            payload = self._decode(path, status, body)
        except ApiError as err:
            _log_request(method, path, started, f"HTTP {status}, {err.name}")
            raise
        code = payload.get("code", payload.get("errorCode", "-"))
        _log_request(method, path, started, f"HTTP {status}, code {code}")
        return payload

    def _send_following(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None,
        json_body: dict[str, Any] | None,
        form: dict[str, str] | None,
        files: dict[str, Any] | None,
        limit: float,
    ) -> requests.Response:
        """Send, following only 307/308 redirects within the API's origin: the request
        carries the key, which must reach no other host."""
        url = self.base_url + path
        for _ in range(MAX_REDIRECTS + 1):
            resp = self._session.request(
                method,
                url,
                params=query,
                json=json_body,
                data=form,
                files=files,
                headers=self._auth_headers(),
                timeout=(min(CONNECT_TIMEOUT, limit), limit),
                stream=True,
                allow_redirects=False,
            )
            if not resp.is_redirect:
                return resp
            resp.close()
            target = self.redirect_target(
                path, resp.status_code, url, resp.headers, files=files is not None
            )
            url, query = target, None
        raise self.redirected_too_often(path)

    def redirect_target(
        self, path: str, status: int, url: str, headers: Mapping[str, str], *, files: bool = False
    ) -> str:
        """Where a redirected API request goes next (the target carries its own query):
        only a 307/308 within the API's origin, and never an upload, is followed."""
        target = urljoin(url, headers["location"])
        if origin_of(target) != self.origin or status not in (307, 308) or files:
            raise ForeignRedirectError(_redirect_message(path, status, target, self))
        return target

    @staticmethod
    def redirected_too_often(path: str) -> ForeignRedirectError:
        return ForeignRedirectError(f"POST {path} was redirected more than {MAX_REDIRECTS} times")

    def _transport_error(self, path: str, exc: requests.RequestException) -> ApiError:
        if isinstance(exc, requests.ConnectionError) and not isinstance(
            exc, requests.exceptions.ChunkedEncodingError
        ):  # refused, DNS, TLS, connect timeout
            return self.dropped(path, _cause(exc), connected=not _never_connected(exc))
        if isinstance(exc, requests.Timeout):
            return TransportError(f"POST {path} timed out: {self._scrub(str(exc))}")
        return TransportError(f"POST {path} failed: {self._scrub(str(exc))}")

    def dropped(self, path: str, cause: str, *, connected: bool) -> TransportError:
        """No answer came: the server is unreachable (no connection was ever made and nothing
        answered before: a wrong address), or the request may have reached it (``sent``)."""
        if not self.answered and not connected:
            return UnreachableError(self.host, self._scrub(cause))
        failed = TransportError(f"POST {path} failed: {self._scrub(cause)}")
        failed.sent = connected  # a dropped answer, not a refusal
        return failed

    def _decode(self, path: str, status: int, body: bytes) -> dict[str, Any]:
        text = body.decode("utf-8", errors="replace")  # messages are scrubbed on the way out
        if status >= 500:
            raise ServerError(
                f"POST {path} answered HTTP {status}: {_clip(text)}",
                code=status,
                name=f"HTTP_{status}",
            )
        try:
            payload = json.loads(text)
        except (ValueError, RecursionError):
            payload = None
        if isinstance(payload, dict) and (status == 200 or {"code", "errorCode"} & set(payload)):
            if "\\" in text or any(secret in text for secret in self._secrets):
                payload = redact_all(payload, self._secrets)
            return payload
        if status == 404:  # a JSON "Not Found" page is no envelope: the path does not exist
            raise ApiError(
                f"POST {path} answered HTTP 404: no such endpoint; check --base-url",
                code=404,
                name="HTTP_404",
            )
        if status == 429:
            raise RateLimitError(f"POST {path} answered HTTP 429", code=429, name="HTTP_429")
        if status != 200:
            raise ApiError(
                f"POST {path} answered HTTP {status}: {_clip(text)}",
                code=status,
                name=f"HTTP_{status}",
            )
        raise BadResponseError(
            f"POST {path} answered with something other than a JSON object: {_clip(text)}"
        )

    def mask(self, value: Any) -> Any:
        """``value`` (text or decoded JSON) with the API key replaced by ``***`` wherever it
        occurs: for server text that reaches rhflow by another way than this client (the
        WebSocket). Every answer the client returns is masked already."""
        return redact_all(value, self._secrets)

    def _scrub(self, text: str) -> str:
        return redact(text, self._secrets)

    def cleaned(self, err: ApiError) -> ApiError:
        """``err``, or the same error with the API key masked in its words."""
        if isinstance(err, UnreachableError):
            cause = self._scrub(err.cause)
            return err if cause == err.cause else UnreachableError(err.host, cause)
        message, name = self._scrub(err.message), self._scrub(err.name)
        if message == err.message and name == err.name:
            return err
        clean = type(err)(message, code=err.code, name=name)
        if isinstance(err, TransportError) and isinstance(clean, TransportError):
            clean.sent = err.sent
        return clean

    def _auth_headers(self) -> dict[str, str]:
        return {**self._plain_headers(), "Authorization": f"Bearer {self._api_key}"}

    @staticmethod
    def _plain_headers() -> dict[str, str]:
        return {"User-Agent": f"rhflow/{__version__}"}


# -- helpers -----------------------------------------------------------------------------------


def _spellings(*keys: str) -> tuple[str, ...]:
    """Each key as sent and as it travels in a URL (``apiCallDemo`` takes it in the query,
    where ``+``, ``/`` and ``=`` are percent-encoded): a server that echoes its query shows
    the key in that spelling, which must be masked as well."""
    found: dict[str, None] = {}
    for key in keys:
        found[key] = None
        for safe in ("", "/"):
            found[quote(key, safe=safe)] = None
            found[quote_plus(key, safe=safe)] = None
    return tuple(found)


def _log_request(method: str, endpoint: str, started: float, answer: str) -> None:
    request_log.info("%s %s -> %s in %.3f s", method, endpoint, answer, time.monotonic() - started)


def _without_query(url: str) -> str:
    """``url`` without its query and fragment (signed download links carry tokens there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.netloc else parts.path


def split_keys(value: str | Iterable[str] | None) -> list[str]:
    """The keys of a pool: ``RH_API_KEY`` may hold several separated by commas, and
    ``--api-key`` may be repeated; blanks dropped, each key once, in order."""
    if value is None:
        return []
    parts = value.split(",") if isinstance(value, str) else [p for v in value for p in v.split(",")]
    return list(dict.fromkeys(p.strip() for p in parts if p.strip()))


def key_fingerprint(api_key: str) -> str:
    """``key-`` and 12 hex characters of a salted sha256 of the key: names the key that ran a
    task in manifests and state without revealing it (no prefix of the key is kept)."""
    digest = hashlib.sha256(f"rhflow key fingerprint\0{api_key.strip()}".encode()).hexdigest()
    return f"key-{digest[:12]}"


def _write_error(dest: Path, exc: OSError) -> OutputWriteError:
    """A local write that failed: the folder and the OS's words for why."""
    return OutputWriteError(str(dest.parent), exc.strerror or str(exc), errno=exc.errno)


def _never_connected(exc: requests.RequestException) -> bool:
    """No connection was made (refused, name not resolved, TLS failed, connect timeout), so
    the request cannot have reached the server; a connection dropped later may have."""
    if isinstance(exc, (requests.exceptions.SSLError, requests.exceptions.ConnectTimeout)):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


def _cause(exc: requests.RequestException) -> str:
    """A short cause of a connection failure ("Connection refused", "name not resolved: ...")
    from urllib3's long chain of wrapped messages."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        found = re.search(
            r"(certificate verify failed[^'\")]*|wrong version number|[A-Z_]{6,})", text
        )
        return "TLS handshake failed" + (f" ({found.group(1).strip()})" if found else "")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "no connection within the connect timeout"
    if re.search(
        r"Name or service not known|nodename nor servname|name resolution|getaddrinfo", text
    ):
        return "the host name could not be resolved"
    found = _ERRNO.search(text)
    return found.group(1).strip() if found else _clip(text)


def _check_envelope(payload: Mapping[str, Any], path: str) -> None:
    if "code" not in payload or _code(payload) is None:
        raise BadResponseError(f"POST {path} answered without a code: {_clip(payload)}")


def _checked_data(payload: Mapping[str, Any], path: str) -> Any:
    _check_envelope(payload, path)
    code = _code(payload)
    if code != 0:
        raise _error(code, _message(payload), payload.get("data"))
    return payload.get("data")


def _loads(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise BadResponseError(f"{what} is not valid JSON: {exc}") from exc


def _node_info(entries: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """nodeInfoList entries as sent: ``nodeId`` always a string."""
    result = []
    for entry in entries:
        item = dict(entry)
        if "nodeId" in item:
            item["nodeId"] = _id(item["nodeId"])
        result.append(item)
    return result


def _dumps(value: Mapping[str, Any]) -> str:
    """JSON text of a workflow given as nested mappings (dicts or read-only views)."""

    def plain(obj: object) -> object:
        if isinstance(obj, Mapping):
            return dict(obj)
        raise TypeError(f"{type(obj).__name__} is not JSON serialisable")

    return json.dumps(value, default=plain)


def _put_optional(body: dict[str, Any], **fields: Any) -> None:
    body.update({name: value for name, value in fields.items() if value is not None})


def create_body(
    workflow_id: str | int,
    node_info_list: Iterable[Mapping[str, Any]] | None = None,
    *,
    workflow: str | Mapping[str, Any] | None = None,
    add_metadata: bool | None = None,
    webhook_url: str | None = None,
    instance_type: str | None = None,
    use_personal_queue: bool | None = None,
) -> dict[str, Any]:
    """The body of ``/task/openapi/create`` (without the key)."""
    body: dict[str, Any] = {"workflowId": _id(workflow_id)}
    if node_info_list is not None:
        body["nodeInfoList"] = _node_info(node_info_list)
    if workflow is not None:
        body["workflow"] = workflow if isinstance(workflow, str) else _dumps(workflow)
    _put_optional(body, addMetadata=add_metadata, webhookUrl=webhook_url)
    _put_optional(body, instanceType=instance_type, usePersonalQueue=use_personal_queue)
    return body


def app_body(
    webapp_id: str | int,
    node_info_list: Iterable[Mapping[str, Any]],
    *,
    webhook_url: str | None = None,
    instance_type: str | None = None,
) -> dict[str, Any]:
    """The body of ``/task/openapi/ai-app/run`` (without the key)."""
    body: dict[str, Any] = {"webappId": _id(webapp_id), "nodeInfoList": _node_info(node_info_list)}
    _put_optional(body, webhookUrl=webhook_url, instanceType=instance_type)
    return body


def quick_app_body(
    webapp_id: str | int, quick_create_code: str, node_info_list: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """The body of ``/task/openapi/quick-ai-app/run`` (without the key)."""
    return {
        "webappId": _id(webapp_id),
        "quickCreateCode": str(quick_create_code),
        "nodeInfoList": _node_info(node_info_list),
    }


def _open_upload(file: str | Path | bytes | BinaryIO, filename: str | None) -> tuple[str, Any]:
    """(name to send, file object or bytes) for :meth:`Client.upload`."""
    if isinstance(file, (bytes, bytearray)):
        return filename or f"upload.{_sniff_ext(bytes(file))}", bytes(file)
    if isinstance(file, (str, Path)):
        path = Path(file)
        try:
            stream = path.open("rb")
        except OSError as exc:
            raise UsageError(f"cannot upload {path}: {exc.strerror}; check the path") from exc
        return filename or path.name, stream
    own_name = getattr(file, "name", None)
    default = Path(own_name).name if isinstance(own_name, str) else "upload.bin"
    return filename or default, file


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpg"),
    (b"GIF8", "gif"),
    (b"PK\x03\x04", "zip"),
    (b"ID3", "mp3"),
    (b"fLaC", "flac"),
)


def _sniff_ext(data: bytes) -> str:
    for magic, ext in _MAGIC:
        if data.startswith(magic):
            return ext
    if data[:4] == b"RIFF" and data[8:12] in (b"WEBP", b"WAVE"):
        return "webp" if data[8:12] == b"WEBP" else "wav"
    if data[4:8] == b"ftyp":
        return "mp4"
    return "bin"


def _short_url(url: str) -> str:
    """A URL as shown in messages: without its query (signed links are long), clipped."""
    return _clip(_without_query(url) if urlsplit(url).netloc else url, 120)


def _redirect_message(path: str, status: int, target: str, client: Client) -> str:
    where = origin_of(target)
    if where == client.origin:
        return (
            f"POST {path} was redirected (HTTP {status}) within the API; rhflow follows only "
            "307/308 redirects of JSON requests there"
        )
    return (
        f"POST {path} was redirected (HTTP {status}) to {client._scrub(where)}, another origin "
        f"than the API's {client.origin}; not followed, since the request carries the API key. "
        "If the API has moved, set --base-url to its new address"
    )
