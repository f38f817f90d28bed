"""The calls a run makes for every task (create, outputs, downloads) as coroutines on its
event loop.

A run already holds an aiohttp session for the tasks' WebSockets; sending its creates, its
``outputs`` polls and its downloads through it costs a fraction of the CPU of a ``requests``
call in a pool thread (no thread hop, no per-request session machinery), which is what bounds
a large sweep on one core. Everything else (uploads, account, cancel) stays on the blocking
:class:`rhflow.api.client.Client`, whose rules these calls keep, word for word:

- one deadline for the whole request (``client.timeout``), a connect timeout, an answer capped
  at ``MAX_ANSWER_BYTES``;
- redirects followed by hand, only 307/308 within the API's origin (the body carries the key);
- the key masked in every answer and error; ``-v`` logs one line per request;
- a request that may have reached the server and got no answer is a ``TransportError`` with
  ``sent`` set, so that a create is flagged "may have been created twice";
- a download within its deadline, headers deadline and least rate, under the size cap, over
  http(s) only, without the key, written atomically (nothing left behind on failure).

    calls = AsyncCalls(client, session)
    created = await calls.create_task("1904136902449209346", entries)
    outputs = await calls.outputs(created.task_id)

A subclass of Client that overrides one of these calls keeps its own (run in a thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import hashlib
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

from rhflow.api.client import (
    CONNECT_TIMEOUT,
    CREATE,
    MAX_ANSWER_BYTES,
    MAX_REDIRECTS,
    OUTPUTS,
    RUN_APP,
    RUN_QUICK_APP,
    Client,
    TaskCreated,
    TaskOutputs,
    _check_envelope,
    _checked_data,
    _id,
    _log_request,
    _short_url,
    _write_error,
    app_body,
    create_body,
    quick_app_body,
)
from rhflow.api.results import DownloadResult
from rhflow.api.transport import CHUNK, MinRate, TooLarge
from rhflow.atomic import replacing
from rhflow.errors import ApiError, RefusedAnswerError, StalledError

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AsyncCalls", "new_session"]

T = TypeVar("T")

#: Longest header line and most header lines read (http.client's limits, which the blocking
#: client keeps).
MAX_LINE = 65536
MAX_HEADERS = 100
REDIRECTS = (301, 302, 303, 307, 308)


def new_session(*, connections: int = 0) -> aiohttp.ClientSession:
    """The run's session, for its WebSockets and the calls here: ``connections`` at most
    (0: no limit, as each followed task holds one for its socket). Call it on the loop that
    will use it."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=connections)
    return aiohttp.ClientSession(
        connector=connector,
        max_line_size=MAX_LINE,
        max_field_size=MAX_LINE,
        max_headers=MAX_HEADERS,  # aiohttp 3.13.4 and later
    )


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``NO_PROXY``...), as
    ``requests`` would use it for the same request; read once per client, not per request
    (aiohttp's ``trust_env`` reads the environment and ``~/.netrc`` on every request)."""
    parts = urlsplit(url)
    if parts.hostname and proxy_bypass(parts.hostname):
        return None
    return getproxies().get(parts.scheme.lower())


class AsyncCalls:
    """``create_task``, ``run_ai_app``, ``run_quick_ai_app``, ``outputs`` and ``download`` of
    ``client``, sent over ``session``; same arguments, results and errors as the client's own.
    A downloaded file is written in ``executor`` (None: the loop's default)."""

    def __init__(
        self, client: Client, session: aiohttp.ClientSession, executor: Executor | None = None
    ) -> None:
        self.client = client
        self._session = session
        self._executor = executor
        self._proxy = env_proxy(client.base_url)
        self._proxies: dict[tuple[str, str], str | None] = {}  # file hosts' proxies

    # -- the calls ---------------------------------------------------------------------------

    async def create_task(
        self,
        workflow_id: str | int,
        node_info_list: Iterable[Mapping[str, Any]] | None = None,
        **options: Any,
    ) -> TaskCreated:
        if _overridden(self.client, "create_task"):
            return await _in_thread(self.client.create_task, workflow_id, node_info_list, **options)
        body = create_body(workflow_id, node_info_list, **options)
        return TaskCreated.from_data(await self._data(CREATE, body))

    async def run_ai_app(
        self, webapp_id: str | int, node_info_list: Iterable[Mapping[str, Any]], **options: Any
    ) -> TaskCreated:
        if _overridden(self.client, "run_ai_app"):
            return await _in_thread(self.client.run_ai_app, webapp_id, node_info_list, **options)
        body = app_body(webapp_id, node_info_list, **options)
        return TaskCreated.from_data(await self._data(RUN_APP, body))

    async def run_quick_ai_app(
        self,
        webapp_id: str | int,
        quick_create_code: str,
        node_info_list: Iterable[Mapping[str, Any]],
    ) -> TaskCreated:
        if _overridden(self.client, "run_quick_ai_app"):
            return await _in_thread(
                self.client.run_quick_ai_app, webapp_id, quick_create_code, node_info_list
            )
        body = quick_app_body(webapp_id, quick_create_code, node_info_list)
        return TaskCreated.from_data(await self._data(RUN_QUICK_APP, body))

    async def outputs(self, task_id: str | int) -> TaskOutputs:
        if _overridden(self.client, "outputs"):
            return await _in_thread(self.client.outputs, task_id)
        payload = await self._request(OUTPUTS, {"taskId": _id(task_id)})
        _check_envelope(payload, OUTPUTS)
        return TaskOutputs.from_response(payload)

    async def download(
        self,
        url: str,
        dest: Path,
        *,
        chunk_size: int = CHUNK,
        then: Callable[[DownloadResult], T] | None = None,
    ) -> Any:
        """:meth:`Client.download`: ``url`` into ``dest`` atomically, within the client's
        deadline, headers deadline, least rate and size cap. The body is read on the loop;
        the file is written, fsynced and renamed in a thread, in one go for a file up to
        ``SPILL`` bytes (most outputs), in pieces of that size for a larger one. With
        ``then``, what it returns for the result, called in that same thread (checking the
        file, moving it into place), instead of the result."""
        if _overridden(self.client, "download"):
            result = await _in_thread(self.client.download, url, dest, chunk_size=chunk_size)
            return result if then is None else await _in_thread(then, result)
        dest = Path(dest)
        self.client.check_file_url(url)
        body = _Body(dest, self._executor)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)  # as replacing() does, up front
        except OSError as exc:
            raise _write_error(dest, exc) from exc
        try:
            digest, size = await self._stream_into(url, body)
            result = DownloadResult(dest, digest, size)
            done = await body.finish(then, result)
        except _WriteFailed as failed:
            body.discard()
            raise _write_error(dest, failed.error) from failed.error
        except BaseException:
            body.discard()
            raise
        if isinstance(done, _Raised):
            raise done.error
        return result if then is None else done

    # -- plumbing ----------------------------------------------------------------------------

    async def _stream_into(self, url: str, body: _Body) -> tuple[str, int]:
        import aiohttp

        client = self.client
        where = client._scrub(_short_url(url))
        digest, size = hashlib.sha256(), 0
        started = time.monotonic()
        watch = _LoopWatch(
            client.download_timeout, client.headers_timeout, client.min_download_rate
        )
        try:
            with watch:
                resp = await self._get_following(url)
                watch.begun()
                async with resp:
                    client.file_answered(url, where, started, resp.status)
                    expected = _announced(resp)
                    if expected is not None and expected > client.max_output_bytes:
                        raise TooLarge(client.max_output_bytes, expected)
                    async for chunk in resp.content.iter_any():
                        size += len(chunk)
                        watch.received = size
                        if size > client.max_output_bytes:
                            raise TooLarge(client.max_output_bytes)
                        digest.update(chunk)
                        await body.write(chunk)
        except asyncio.CancelledError:
            if watch.reason is None:
                raise
            slow = client.too_slow(where, watch.reason, watch.window_bytes, size)
            kind = StalledError if watch.reason == "stalled" else RefusedAnswerError
            raise kind(slow) from None
        except TooLarge as exc:
            raise client.file_too_large(where, exc) from None
        except aiohttp.ClientResponseError as exc:
            if _headers_too_large(exc):
                raise client.file_headers_refused(where, _refused(exc)) from None
            raise client.file_failed(where, _short(exc)) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise client.file_failed(where, _cause(exc)) from exc
        client.check_length(where, size, expected)
        return digest.hexdigest(), size

    async def _get_following(self, url: str) -> aiohttp.ClientResponse:
        """GET ``url`` (without the key), following http(s) redirects by hand."""
        import aiohttp

        client = self.client
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
        for _ in range(MAX_REDIRECTS + 1):
            resp = await self._session.get(
                url,
                headers=client._plain_headers(),
                allow_redirects=False,
                timeout=timeout,
                proxy=self._proxy_for(url),
            )
            if resp.status not in REDIRECTS or "location" not in resp.headers:
                return resp
            resp.release()
            url = client.file_redirect(url, resp.headers["location"])
        raise client.file_redirected_too_often(url)

    def _proxy_for(self, url: str) -> str | None:
        parts = urlsplit(url)
        place = (parts.scheme, parts.netloc)
        if place not in self._proxies:
            self._proxies[place] = env_proxy(url)
        return self._proxies[place]

    async def _data(self, path: str, body: dict[str, Any]) -> Any:
        return _checked_data(await self._request(path, body), path)

    async def _request(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One POST of ``body`` (the key added) within the client's deadline; an ApiError,
        the key masked in its words, otherwise."""
        try:
            return await self._post(path, body)
        except ApiError as err:
            clean = self.client.cleaned(err)
            if clean is err:
                raise
            raise clean from None

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import aiohttp

        client = self.client
        started = time.monotonic()
        limit = client.timeout
        try:
            data = json.dumps({"apiKey": client._api_key, **body}, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise client.not_json(path, exc) from exc
        progress = {"answering": False}
        try:
            status, headers, answer = await asyncio.wait_for(
                self._exchange(path, data, progress, limit), limit
            )
        except aiohttp.ServerTimeoutError as exc:  # no connection in time: nothing was sent
            connected = not isinstance(exc, _not_connected())
            raise self._dropped("POST", path, started, _cause(exc), connected=connected) from exc
        except asyncio.TimeoutError:  # the whole request's deadline (aiohttp's are caught above)
            raise client.timed_out(
                "POST", path, started, limit, answering=progress["answering"], reason=None
            ) from None
        except TooLarge:
            raise client.too_large("POST", path, started) from None
        except aiohttp.ClientResponseError as exc:  # the answer's head could not be parsed
            if _headers_too_large(exc):
                raise client.headers_refused("POST", path, started, _refused(exc)) from None
            raise self._dropped("POST", path, started, _short(exc), connected=True) from exc
        except (aiohttp.ClientError, OSError) as exc:
            connected = not isinstance(exc, _not_connected())
            raise self._dropped("POST", path, started, _cause(exc), connected=connected) from exc
        return client.answer("POST", path, started, status, headers, answer)

    async def _exchange(
        self, path: str, data: bytes, progress: dict[str, bool], limit: float
    ) -> tuple[int, Mapping[str, str], bytes]:
        """The POST, redirects followed; ``progress["answering"]`` once the answer's head
        came. A connection must be made within the connect timeout (or ``limit``, if
        shorter), as the blocking client asks."""
        import aiohttp

        client = self.client
        url = client.base_url + path
        headers = {**client._auth_headers(), "Content-Type": "application/json"}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(CONNECT_TIMEOUT, limit))
        for _ in range(MAX_REDIRECTS + 1):
            async with self._session.post(
                url,
                data=data,
                headers=headers,
                allow_redirects=False,
                timeout=timeout,
                proxy=self._proxy,
            ) as resp:
                if resp.status in REDIRECTS and "location" in resp.headers:
                    url = client.redirect_target(path, resp.status, url, resp.headers)
                    continue
                progress["answering"] = True
                return resp.status, resp.headers, await _read_capped(resp, MAX_ANSWER_BYTES)
        raise client.redirected_too_often(path)

    def _dropped(
        self, method: str, path: str, started: float, cause: str, *, connected: bool
    ) -> ApiError:
        error = self.client.dropped(path, cause, connected=connected)
        _log_request(method, path, started, f"no answer ({error.message})")
        return error


async def _read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body as it arrives, refused past ``limit`` bytes (announced or sent)."""
    announced = resp.content_length
    if announced is not None and announced > limit and not resp.headers.get("Content-Encoding"):
        raise TooLarge(limit, announced)
    parts, got = [], 0
    while piece := await resp.content.read(CHUNK):
        got += len(piece)
        if got > limit:
            raise TooLarge(limit)
        parts.append(piece)
    return b"".join(parts)


def _overridden(client: Client, name: str) -> bool:
    """Whether ``client``'s class changes the call ``name`` (it then runs as it is)."""
    return getattr(type(client), name, None) is not getattr(Client, name)


async def _in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    call: Awaitable[T] = loop.run_in_executor(None, functools.partial(fn, *args, **kwargs))
    return await call


def _not_connected() -> tuple[type[BaseException], ...]:
    import aiohttp

    kinds: list[type[BaseException]] = [aiohttp.ClientConnectorError]
    for name in ("ConnectionTimeoutError", "ClientConnectorDNSError"):
        kind = getattr(aiohttp, name, None)
        if isinstance(kind, type):
            kinds.append(kind)
    return tuple(kinds)


def _cause(exc: BaseException) -> str:
    """A short cause, in the words the blocking client uses for the same failure."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientSSLError):
        return "TLS handshake failed"
    if (
        isinstance(exc, aiohttp.ServerTimeoutError)
        or type(exc).__name__ == "ConnectionTimeoutError"
    ):
        return "no connection within the connect timeout"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without an answer"
    inner = getattr(exc, "os_error", None) or exc
    if isinstance(inner, socket.gaierror):
        return "the host name could not be resolved"
    number = getattr(inner, "errno", None)
    if isinstance(number, int) and number in errno.errorcode:
        return os.strerror(number)
    return _short(exc)


def _short(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = str(text)
    return text if len(text) <= 200 else text[:197] + "..."


def _refused(exc: BaseException) -> str:
    """What was refused in an answer's headers, in http.client's words (as the blocking
    client says it)."""
    text = f"{getattr(exc, 'message', '')} {exc}".lower()
    if "too many" in text:
        return f"got more than {MAX_HEADERS} headers"
    return "got more than 65536 bytes when reading header line"


def _headers_too_large(exc: BaseException) -> bool:
    text = f"{getattr(exc, 'message', '')} {exc}".lower()
    return "got more than" in text or "too long" in text or "too many" in text


def _announced(resp: aiohttp.ClientResponse) -> int | None:
    """The Content-Length of a plain (not content-encoded) answer, or None."""
    if resp.headers.get("Content-Encoding"):
        return None
    return resp.content_length


@dataclass(frozen=True, slots=True)
class _Raised:
    """What a download's ``then`` raised, carried out of its thread."""

    error: Exception


class _WriteFailed(Exception):
    """The file could not be written here (no network fault)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


#: A download's body is kept in memory up to this many bytes, then written out in pieces of
#: this size (in a thread, each), so that the loop never waits on the disk.
SPILL = 4 << 20


class _Body:
    """The body of a download on its way to ``dest`` (see :func:`rhflow.atomic.replacing`):
    kept in memory, then written, fsynced and renamed over ``dest`` in a thread."""

    def __init__(self, dest: Path, executor: Executor | None = None) -> None:
        self.dest = dest
        self._executor = executor
        self._pieces: list[bytes] = []
        self._kept = 0
        self._file: contextlib.AbstractContextManager[BinaryIO] | None = None
        self._handle: BinaryIO | None = None

    async def write(self, chunk: bytes) -> None:
        self._pieces.append(chunk)
        self._kept += len(chunk)
        if self._kept >= SPILL:
            await self._in_thread(self._spill)

    async def finish(self, then: Callable[[T], Any] | None = None, value: Any = None) -> Any:
        """Write what is left, fsync and rename; then, in the same thread, ``then(value)``:
        what it returns, or a ``_Raised`` with what it raised."""

        def step() -> Any:
            self._finish()
            if then is None:
                return None
            try:
                return then(value)
            except Exception as exc:  # its own errors, not the file's
                return _Raised(exc)

        return await self._in_thread(step)

    def discard(self) -> None:
        """Remove what was written (a temporary file beside ``dest``), if anything."""
        if self._file is not None:
            with contextlib.suppress(BaseException):
                self._file.__exit__(_WriteFailed, _WriteFailed(OSError("discarded")), None)
            self._file = self._handle = None

    async def _in_thread(self, step: Callable[[], Any]) -> Any:
        done = asyncio.get_running_loop().run_in_executor(self._executor, step)
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            await asyncio.wait({done})  # the file is not left to a thread still writing it
            raise
        except OSError as exc:
            raise _WriteFailed(exc) from exc

    def _spill(self) -> None:
        if self._file is None:
            self._file = replacing(self.dest)
            self._handle = self._file.__enter__()
        assert self._handle is not None
        self._handle.write(b"".join(self._pieces))
        self._pieces.clear()
        self._kept = 0

    def _finish(self) -> None:
        self._spill()
        assert self._file is not None
        done, self._file, self._handle = self._file, None, None
        done.__exit__(None, None, None)


class _LoopWatch:
    """The deadlines of one download on the loop, as ``rhflow.api.transport``'s ``_Watch``
    keeps them for a thread: the whole exchange within ``seconds``; its headers within
    ``headers``; then at least ``min_rate`` in every window. When one passes, ``reason``
    says which ("deadline", "headers", "stalled") and the task is cancelled."""

    def __init__(self, seconds: float, headers: float | None, min_rate: MinRate | None) -> None:
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self._ends = now + seconds
        self._headers_ends = None if headers is None else now + headers
        self._min_rate = min_rate
        self._begun = False
        self._mark = 0
        self._window_ends = float("inf")
        self.received = 0
        self.window_bytes = 0
        self.reason: str | None = None
        self._task: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __enter__(self) -> _LoopWatch:
        self._task = asyncio.current_task()
        self._arm()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.reason is not None and self._task is not None:
            uncancel = getattr(self._task, "uncancel", None)  # Python 3.11+
            if uncancel is not None:
                uncancel()

    def begun(self) -> None:
        """The headers came: from now on the body's rate counts."""
        self._begun = True
        if self._min_rate is not None:
            self._mark = self.received
            self._window_ends = self._loop.time() + self._min_rate.seconds
        self._arm()

    def _due(self) -> float:
        if not self._begun and self._headers_ends is not None:
            return min(self._ends, self._headers_ends)
        return min(self._ends, self._window_ends)

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(self._due(), self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        reason = None
        if now >= self._ends:
            reason = "deadline"
        elif not self._begun and self._headers_ends is not None and now >= self._headers_ends:
            reason = "headers"
        elif self._begun and self._min_rate is not None and now >= self._window_ends:
            got = self.received - self._mark
            if got < self._min_rate.bytes:
                self.window_bytes, reason = got, "stalled"
            else:
                self._mark, self._window_ends = self.received, now + self._min_rate.seconds
        if reason is None:
            self._arm()
            return
        self.reason = reason
        if self._task is not None:
            self._task.cancel()
