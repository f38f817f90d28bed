"""Files in and out: safe output paths, download checks, upload caching, progress reporters."""

from __future__ import annotations

import io
import json
import os
import threading
from pathlib import Path

import pytest
from rich.console import Console

from rhflow.errors import PlanError, ServerError, TransportError
from rhflow.execute.scheduling import Backoff
from rhflow.execute.transfers import LazyUploads, UploadCache, check_file, intact, safe_destination
from rhflow.progress import JsonReporter, LiveReporter, PlainReporter
from rhflow.record.store import Store

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 24


@pytest.mark.parametrize("name", ["../x.png", "a/../../x.png", "/etc/x.png", "link/x.png"])
def test_a_name_can_never_write_outside_the_output_folder(tmp_path: Path, name: str) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "link")
    with pytest.raises(PlanError, match="would be written outside the output folder"):
        safe_destination(out, name)


def test_a_nested_name_stays_inside(tmp_path: Path) -> None:
    assert safe_destination(tmp_path, "a/b/c.png") == (tmp_path / "a" / "b" / "c.png").resolve()


def test_download_checks_size_and_image_headers(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    good.write_bytes(PNG)
    bad.write_bytes(b"<html>error</html>")
    check_file(good, "png", len(PNG))
    check_file(bad, "txt", bad.stat().st_size)  # no header to check for text
    with pytest.raises(TransportError, match="has 32 bytes, expected 40"):
        check_file(good, "png", 40)
    with pytest.raises(TransportError, match=r"bad.png is not a valid png file \(bad header\)"):
        check_file(bad, "png", bad.stat().st_size)
    assert TransportError.retryable


def test_intact_compares_the_recorded_hash(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "a.png"
    path.write_bytes(PNG)
    digest = hashlib.sha256(PNG).hexdigest()
    assert intact(path, digest)
    assert not intact(path, "0" * 64)
    assert not intact(tmp_path / "missing.png", digest)
    assert not intact(path, None)


def test_uploads_happen_once_per_content_even_from_many_threads(tmp_path: Path) -> None:
    sent: list[Path] = []
    gate = threading.Event()

    def upload(path: Path) -> str:
        gate.wait(5)
        sent.append(path)
        return f"api/{path.name}"

    (tmp_path / "a.png").write_bytes(PNG)
    with Store.for_output(tmp_path / "out") as store:
        cache = UploadCache(
            upload, store, "http://s", backoff=Backoff(), retries=0, rand=lambda: 0.5
        )
        names: list[str] = []
        workers = [
            threading.Thread(target=lambda: names.append(cache.name_for(tmp_path / "a.png")))
            for _ in range(4)
        ]
        for w in workers:
            w.start()
        gate.set()
        for w in workers:
            w.join()
        assert names == ["api/a.png"] * 4 and len(sent) == 1
        lazy = LazyUploads([(tmp_path / "a.png", None)], cache)
        assert len(lazy) == 1 and lazy[0] == "api/a.png" and list(lazy) == ["api/a.png"]
        assert len(sent) == 1


def test_a_transient_upload_error_is_retried_with_backoff(tmp_path: Path) -> None:
    calls: list[int] = []
    pauses: list[float] = []

    def upload(path: Path) -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ServerError("HTTP 502", code=502)
        return "api/x.png"

    (tmp_path / "x.png").write_bytes(PNG)
    with Store.for_output(tmp_path / "out") as store:
        cache = UploadCache(
            upload,
            store,
            "s",
            backoff=Backoff(base=1.0, factor=2.0, jitter=0.0),
            retries=3,
            rand=lambda: 0.5,
            sleep=pauses.append,
        )
        assert cache.name_for(tmp_path / "x.png") == "api/x.png"
    assert pauses == [1.0, 2.0]


def test_json_events_are_one_object_per_line() -> None:
    stream = io.StringIO()
    reporter = JsonReporter(stream)
    reporter.emit("task_submitted", task="t1", step="gen", task_id="19", attempt=1)
    reporter.emit("run_finished", status="succeeded")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [e["event"] for e in lines] == ["task_submitted", "run_finished"]
    assert lines[0]["task_id"] == "19" and lines[0]["time"].endswith("Z")


def test_plain_lines_describe_what_happens() -> None:
    stream = io.StringIO()
    reporter = PlainReporter(stream)
    reporter.emit("task_submitted", task="0123456789abcdef", step="gen", task_id="19", attempt=2)
    reporter.emit(
        "task_submitted",
        task="fedcba9876543210",
        step="gen",
        task_id="20",
        attempt=1,
        params={"subject": "cat", "seed": 1},
    )
    reporter.emit("task_progress", task="0123456789abcdef", step="gen", node="3", value=1, max=4)
    reporter.emit("task_failed", task="0123456789abcdef", step="gen", reason="boom")
    assert stream.getvalue().splitlines() == [
        "gen/0123456789: submitted as task 19 (attempt 2)",
        "gen/fedcba9876 [subject=cat seed=1]: submitted as task 20 (attempt 1)",
        "gen/0123456789: FAILED: boom",
    ]


def test_the_live_display_shows_tasks_and_node_progress() -> None:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=100, color_system=None)
    reporter = LiveReporter(console, auto_refresh=False)
    reporter.emit("run_started", pipeline="sweep", total=2, to_run=2, skipped=0, concurrency=2)
    params = {"subject": "cat", "seed": 1}
    reporter.emit("task_submitted", task="aaaaaaaaaaaa", step="gen", task_id="19", params=params)
    reporter.emit("task_progress", task="aaaaaaaaaaaa", step="gen", node="3", value=2, max=4)
    reporter.emit("task_failed", task="aaaaaaaaaaaa", step="gen", reason="boom")
    reporter.close()
    text = stream.getvalue()
    assert "sweep" in text and "gen subject=cat seed=1" in text and "node 3" in text
    assert "gen/aaaaaaaaaa: FAILED: boom" in text


def test_upstream_outputs_are_named_by_their_recorded_hash_without_reading_them_again(
    tmp_path: Path,
) -> None:
    import hashlib

    from rhflow.execute.remote import Remote
    from rhflow.execute.scheduling import ExecuteOptions
    from rhflow.model import PlannedTask, Target
    from rhflow.progress import QuietReporter
    from rhflow.record.store import OutputRecord, TaskRecord

    class NoUploads:
        def upload(self, path: Path) -> None:
            raise AssertionError(f"{path} was uploaded again")

    image = tmp_path / "draft.png"
    image.write_bytes(PNG)
    digest = hashlib.sha256(PNG).hexdigest()
    output = OutputRecord(0, "9", "http://s/draft.png", "png", str(image), digest, len(PNG))
    with Store.for_output(tmp_path / "out") as store:
        store.remember_upload("http://s", digest, "api/draft.png")
        store.save(TaskRecord("up", "draft", "succeeded", outputs=(output,)))
        upstream = store.get("up")
        assert upstream is not None
        remote = Remote(
            NoUploads(),
            store,
            None,  # type: ignore[arg-type]  # upstream_views writes no manifest
            QuietReporter(),
            options=ExecuteOptions(),
            server="http://s",
            rand=lambda: 0.5,
        )
        task = PlannedTask("down", "refine", {}, Target("workflow", "1"), (), needs={"draft": "up"})
        views = remote.upstream_views(task, {"up": upstream})
        image.unlink()  # hashing it again would have to read it
        assert list(views["draft"].outputs) == ["api/draft.png"]
        assert views["draft"].files == (image,)
