"""The API document's own example scripts (section 10) run against the emulator unchanged.

The scripts are read from the document itself (``/work/shared/reference/...``, or the copy
named by ``RH_API_DOCUMENT``); the test skips when neither is there. Only the placeholders a
user fills in are replaced: the host in the URLs (``https://www.runninghub.cn`` -> the
emulator), ``your-api-key`` and ``your-workflow-id``; each must occur exactly once, so that a
changed script fails here rather than being bent to fit. The ``Host: www.runninghub.cn`` header
stays (the emulator ignores it, as the document's clients send it). Sections 10.2 and 10.3 use
10.1's functions: each runs after 10.1's code (without 10.1's ``__main__`` part) in one file.
10.2's two usage lines are comments in the document: they run uncommented, after two added lines
that create a task with 10.1's ``create_task`` (which gives ``wss_url`` and ``task_id``).

The scripts poll every 5 s, so each takes about 5 s; the three run side by side.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rhflow.emulator import TEXT_TO_IMAGE, Emulator

DOCUMENT = Path(
    os.environ.get("RH_API_DOCUMENT", "/work/shared/reference/000_bac22c621e183128.txt")
)
REAL_HOST = "https://www.runninghub.cn"

pytestmark = pytest.mark.slow


def _section_code(text: str, number: str) -> str:
    """The first ```python block after the heading ``### <number>``."""
    start = text.index(f"### {number} ")
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, start)
    assert match is not None, f"section {number} has no python block"
    return match.group(1)


def _fill(code: str, url: str, key: str) -> str:
    for placeholder, value in (
        (f'"{REAL_HOST}/task/openapi/create"', f'"{url}/task/openapi/create"'),
        (f'"{REAL_HOST}/task/openapi/outputs"', f'"{url}/task/openapi/outputs"'),
        (f'"{REAL_HOST}/api/openapi/getJsonApiFormat"', f'"{url}/api/openapi/getJsonApiFormat"'),
        ('API_KEY = "your-api-key"', f'API_KEY = "{key}"'),
        ('WORKFLOW_ID = "your-workflow-id"', f'WORKFLOW_ID = "{TEXT_TO_IMAGE}"'),
    ):
        assert code.count(placeholder) == 1, f"the script no longer holds {placeholder}"
        code = code.replace(placeholder, value)
    return code


def _scripts(url: str, key: str) -> dict[str, str]:
    if not DOCUMENT.exists():
        pytest.skip(f"the API document is not at {DOCUMENT} (set RH_API_DOCUMENT)")
    text = DOCUMENT.read_text(encoding="utf-8")
    complete = _fill(_section_code(text, "10.1"), url, key)
    library = complete.replace('if __name__ == "__main__":', "if False:  # 10.1's own run")
    assert library != complete
    monitor = _section_code(text, "10.2")
    usage = "# monitor = TaskProgressMonitor(task_id)\n# monitor.start_monitor(wss_url)\n"
    assert monitor.count(usage) == 1
    monitor = monitor.replace(usage, usage.replace("# ", ""))
    start_monitor = (
        'nodes = [{"nodeId": "6", "fieldName": "text", "fieldValue": "a lighthouse"}]\n'
        "wss_url, task_id = create_task(nodes)\n"
    )
    return {
        "10.1": complete,
        "10.2": library + "\n" + start_monitor + monitor,
        "10.3": library + "\n" + _section_code(text, "10.3"),
    }


def _run_all(scripts: dict[str, str], folder: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    processes = {}
    for name, code in scripts.items():
        path = folder / f"section_{name.replace('.', '_')}.py"
        path.write_text(code, encoding="utf-8")
        processes[name] = subprocess.Popen(
            [sys.executable, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
    results = {}
    for name, process in processes.items():
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0, f"section {name} failed:\n{out}"
        results[name] = out
    return results


def test_the_documents_section_10_scripts_run_unchanged(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    pytest.importorskip("websocket", reason="the scripts import websocket-client")
    # 10.2 follows the netWssUrl of the create answer, as section 9.1 says it comes: this
    # emulator runs tasks at once. 10.1 and 10.3 meet the default queueing.
    queued = make_emulator()
    at_once = make_emulator(queue_seconds=0)
    scripts = _scripts(queued.url, api_key)
    scripts["10.2"] = _scripts(at_once.url, api_key)["10.2"]
    out = _run_all(scripts, tmp_path)
    files = re.findall(r"生成结果：(\S+)", out["10.1"])
    assert len(files) == 1 and files[0].startswith(queued.url + "/files/")
    assert "任务已创建，taskId: " in out["10.1"]
    assert "📊 进度监控已启动..." in out["10.2"]
    assert "📈 节点 3 进度: 100.0%" in out["10.2"]
    assert "✅ 任务执行完成！" in out["10.2"]
    assert "❌" not in out["10.2"]
    # the three threads print at once: lines may run into each other
    done = re.findall(r"\[(\d)\] 任务完成: (http://\S+?\.png)", out["10.3"])
    assert sorted(index for index, _ in done) == ["0", "1", "2"]
    assert all(url.startswith(queued.url + "/files/") for _, url in done)
    stats = queued.stats()["tasks"]
    assert (stats["created"], stats["succeeded"]) == (4, 4)
