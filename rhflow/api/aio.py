"""The calls a run makes for every task (create, outputs) as coroutines on its event loop.

A run already holds an aiohttp session for the tasks' WebSockets; sending its creates and its
``outputs`` polls through it costs a fraction of the CPU of a ``requests`` call in a pool
thread (no thread hop, no per-request session machinery), which is what bounds a large sweep
on one core. Everything else (uploads, downloads, account, cancel) stays on the blocking
:class:`rhflow.api.client.Client`, whose rules these calls keep, word for word:

- one deadline for the whole request (``client.timeout``), a connect timeout, an answer capped
  at ``MAX_ANSWER_BYTES``;
- redirects followed by hand, only 307/308 within the API's origin (the body carries the key);
- the key masked in every answer and error; ``-v`` logs one line per request;
- a request that may have reached the server and got no answer is a ``TransportError`` with
  ``sent`` set, so that a create is flagged "may have been created twice".

    calls = AsyncCalls(client, session)
    created = await calls.create_task("1904136902449209346", entries)
    outputs = await calls.outputs(created.task_id)

A subclass of Client that overrides one of these calls keeps its own (run in a thread).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
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
    app_body,
    create_body,
    quick_app_body,
)
from rhflow.api.transport import CHUNK, TooLarge
from rhflow.errors import ApiError

if TYPE_CHECKING:
    import aiohttp

__all__ = ["AsyncCalls", "new_session"]

T = TypeVar("T")

#: Longest header line read (http.client's limit, which the blocking client keeps).
MAX_LINE = 65536
REDIRECTS = (301, 302, 303, 307, 308)


def new_session(*, connections: int = 0) -> aiohttp.ClientSession:
    """The run's session, for its WebSockets and the calls here: ``connections`` at most
    (0: no limit, as each followed task holds one for its socket). Call it on the loop that
    will use it."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=connections)
    return aiohttp.ClientSession(
        connector=connector, max_line_size=MAX_LINE, max_field_size=MAX_LINE
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
    """``create_task``, ``run_ai_app``, ``run_quick_ai_app`` and ``outputs`` of ``client``,
    sent over ``session``; same arguments, results and errors as the client's own."""

    def __init__(self, client: Client, session: aiohttp.ClientSession) -> None:
        self.client = client
        self._session = session
        self._proxy = env_proxy(client.base_url)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

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

    # -- plumbing ----------------------------------------------------------------------------

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
        progress = {"connected": False, "answering": False}
        try:
            status, headers, answer = await asyncio.wait_for(
                self._exchange(path, data, progress), limit
            )
        except asyncio.TimeoutError:
            raise client.timed_out(
                "POST", path, started, limit, answering=progress["answering"], reason=None
            ) from None
        except TooLarge:
            raise client.too_large("POST", path, started) from None
        except aiohttp.ClientResponseError as exc:  # the answer's head could not be parsed
            if _headers_too_large(exc):
                raise client.headers_refused("POST", path, started, _short(exc)) from None
            raise self._dropped("POST", path, started, _short(exc), connected=True) from exc
        except (aiohttp.ClientError, OSError) as exc:
            connected = progress["connected"] and not isinstance(exc, _not_connected())
            raise self._dropped("POST", path, started, _cause(exc), connected=connected) from exc
        return client.answer("POST", path, started, status, headers, answer)

    async def _exchange(
        self, path: str, data: bytes, progress: dict[str, bool]
    ) -> tuple[int, Mapping[str, str], bytes]:
        import aiohttp

        client = self.client
        url = client.base_url + path
        headers = {**client._auth_headers(), "Content-Type": "application/json"}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
        for _ in range(MAX_REDIRECTS + 1):
            progress["connected"] = True  # from here on the request may reach the server
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


def _headers_too_large(exc: BaseException) -> bool:
    text = f"{getattr(exc, 'message', '')} {exc}".lower()
    return "got more than" in text or "too long" in text or "too many" in text
