"""What the client sends and how it reads odd answers, against a scripted loopback HTTP server.

The emulator answers like RunningHub; this server answers like a broken proxy, a wrong base URL
or a flaky network would, so that every failure mapping is exercised over a real socket.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import requests

from rhflow import __version__
from rhflow.api.client import Client, TaskOutputs
from rhflow.errors import (
    API_ERRORS,
    ApiError,
    BadResponseError,
    PromptValidationError,
    RateLimitError,
    ServerError,
    TransportError,
    UnauthorizedError,
    UsageError,
)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    action: str = ""  # "drop": close without answering; "hang": answer only at teardown


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Scripted:
    """A loopback server answering each path from ``routes``; it records every request."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[Seen], Reply] | Reply] = {}
        self.seen: list[Seen] = []
        self.release = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def json(self, path: str, payload: Any, status: int = 200) -> None:
        self.routes[path] = Reply(
            status, json.dumps(payload).encode(), {"Content-Type": "application/json"}
        )

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(self.command, self.path, dict(self.headers), self.rfile.read(length))
                scripted.seen.append(seen)
                route = scripted.routes.get(self.path.split("?")[0], Reply(404, b"<html>nope"))
                reply = route(seen) if callable(route) else route
                if reply.action == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if reply.action == "hang":
                    scripted.release.wait(10)
                self.send_response(reply.status)
                headers = {"Content-Length": str(len(reply.body)), **reply.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                with contextlib.suppress(ConnectionError):  # a client that gave up on a hang
                    self.end_headers()
                    self.wfile.write(reply.body)
                if "Connection" in reply.headers:
                    self.close_connection = True

        return Handler

    def __enter__(self) -> Scripted:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def _shared_server() -> Iterator[Scripted]:
    with Scripted() as scripted:
        yield scripted


@pytest.fixture
def server(_shared_server: Scripted) -> Scripted:
    """The module's server with no routes and no requests seen yet."""
    _shared_server.routes.clear()
    _shared_server.seen.clear()
    return _shared_server


@pytest.fixture
def client(server: Scripted, api_key: str) -> Iterator[Client]:
    with Client(api_key, server.url + "/") as made:
        yield made


CREATED = {
    "code": 0,
    "msg": "success",
    "data": {
        "netWssUrl": None,
        "taskId": "1904737800233889793",
        "clientId": "c" * 32,
        "taskStatus": "QUEUED",
        "promptTips": '{"node_errors": {}}',
    },
}


# -- what is sent ------------------------------------------------------------------------------


def test_create_sends_the_documented_body_and_headers(
    server: Scripted, client: Client, api_key: str
) -> None:
    server.json("/task/openapi/create", CREATED)
    workflow = {"9": {"class_type": "SaveImage", "inputs": {}}}
    created = client.create_task(
        1904136902449209346,
        [{"nodeId": 6, "fieldName": "text", "fieldValue": "1 girl in classroom"}],
        workflow=workflow,
        add_metadata=False,
        webhook_url="http://127.0.0.1:1/hook",
        instance_type="plus",
        use_personal_queue=True,
    )
    assert created.task_id == "1904737800233889793"
    (seen,) = server.seen
    assert seen.json() == {
        "apiKey": api_key,
        "workflowId": "1904136902449209346",
        "nodeInfoList": [{"nodeId": "6", "fieldName": "text", "fieldValue": "1 girl in classroom"}],
        "workflow": json.dumps(workflow),
        "addMetadata": False,
        "webhookUrl": "http://127.0.0.1:1/hook",
        "instanceType": "plus",
        "usePersonalQueue": True,
    }
    assert seen.headers["Authorization"] == f"Bearer {api_key}"
    assert seen.headers["User-Agent"] == f"rhflow/{__version__}"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["Host"] == server.url.removeprefix("http://")


def test_simple_create_sends_only_key_and_workflow(
    server: Scripted, client: Client, api_key: str
) -> None:
    server.json("/task/openapi/create", CREATED)
    client.create_task("1904136902449209346")
    assert server.seen[0].json() == {"apiKey": api_key, "workflowId": "1904136902449209346"}


def test_account_status_sends_lower_case_apikey(
    server: Scripted, client: Client, api_key: str
) -> None:
    server.json(
        "/uc/openapi/accountStatus",
        {
            "code": 0,
            "msg": "success",
            "data": {
                "remainCoins": "177814",
                "currentTaskCounts": "2",
                "remainMoney": None,
                "currency": None,
                "apiType": "NORMAL",
            },
        },
    )
    account = client.account()
    assert (account.remain_coins, account.current_task_counts) == (177814.0, 2)
    assert server.seen[0].json() == {"apikey": api_key}


def test_upload_is_multipart_with_key_and_file_type(
    server: Scripted, client: Client, api_key: str, tmp_path: Path
) -> None:
    server.json(
        "/task/openapi/upload",
        {"code": 0, "msg": "success", "data": {"fileName": "api/ab.png", "fileType": "image"}},
    )
    picture = tmp_path / "cat.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\nrest")
    upload = client.upload(picture, file_type="image")
    assert (upload.file_name, upload.file_type) == ("api/ab.png", "image")
    seen = server.seen[0]
    assert seen.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert b'name="apiKey"\r\n\r\n' + api_key.encode() in seen.body
    assert b'name="fileType"\r\n\r\nimage' in seen.body
    assert b'name="file"; filename="cat.png"\r\nContent-Type: image/png' in seen.body
    assert b"\x89PNG\r\n\x1a\nrest" in seen.body


def test_upload_of_bytes_gets_a_name_from_its_content(server: Scripted, client: Client) -> None:
    server.json(
        "/task/openapi/upload",
        {"code": 0, "msg": "success", "data": {"fileName": "api/x.jpg", "fileType": "input"}},
    )
    client.upload(b"\xff\xd8\xff\xe0jpeg")
    assert b'filename="upload.jpg"' in server.seen[0].body


def test_upload_of_a_missing_file_says_which(client: Client, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        client.upload(tmp_path / "nope.png")
    assert str(info.value) == (
        f"cannot upload {tmp_path / 'nope.png'}: No such file or directory; check the path"
    )


def test_v2_query_sends_bearer_only(server: Scripted, client: Client, api_key: str) -> None:
    server.json(
        "/openapi/v2/query",
        {"taskId": "1", "status": "QUEUED", "errorCode": "", "errorMessage": "", "results": None},
    )
    assert client.query("1").state == "QUEUED"
    assert server.seen[0].json() == {"taskId": "1"}
    assert server.seen[0].headers["Authorization"] == f"Bearer {api_key}"


def test_v2_bad_key_envelope_is_fatal(server: Scripted, client: Client) -> None:
    server.json(
        "/openapi/v2/query",
        {"code": 401, "message": "ApiKey verification failed: API Key不存在", "data": None},
    )
    with pytest.raises(ApiError) as info:
        client.query("1")
    assert info.value.fatal and not info.value.retryable


# -- how answers are read --------------------------------------------------------------------


def test_nineteen_digit_numbers_stay_exact(server: Scripted, client: Client) -> None:
    body = (
        b'{"code":0,"msg":"success","data":{"taskId":1904737800233889793,"taskStatus":"RUNNING"}}'
    )
    server.routes["/task/openapi/create"] = Reply(body=body)
    assert client.create_task("1").task_id == "1904737800233889793"


@pytest.mark.parametrize(
    "code", sorted(c for c in API_ERRORS if 1 <= c < 1000 and c not in (804, 805, 813))
)
def test_every_v1_code_raises_its_class(server: Scripted, client: Client, code: int) -> None:
    name = API_ERRORS[code].name
    server.json("/task/openapi/create", {"code": code, "msg": name, "data": None})
    with pytest.raises(API_ERRORS[code]) as info:
        client.create_task("1")
    assert (info.value.code, info.value.name) == (code, name)


def test_validation_failure_names_the_bad_nodes(server: Scripted, client: Client) -> None:
    tips = {
        "result": False,
        "node_errors": {
            "9": {
                "class_type": "SaveImage",
                "errors": [{"message": "Required input is missing", "details": "images"}],
            }
        },
    }
    server.json(
        "/task/openapi/create",
        {"code": 433, "msg": "VALIDATE_PROMPT_FAILED", "data": {"promptTips": json.dumps(tips)}},
    )
    with pytest.raises(PromptValidationError) as info:
        client.create_task("1")
    assert str(info.value) == (
        "RunningHub answered 433 VALIDATE_PROMPT_FAILED: VALIDATE_PROMPT_FAILED: node 9 "
        "(SaveImage): Required input is missing (images) (the workflow graph is invalid; "
        "see node_errors)"
    )


def test_non_json_answer_is_a_bad_response(server: Scripted, client: Client) -> None:
    server.routes["/task/openapi/outputs"] = Reply(body=b"<html>gateway says hi</html>")
    with pytest.raises(BadResponseError) as info:
        client.outputs("1")
    assert info.value.retryable
    assert "answered with something other than a JSON object: <html>gateway" in str(info.value)


def test_json_without_code_is_a_bad_response(server: Scripted, client: Client) -> None:
    server.json("/task/openapi/status", {"data": "RUNNING"})
    with pytest.raises(BadResponseError):
        client.status("1")


def test_wrong_base_url_is_a_permanent_error(server: Scripted, client: Client) -> None:
    with pytest.raises(ApiError) as info:
        client.cancel("1")  # the scripted server knows no routes: HTML 404
    assert (info.value.code, info.value.retryable) == (404, False)
    assert "POST /task/openapi/cancel answered HTTP 404" in str(info.value)


def test_http_5xx_is_a_retryable_server_error_sent_once(server: Scripted, client: Client) -> None:
    server.routes["/task/openapi/create"] = Reply(503, b"<html>busy</html>")
    with pytest.raises(ServerError) as info:
        client.create_task("1")
    assert (info.value.code, info.value.retryable) == (503, True)
    assert len(server.seen) == 1  # no hidden retries


def test_http_429_is_a_rate_limit(server: Scripted, client: Client) -> None:
    server.routes["/task/openapi/create"] = Reply(429, b"slow down")
    with pytest.raises(RateLimitError) as info:
        client.create_task("1")
    assert info.value.retryable


def test_dropped_connection_is_a_transport_error(server: Scripted, client: Client) -> None:
    server.routes["/task/openapi/outputs"] = Reply(action="drop")
    with pytest.raises(TransportError) as info:
        client.outputs("1")
    assert info.value.retryable


def test_slow_answer_times_out(server: Scripted, api_key: str) -> None:
    server.routes["/task/openapi/status"] = Reply(action="hang", body=b"{}")
    with Client(api_key, server.url, timeout=0.2) as quick, pytest.raises(TransportError) as info:
        quick.status("1")
    assert str(info.value).startswith(
        "RunningHub answered 0 CONNECTION_ERROR: POST /task/openapi/status timed out"
    )


def test_refused_connection_is_a_transport_error(api_key: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        Client(api_key, f"http://127.0.0.1:{port}") as nowhere,
        pytest.raises(TransportError) as info,
    ):
        nowhere.account()
    assert "check --base-url and the network" in str(info.value)


# -- the key stays secret ------------------------------------------------------------------


def test_key_echoed_by_the_server_is_scrubbed(
    server: Scripted, client: Client, api_key: str
) -> None:
    server.json(
        "/task/openapi/create",
        {"code": 802, "msg": f"APIKEY_UNAUTHORIZED: {api_key} is disabled", "data": None},
    )
    server.routes["/task/openapi/outputs"] = Reply(500, f"<pre>key={api_key}</pre>".encode())
    # an unknown code names the error after its message, so the name must be scrubbed too
    server.json("/task/openapi/status", {"code": 999, "msg": f"key {api_key}", "data": None})
    errors: list[ApiError] = []
    calls = (
        lambda: client.create_task("1"),
        lambda: client.outputs("1"),
        lambda: client.status("1"),
    )
    for call in calls:
        with pytest.raises(ApiError) as info:
            call()
        errors.append(info.value)
    assert isinstance(errors[0], UnauthorizedError) and errors[0].fatal
    for err in errors:
        for text in (str(err), repr(err), err.message, *map(str, err.args)):
            assert api_key not in text
        assert "***" in str(err)


def test_key_is_not_in_the_repr(client: Client, api_key: str, server: Scripted) -> None:
    assert repr(client) == f"Client(base_url={server.url!r}, api_key='***')"
    assert api_key not in repr(client)


def test_key_is_not_in_log_lines(
    server: Scripted, client: Client, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    server.json("/task/openapi/create", CREATED)
    with caplog.at_level("DEBUG"):
        client.create_task("1")
        server.routes["/task/openapi/create"] = Reply(action="drop")
        with pytest.raises(TransportError):
            client.create_task("1")
    assert caplog.records, "the client logs its requests at DEBUG"
    assert api_key not in caplog.text


def test_download_does_not_send_the_key(
    server: Scripted, client: Client, api_key: str, tmp_path: Path
) -> None:
    server.routes["/file.png"] = Reply(body=b"png bytes")
    client.download(server.url + "/file.png", tmp_path / "a.png")
    assert "Authorization" not in server.seen[0].headers
    assert api_key not in server.seen[0].path


# -- construction ----------------------------------------------------------------------------


def test_from_env_without_a_key_says_how_to_get_one() -> None:
    with pytest.raises(UsageError) as info:
        Client.from_env()
    assert str(info.value) == (
        "no RunningHub API key: set RH_API_KEY or pass --api-key "
        "(or use --emulator to try without a key)"
    )


def test_from_env_reads_key_and_base_url(
    monkeypatch: pytest.MonkeyPatch, server: Scripted, api_key: str
) -> None:
    monkeypatch.setenv("RH_API_KEY", api_key)
    monkeypatch.setenv("RH_BASE_URL", server.url + "/")
    server.json("/task/openapi/cancel", {"code": 0, "msg": "success", "data": None})
    with Client.from_env(timeout=5) as made:
        assert made.base_url == server.url
        made.cancel("1904737800233889793")
    assert server.seen[0].json() == {"apiKey": api_key, "taskId": "1904737800233889793"}


def test_default_base_url(api_key: str) -> None:
    with Client(api_key) as made:
        assert made.base_url == "https://www.runninghub.cn"


def test_a_given_session_is_used(server: Scripted, api_key: str) -> None:
    server.json("/task/openapi/status", {"code": 0, "msg": "", "data": "RUNNING"})
    with requests.Session() as session:
        session.headers["X-Proxy-Tag"] = "batch-7"
        with Client(api_key, server.url, session=session) as made:
            assert made.status("1") == "RUNNING"
    assert server.seen[0].headers["X-Proxy-Tag"] == "batch-7"


# -- downloads -----------------------------------------------------------------------------


def test_download_writes_the_file_and_its_hash(
    server: Scripted, client: Client, tmp_path: Path
) -> None:
    content = bytes(range(256)) * 300
    server.routes["/out/a.png"] = Reply(body=content)
    dest = tmp_path / "deep" / "a.png"
    result = client.download(server.url + "/out/a.png", dest, chunk_size=1000)
    assert dest.read_bytes() == content
    assert (result.path, result.bytes) == (dest, len(content))
    assert result.sha256 == hashlib.sha256(content).hexdigest()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["a.png"]


def test_truncated_download_raises_and_leaves_the_old_file(
    server: Scripted, client: Client, tmp_path: Path
) -> None:
    server.routes["/out/a.png"] = Reply(
        body=b"half", headers={"Content-Length": "8", "Connection": "close"}
    )
    dest = tmp_path / "a.png"
    dest.write_bytes(b"previous")
    with pytest.raises(TransportError) as info:
        client.download(server.url + "/out/a.png", dest)
    assert info.value.retryable
    assert dest.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]


def test_download_http_error_is_retryable_and_leaves_nothing(
    server: Scripted, client: Client, tmp_path: Path
) -> None:
    with pytest.raises(ServerError) as info:
        client.download(server.url + "/expired.png", tmp_path / "x.png")
    assert (info.value.code, info.value.retryable) == (404, True)
    assert list(tmp_path.iterdir()) == []


def test_outputs_parse_matches_the_class_method(server: Scripted, client: Client) -> None:
    payload = {"code": 804, "msg": "APIKEY_TASK_IS_RUNNING", "data": {"netWssUrl": "ws://x"}}
    server.json("/task/openapi/outputs", payload)
    assert client.outputs("1") == TaskOutputs.from_response(payload)


def test_workflow_given_as_read_only_mappings(server: Scripted, client: Client) -> None:
    server.json("/task/openapi/create", CREATED)
    inputs = MappingProxyType({"text": "a cat", "clip": ["4", 1]})
    workflow = MappingProxyType(
        {"6": MappingProxyType({"class_type": "CLIPTextEncode", "inputs": inputs})}
    )
    client.create_task("1", workflow=workflow)
    sent = json.loads(server.seen[0].json()["workflow"])
    assert sent == {
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}}
    }


def test_a_value_json_cannot_carry_is_refused_before_sending(
    server: Scripted, client: Client
) -> None:
    with pytest.raises(UsageError, match="cannot be sent as JSON"):
        client.create_task("1", [{"nodeId": "3", "fieldName": "cfg", "fieldValue": float("nan")}])
    assert server.seen == []


def test_deadlines_share_one_thread_and_still_cut_a_silent_answer() -> None:
    """A request's deadline costs no thread of its own: one watchdog expires them all."""
    from rhflow.api.transport import Expired, deadline

    for _ in range(200):
        with deadline(30.0) as watch:
            watch.check()
    watchers = [t for t in threading.enumerate() if t.name == "rhflow-deadlines"]
    assert len(watchers) == 1
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        conn = socket.create_connection(listener.getsockname())
        served, _ = listener.accept()  # the server never answers
        with deadline(0.2) as watch:
            watch.attach(type("Conn", (), {"sock": conn})())  # type: ignore[arg-type]
            assert conn.recv(1) == b""  # shut down by the deadline, not left hanging
            assert watch.expired
            with pytest.raises(Expired):
                watch.check()
        served.close()
        conn.close()
    finally:
        listener.close()
    assert len([t for t in threading.enumerate() if t.name == "rhflow-deadlines"]) == 1
