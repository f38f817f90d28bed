"""How the ``rhflow`` program starts and ends: aiohttp is left to the run; at the end, what the
interpreter does before its teardown is done (threads joined, exit handlers run, output
flushed) and the teardown itself is skipped."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_exit_handlers_and_threads_finish_but_the_teardown_is_skipped(tmp_path: Path) -> None:
    code = """
        import atexit, sys, threading, time
        from pathlib import Path
        import rhflow.cli

        folder = Path(sys.argv[1])

        class Torn:
            def __del__(self):  # runs only in the interpreter's teardown of this module
                (folder / "torn").write_text("yes")

        kept = Torn()
        atexit.register(lambda: (folder / "handler").write_text("ran"))
        def work():
            time.sleep(0.3)
            (folder / "thread").write_text("done")

        threading.Thread(target=work).start()
        sys.argv = ["rhflow", "--version"]
        rhflow.cli.console()
    """
    done = _python(code, str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("rhflow, version ")
    assert (tmp_path / "handler").read_text() == "ran"
    assert (tmp_path / "thread").read_text() == "done"
    assert not (tmp_path / "torn").exists()


def test_a_large_output_is_flushed_whole_and_an_error_keeps_its_exit_code(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.plan_scale import write_pipeline

    pipeline = write_pipeline(tmp_path, [20, 100, 10])  # 20,000 tasks, megabytes of JSON
    done = subprocess.run(
        [sys.executable, "-m", "rhflow", "plan", "--json", str(pipeline)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["tasks"]) == 20_000
    missing = subprocess.run(
        [sys.executable, "-m", "rhflow", "validate", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 1
    assert "cannot read the file" in missing.stdout + missing.stderr


def test_aiohttp_loads_only_once_a_run_has_started(tmp_path: Path) -> None:
    """Loading the run command leaves aiohttp (a tenth of a second of imports) to the run,
    which loads it in a thread while its first tasks are created."""
    code = """
        import sys
        import rhflow.cli, rhflow.commands.run, rhflow.execute.watching
        print("aiohttp" in sys.modules)
    """
    done = _python(code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
