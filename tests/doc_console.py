"""The ``console`` blocks of the docs, compared in their essentials with what commands print.

A block is a transcript: ``$ COMMAND`` lines, each followed by what it prints. The essentials
leave out what changes from run to run or machine to machine: durations (``1.2 s`` -> ``N s``),
RunningHub task ids, the folder the commands ran in (shown as ``/home/me/rhflow``) and the
server's URL (shown as ``https://www.runninghub.cn``, so the summary's line saying the server
is an emulator goes too). A line ``...`` in a block stands for any
number of lines. What a terminal keeps is compared: stdout, and the ``Error:``/``warning:``
lines of stderr (the live progress display is gone once a run ends).
"""

from __future__ import annotations

import re
import subprocess
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


def kept(done: subprocess.CompletedProcess[str]) -> str:
    """What a terminal shows once the command ended."""
    notes = [line for line in done.stderr.splitlines() if line.startswith(("Error:", "warning:"))]
    return "\n".join([*done.stdout.splitlines(), *notes])


def essentials(text: str, *, folder: Path | None = None, server: str | None = None) -> str:
    if folder is not None:
        text = text.replace(str(folder.resolve()), SHOWN_FOLDER).replace(str(folder), SHOWN_FOLDER)
    if server is not None:
        text = text.replace(server, SHOWN_SERVER)
        text = re.sub(r"^server: .*, an emulator: .*\n?", "", text, flags=re.M)
    text = re.sub(r"\b\d+(?:\.\d+)? (s|min|h)\b", r"N \1", text)
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
    return bool(have) and want[0] == have[0] and _match(want[1:], have[1:])


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
        actual = essentials(kept(outcomes[command]), folder=folder, server=server)
        expected = essentials(shown)
        assert matches(expected, actual), (
            f"$ {command}\n--- shown:\n{shown}\n--- printed:\n{actual}"
        )
