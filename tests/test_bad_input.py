"""Broken and odd pipeline files: each ends in a located message and exit 1 from
``rhflow validate``, exit 2 from ``rhflow plan`` and ``rhflow run``, with no traceback, within
a subprocess timeout and under a memory limit, and with nothing sent to the server.

``python -m pytest -m soak tests/test_bad_input.py`` also runs ``rhflow run`` on every file.

The corpus covers the classes of the reliability issue (deep nesting, NUL and control
characters, lone surrogates, non-regular and oversized files, sweeps and joins past the task
cap, non-finite and huge numbers, numeric ids) and more found on the way (aliases, encodings,
wrong types, output names). Files that look odd but are valid (a BOM, CRLF line ends, a NUL
escape inside quotes) must stay valid.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rhflow.emulator import Emulator
from tests.bounded import rhflow

#: The million-item list is read before it is refused: more room than the template suite.
MEMORY = 300 << 20
HEAD = 'version: 1\nsteps:\n  x:\n    workflow: "1"\n'


def step(*lines: str) -> str:
    return HEAD + "".join(f"    {line}\n" for line in lines)


def deep_block(levels: int) -> str:
    body = "".join("  " * n + "- \n" for n in range(levels))
    return (
        "version: 1\nx-deep:\n"
        + "".join("  " + line for line in body.splitlines(True))
        + ('steps:\n  x:\n    workflow: "1"\n')
    )


#: name -> (file text, or bytes, and the start of the expected message after ``file:line:col: ``;
#: ``|`` separates alternatives: libyaml refuses some things itself, PyYAML alone does not)
CORPUS: dict[str, tuple[str | bytes, str]] = {
    "deep-flow-list": (step("nodes: {'6': {text: " + "[" * 5000 + "]" * 5000 + "}}"),
                       "invalid YAML: "),
    "deep-flow-map": (step("nodes: {'6': {text: " + "{a: " * 3000 + "1" + "}" * 3000 + "}}"),
                      "invalid YAML: "),
    "deep-block-list": (deep_block(1500), "invalid YAML: lists and mappings nested more than 64"),
    "deep-vars": ("version: 1\nvars: {v: " + "[" * 70 + "]" * 70 + "}\n" + HEAD.split("\n", 1)[1],
                  "invalid YAML: lists and mappings nested more than 64 levels deep"),
    "nul-byte": (step('nodes: {"6": {text: "a\x00b"}}'),
                 "invalid YAML: a NUL character is not allowed in YAML"),
    "control-character": (step('nodes: {"6": {text: "a\x07b"}}'),
                          "invalid YAML: character #x0007 is not allowed"),
    "lone-surrogate": (step('nodes: {"6": {text: "a\\ud800b"}}'),
                       "invalid YAML: found invalid Unicode|steps.x.nodes.6.text: a lone surr"),
    "lone-surrogate-key": (step('nodes: {"6": {"\\udfff": hi}}'),
                           "invalid YAML: found invalid Unicode|steps.x.nodes.6: a lone surrogate"),
    "latin-1": (step('nodes: {"6": {text: "caf\xe9"}}').encode("latin-1"),
                "cannot read the file: it is not UTF-8 text"),
    "utf-16": (step('nodes: {"6": {text: hi}}').encode("utf-16"),
               "cannot read the file: it is not UTF-8 text"),
    "workflow-file-dev-zero": (step("workflow_file: /dev/zero"),
                               "steps.x.workflow_file: cannot read /dev/zero: it is a character"),
    "workflow-file-fifo": (step("workflow_file: fifo.json"),
                           "steps.x.workflow_file: cannot read fifo.json: it is a FIFO"),
    "workflow-file-folder": (step("workflow_file: folder"),
                             "steps.x.workflow_file: folder is a folder, not a file"),
    "workflow-file-huge": (step("workflow_file: huge.json"),
                           "steps.x.workflow_file: cannot read huge.json: it is 65.0 MB, more "
                           "than the 64.0 MB allowed"),
    "input-dev-zero": (step('nodes: {"6": {image: {file: /dev/zero}}}'),
                       "steps.x.nodes.6.image.file: cannot read /dev/zero: it is a character"),
    "input-fifo": (step('nodes: {"6": {image: {file: fifo.json}}}'),
                   "steps.x.nodes.6.image.file: cannot read fifo.json: it is a FIFO"),
    "input-socket": (step('nodes: {"6": {image: {file: sock}}}'),
                     "steps.x.nodes.6.image.file: cannot read sock: "),
    "input-too-large": (step('nodes: {"6": {image: {file: huge.json}}}'),
                        "steps.x.nodes.6.image.file: cannot read huge.json: it is 65.0 MB, more "
                        "than the 30.0 MB allowed"),
    "rows-fifo": (step("rows: fifo.csv"), "steps.x.rows: cannot read fifo.csv: it is a FIFO"),
    "pipeline-too-large": ("#" * (9 << 20), "cannot read the file: it is 9.0 MB, more than"),
    "million-item-list": ("version: 1\nvars:\n  xs: [" + "0, " * 1_000_000 + "]\n" + HEAD[11:],
                          "invalid YAML: the file holds more than 100,000 values"),
    "million-item-axis": (step("matrix: {x: {range: [0, 1000000]}}"),
                          "steps.x: step 'x' would make 1,000,000 tasks, more than --max-tasks"),
    "cap-with-overrides": (step("matrix: {x: {range: [0, 1000000]}}",
                                'nodes: {"6": {text: "{{ x }}"}}'),
                           "steps.x: step 'x' would make 1,000,000 tasks, more than --max-tasks"),
    "axes-multiply": (step("matrix: {a: {range: [0, 1000]}, b: {range: [0, 1000]}, "
                           "c: {range: [0, 1000]}}"),
                      "steps.x: step 'x' would make 1,000,000,000 tasks"),
    "chain-multiplies": (HEAD + "    matrix: {a: {range: [0, 2000]}}\n  y:\n    needs: x\n"
                         '    workflow: "1"\n    matrix: {b: {range: [0, 2000]}}\n',
                         "steps.y: step 'y' would make 4,000,000 tasks (2,000 upstream"),
    "join-explodes": (HEAD + "    matrix: {a: {range: [0, 5000]}}\n  y:\n"
                      '    workflow: "1"\n    matrix: {b: {range: [0, 5000]}}\n'
                      '  z:\n    needs: [x, y]\n    workflow: "1"\n',
                      "steps.z: step 'z' would make 25,000,000 tasks (25,000,000 upstream"),
    "timeout-inf": (step("timeout: .inf"), "steps.x.timeout: inf is greater than the maximum"),
    "timeout-nan": (step("timeout: .nan"), "steps.x.timeout: nan is not a finite number"),
    "timeout-negative": (step("timeout: -5"), "steps.x.timeout: -5 is less than or equal to"),
    "retries-huge": (step("retries: 1000000000000"),
                     "steps.x.retries: 1000000000000 is greater than the maximum of 100"),
    "concurrency-huge": ("concurrency: 99999999999\n" + HEAD,
                         "concurrency: 99999999999 is greater than the maximum of 1000"),
    "workflow-number": (HEAD.replace('"1"', "1904136902449209346"),
                        "steps.x.workflow: a workflow id is the number in the workflow's URL"),
    "workflow-octal": (HEAD.replace('"1"', "0777"), "steps.x.workflow: a workflow id is"),
    "workflow-float": (HEAD.replace('"1"', "1e400"), "steps.x.workflow: a workflow id is"),
    "workflow-negative": (HEAD.replace('"1"', '"-5"'), "steps.x.workflow: a workflow id is"),
    "alias-bomb": ("version: 1\nx-a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
                   + "".join(f"x-{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, "
                             f"*{p}, *{p}]\n" for p, c in zip("abcdefg", "bcdefgh", strict=True))
                   + HEAD[11:], "invalid YAML: " if False else "the YAML expands to more than"),
    "alias-to-itself": ("version: 1\nx-a: &a [*a]\n" + HEAD[11:], "x-a[0]: a YAML alias refers"),
    "not-a-mapping": ("- 1\n- 2\n", "[1, 2] is not a mapping"),
    "steps-a-string": ("version: 1\nsteps: hello\n", 'steps: "hello" is not a mapping'),
    "unknown-version": ("version: 99\nsteps: {x: {workflow: '1'}}\n", "version: must be 1"),
    "tab-indent": ("version: 1\nsteps:\n\tx: 1\n", "invalid YAML: "),
    "unclosed-quote": (step('nodes: {"6": {text: "abc}}'), "invalid YAML: "),
    "binary-garbage": (bytes(range(256)) * 4, "cannot read the file: it is not UTF-8 text"),
    "output-absolute": (step("matrix: {n: [a, /etc/passwd]}", "outputs: '{{ n }}.png'"),
                        "steps.x.outputs: "),
    "template-bomb": (step('nodes: {"6": {text: "{{ \'%01000000000d\' % 1 }}"}}'),
                      "steps.x.nodes.6.text: template too large: "),
}  # fmt: skip

#: Odd but valid: they must keep validating.
VALID: dict[str, str | bytes] = {
    "bom-crlf": ("\ufeff" + step('nodes: {"6": {text: hi}}')).replace("\n", "\r\n").encode(),
    "nul-escape": step('nodes: {"6": {text: "a\\0b"}}'),
    "deep-but-allowed": "version: 1\nvars: {v: " + "[" * 60 + "]" * 60 + "}\n" + HEAD[11:],
    "astral-escape": step('nodes: {"6": {text: "\\U0001F600 \\u00e9"}}'),
    "many-values": "version: 1\nvars:\n  xs: [" + "0, " * 50_000 + "]\n" + HEAD[11:],
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder with every corpus file, the valid odd files and what they point at."""
    folder = tmp_path_factory.mktemp("bad-input")
    for name, (text, _) in CORPUS.items():
        _write(folder / f"{name}.yaml", text)
    for name, text in VALID.items():
        _write(folder / f"{name}.yaml", text)
    os.mkfifo(folder / "fifo.json")
    os.mkfifo(folder / "fifo.csv")
    (folder / "folder").mkdir()
    with open(folder / "huge.json", "wb") as huge:  # sparse: no disk used
        huge.truncate(65 << 20)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(folder / "sock"))
    yield folder
    listener.close()


def _write(path: Path, text: str | bytes) -> None:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 40


def test_validate_locates_every_problem_in_one_bounded_run(corpus: Path) -> None:
    names = [f"{name}.yaml" for name in CORPUS]
    result = rhflow("validate", *names, cwd=corpus, timeout=4 * len(names), memory=MEMORY)
    assert result.returncode == 1
    assert result.stderr == ""
    lines = [line for line in result.stdout.splitlines() if "not checked" not in line]
    for name, (_, expected) in CORPUS.items():
        mine = [line for line in lines if line.startswith(f"{name}.yaml:")]
        assert mine, f"{name}: nothing reported"
        first = mine[0].split(": ", 1)
        assert first[0].count(":") == 2, mine[0]  # file:line:col
        starts = tuple(expected.split("|"))
        assert any(line.split(": ", 1)[1].startswith(starts) for line in mine), (name, mine)


def test_odd_but_valid_files_stay_valid(corpus: Path) -> None:
    names = [f"{name}.yaml" for name in VALID]
    result = rhflow("validate", *names, cwd=corpus, timeout=30, memory=MEMORY)
    assert (result.returncode, result.stderr) == (0, "")
    oks = [line for line in result.stdout.splitlines() if "not checked" not in line]
    assert oks == [f"{name}: ok (1 task)" for name in names]


@pytest.mark.parametrize("name", list(CORPUS))
def test_plan_refuses_each_file_without_a_traceback(
    name: str, corpus: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In process, so an exception escaping ``main`` fails the test with its traceback;
    what reaches stderr is one located ``Error:`` message."""
    from rhflow.cli import main

    monkeypatch.chdir(corpus)
    assert main(["plan", f"{name}.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"Error: {name}.yaml:")
    assert err.count("Error:") == 1


#: The files ``rhflow run`` is tried on in every test run; all of them with ``-m soak``.
RUN_SAMPLE = ["deep-flow-list", "nul-byte", "input-fifo", "cap-with-overrides", "timeout-nan",
              "template-bomb"]  # fmt: skip


def _run_refuses(name: str, folder: Path, emu: Emulator, key: str) -> None:
    result = rhflow("run", f"{name}.yaml", "--base-url", emu.url, "--api-key", key,
                    "--out", "out", cwd=folder, timeout=30, memory=MEMORY)  # fmt: skip
    assert result.returncode == 2, (name, result.stderr)
    assert result.stderr.startswith(f"Error: {name}.yaml:"), (name, result.stderr)
    assert "Traceback" not in result.stderr
    assert emu.stats()["requests"] == {}, name
    assert not (folder / "out").exists()


@pytest.mark.parametrize("name", RUN_SAMPLE)
def test_run_refuses_before_sending_anything(
    name: str, corpus: Path, make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    _run_refuses(name, corpus, make_emulator(), api_key)


@pytest.mark.soak
def test_run_refuses_every_file_before_sending_anything(
    corpus: Path, make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator()
    for name in CORPUS:
        _run_refuses(name, corpus, emu, api_key)
