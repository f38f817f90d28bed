"""The ``console`` blocks of the docs, compared in their essentials with what commands print.

A block is a transcript: ``$ COMMAND`` lines, each followed by what it prints. The essentials
leave out what changes from run to run or machine to machine: durations (``1.2 s`` -> ``N s``,
and rhflow diff's task seconds), RunningHub task ids, the folder the commands ran in (shown
as ``/home/me/rhflow``), the server's URL (shown as ``https://www.runninghub.cn``, so the
summary's line saying that server is an emulator goes too) and timestamps. A line ``...`` in a
block stands for any number of lines, and ``...`` inside a line for any text. A ``^C`` line
after a command means the command is interrupted (a real SIGINT, sent once its second task
succeeded). What a terminal keeps is compared: stdout, and the warnings and the error of
stderr (the live progress display is gone once a run ends).
"""

from __future__ import annotations

import contextlib
import re
import shlex
import signal
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

SHOWN_FOLDER = "/home/me/rhflow"
SHOWN_SERVER = "https://www.runninghub.cn"


def console_blocks(text: str) -> list[str]:
    """The bodies of a page's ``console`` blocks, in order."""
    return re.findall(r"^```console\n(.*?)^```$", text, re.M | re.S)


def transcript(body: str) -> list[tuple[str, str]]:
    """``[(command, what it prints), ...]`` of one console block."""
    found: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            found.append((line[2:], []))
        else:
            assert found, f"output before any command: {line!r}"
            found[-1][1].append(line)
    return [(command, "\n".join(lines)) for command, lines in found]


def kept(done: subprocess.CompletedProcess[str]) -> tuple[str, str]:
    """What a terminal shows once the command ended: stdout, and stderr's warnings and error
    (``Error: ...`` and any line after it), as two texts (which came first on the screen
    depends on the command: a block may show them in either order)."""
    notes: list[str] = []
    for line in done.stderr.splitlines():
        after_error = any(n.startswith("Error:") for n in notes)
        if after_error or line.startswith(("Error:", "warning:")):
            notes.append(line)
    return done.stdout.rstrip("\n"), "\n".join(notes)


def _screens(texts: tuple[str, str]) -> list[str]:
    out, notes = texts
    return ["\n".join(t for t in order if t) for order in ((out, notes), (notes, out))]


def essentials(
    text: str,
    *,
    folder: Path | None = None,
    server: str | None = None,
    shown_as: Mapping[str, str] | None = None,
) -> str:
    for actual, shown in (shown_as or {}).items():
        text = text.replace(actual, shown)
    if folder is not None:
        text = text.replace(str(folder.resolve()), SHOWN_FOLDER).replace(str(folder), SHOWN_FOLDER)
    if server is not None:
        text = text.replace(server, SHOWN_SERVER)
        # the summary's word that the server is an emulator (the built-in one's stays)
        shown = re.escape(SHOWN_SERVER)
        text = re.sub(rf"^server: {shown}(:\d+)?, an emulator: .*\n?", "", text, flags=re.M)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z?", "<time>", text)
    text = re.sub(r"[+-]?\b\d+(?:\.\d+)? (s|min|h)\b", r"N \1", text)
    text = re.sub(r"task seconds [\d.]+ -> [\d.]+ \([+-]?[\d.]+\)", "task seconds N -> N (N)", text)
    text = re.sub(r"\b\d{16,20}\b", "<taskId>", text)
    return text


def matches(expected: str, actual: str) -> bool:
    """``actual`` is ``expected``, a ``...`` line of which stands for any number of lines;
    the columns of tables may be aligned to other widths (runs of spaces count as one)."""
    want = [" ".join(line.split()) for line in expected.splitlines()]
    have = [" ".join(line.split()) for line in actual.splitlines()]
    return _match(want, have)


def _match(want: list[str], have: list[str]) -> bool:
    if not want:
        return not have
    if want[0] == "...":
        return any(_match(want[1:], have[i:]) for i in range(len(have) + 1))
    return bool(have) and _same(want[0], have[0]) and _match(want[1:], have[1:])


def _same(want: str, have: str) -> bool:
    if "..." not in want:
        return want == have
    pattern = ".*".join(re.escape(part) for part in want.split("..."))
    return re.fullmatch(pattern, have) is not None


def check_block(
    body: str,
    outcomes: dict[str, subprocess.CompletedProcess[str]],
    *,
    folder: Path | None = None,
    server: str | None = None,
) -> None:
    """Each command of the block was run (``outcomes`` by command line) and printed, in its
    essentials, what the block shows."""
    for command, shown in transcript(body):
        assert command in outcomes, f"the console block's {command!r} was not run"
        screens = [
            essentials(t, folder=folder, server=server) for t in _screens(kept(outcomes[command]))
        ]
        compare(command, shown, *screens)


def compare(command: str, shown: str, actual: str, *others: str) -> None:
    """``actual`` (or one of ``others``) is, in its essentials, what the block ``shown``."""
    expected = essentials(shown)
    assert any(matches(expected, a) for a in (actual, *others)), (
        f"$ {command}\n--- shown:\n{shown}\n--- printed:\n{actual}"
    )


def run_block(
    body: str,
    folder: Path,
    env: Mapping[str, str],
    *,
    server: str | None = None,
    shown_as: Mapping[str, str] | None = None,
    codes: Mapping[str, int] | None = None,
    rewrite: Mapping[str, str] | None = None,
) -> list[subprocess.CompletedProcess[str]]:
    """Run each command of a console block with bash in ``folder`` (interrupting it where the
    block shows ``^C``) and compare what it printed with what the block shows; ``codes`` gives
    the exit code of a command that must not end with 0 (130 after ``^C``). ``rewrite``
    replaces text in the commands before they run (the page's port by the one in use). An
    ``export NAME=VALUE ...`` line sets the environment of the commands after it."""
    done = []
    env = dict(env)
    for shown_command, shown in transcript(body):
        command = shown_command
        for page_text, real in (rewrite or {}).items():
            command = command.replace(page_text, real)
        if command.startswith("export "):
            env |= dict(word.split("=", 1) for word in shlex.split(command)[1:])
            continue
        interrupted = shown.splitlines()[:1] == ["^C"]
        if interrupted:
            shown = shown.split("\n", 1)[1] if "\n" in shown else ""
            outcome = interrupt(command, folder, env)
        else:
            outcome = subprocess.run(
                ["bash", "-c", command], cwd=folder, env=dict(env), capture_output=True,
                text=True, timeout=180,
            )  # fmt: skip
        want = 130 if interrupted else (codes or {}).get(shown_command, 0)
        assert outcome.returncode == want, f"$ {command}\n{outcome.stdout}\n{outcome.stderr}"
        assert "Traceback" not in outcome.stderr, command
        screens = [
            essentials(t, folder=folder, server=server, shown_as=shown_as)
            for t in _screens(kept(outcome))
        ]
        compare(shown_command, shown, *screens)
        done.append(outcome)
    return done


@contextlib.contextmanager
def serving(command: str, folder: Path, env: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """Run ``rhflow emulator --port P ...`` on a free port instead of P until the block ends;
    yield the line it printed once ready and its URL."""
    port = re.search(r"--port (\d+)", command)
    assert port is not None, command
    argv = shlex.split(command.replace(port.group(0), "--port 0"))
    with subprocess.Popen(argv, cwd=folder, env=dict(env), text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL) as proc:  # fmt: skip
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().rstrip("\n")
            url = re.search(r"http://127\.0\.0\.1:\d+", line)
            assert url is not None, line
            yield line, url.group(0)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)


def interrupt(
    command: str, folder: Path, env: Mapping[str, str], after: int = 2
) -> subprocess.CompletedProcess[str]:
    """Start ``command`` and press Ctrl-C (SIGINT to it) once ``after`` of its tasks
    succeeded, as its progress lines on stderr say."""
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {command}"], cwd=folder, env=dict(env), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    seen, succeeded = [], 0
    for line in proc.stderr:
        seen.append(line)
        succeeded += ": succeeded, " in line
        if succeeded == after:
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "".join(seen) + err)
