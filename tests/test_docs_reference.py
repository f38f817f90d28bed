"""The docs hold together: links resolve, the CLI reference matches the commands, the tutorial runs.

``docs/reference/cli.md`` has a ``## `rhflow COMMAND` `` heading per command (``rhflow manifest
merge`` for a subcommand) and a table row per option (`` | `--name`, `-n` | ... | ``). Run
``python tests/test_docs_reference.py`` to print a fresh skeleton of that page after adding a
command or an option.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rhflow.cli import cli  # noqa: E402

DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *DOCS.rglob("*.md")])
CLI_PAGE = DOCS / "reference" / "cli.md"
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```[^\n]*\n.*?^```$", re.M | re.S)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {slug(h) for h in re.findall(r"^#+ (.*)$", text, flags=re.M)}


def links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading #{anchor})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {', '.join(broken)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_keeps_merge_conflict_markers(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    marks = re.findall(r"^(?:<{7}|>{7}|={7})(?: .*)?$", text, flags=re.M)
    assert not marks, f"{page.relative_to(ROOT)} has merge conflict markers: {marks}"


def test_every_page_is_reachable_from_the_docs_index() -> None:
    seen, todo = set(), [DOCS / "index.md"]
    while todo:
        page = todo.pop()
        if page in seen or page.suffix != ".md" or not page.exists():
            continue
        seen.add(page)
        todo += [(page.parent / t.partition("#")[0]).resolve() for t in links(page)]
    unreachable = sorted(str(p.relative_to(ROOT)) for p in DOCS.rglob("*.md") if p not in seen)
    assert not unreachable, f"pages linked from no page under docs/index.md: {unreachable}"


def test_the_manifest_shown_in_the_explanation_is_one_rhflow_reads_and_the_schema_accepts() -> None:
    import jsonschema

    from rhflow.record.manifest import Manifest

    page = (DOCS / "explanation" / "manifest.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"^```json\n(.*?)^```$", page, re.M | re.S)
    shown = json.loads(block)
    schema = json.loads((ROOT / "schemas" / "manifest.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(shown, schema)
    assert Manifest.from_dict(shown).tasks[0].outputs[0].path == "portrait/cat-001-0.png"


# -- the CLI reference -----------------------------------------------------------------------


def command_tree(group: click.Command = cli, prefix: str = "rhflow") -> dict[str, set[str]]:
    """``{"rhflow run": {"--set", "--out", ...}, "rhflow manifest merge": {...}}``."""
    tree = {
        prefix: {
            max(param.opts, key=len)
            for param in group.params
            if isinstance(param, click.Option) and not param.hidden
        }
    }
    if isinstance(group, click.Group):
        for name, command in sorted(group.commands.items()):
            if not command.hidden:
                tree |= command_tree(command, f"{prefix} {name}")
    return tree


def documented_tree(text: str) -> dict[str, set[str]]:
    tree: dict[str, set[str]] = {}
    current: set[str] | None = None
    for line in text.splitlines():
        if heading := re.fullmatch(r"## `(rhflow[\w -]*)`", line):
            current = tree.setdefault(heading.group(1), set())
        elif line.startswith("## "):
            current = None
        elif current is not None and (row := re.match(r"\| (`-[^|]*)\|", line)):
            names = re.findall(r"`(--?[\w-]+)", row.group(1))
            current.add(max(names, key=len))
    return tree


def test_the_cli_reference_names_every_command_and_option_and_nothing_else() -> None:
    actual = command_tree()
    documented = documented_tree(CLI_PAGE.read_text(encoding="utf-8"))
    assert sorted(documented) == sorted(actual), "commands in docs/reference/cli.md"
    for command, options in actual.items():
        missing, extra = options - documented[command], documented[command] - options
        assert not missing and not extra, (
            f"docs/reference/cli.md, {command}: missing {sorted(missing)}, "
            f"no such option {sorted(extra)}"
        )


def test_the_reference_check_catches_a_missing_option() -> None:
    text = "## `rhflow run`\n\n| `--out DIR` | where |\n| `--quiet`, `-q` | less |\n"
    assert documented_tree(text) == {"rhflow run": {"--out", "--quiet"}}
    assert documented_tree(text)["rhflow run"] != command_tree()["rhflow run"]


def skeleton() -> str:  # pragma: no cover - a maintenance helper
    out = []
    for command in command_tree():
        words = command.split()[1:]
        node: click.Command = cli
        for word in words:
            assert isinstance(node, click.Group)
            node = node.commands[word]
        ctx = click.Context(node, info_name=command)
        out += [f"## `{command}`", "", "```", node.get_usage(ctx), "```", ""]
        out += [(node.help or "").split("\n\n")[0].replace("\n", " "), ""]
        rows = [p for p in node.params if isinstance(p, click.Option) and not p.hidden]
        if rows:
            out += ["| option | what it does |", "|---|---|"]
        for param in rows:
            record = param.get_help_record(ctx)
            if record and "--help" not in param.opts:
                names = ", ".join(f"`{n}`" for n in record[0].split(", "))
                cells = [names, record[1]]
                out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        out.append("")
    return "\n".join(out)


# -- pages whose shell commands are run as written ---------------------------------------------

#: Each page, and a file its commands must have written, relative to their folder.
RUNNABLE = {
    "tutorial/first-sweep.md": "out/sweep/report.html",
    "how-to/results.md": "out/diff.html",
    "how-to/ci.md": "out/manifest.json",
}
_SETUP = ("python3 -m venv", "pip install")


def shell_lines(page: Path) -> list[str]:
    """The commands of a page's ``sh`` blocks, bar the installation ones."""
    blocks = re.findall(r"^```sh\n(.*?)^```$", page.read_text(encoding="utf-8"), re.M | re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith(_SETUP)]


def run_lines(lines: list[str], folder: Path) -> None:
    """Run each line with bash in ``folder``, as a user would type it; fail on the first error."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("RH_API_KEY", None)
    for line in lines:
        done = subprocess.run(
            ["bash", "-c", line], cwd=folder, env=env, capture_output=True, text=True,
            timeout=180,
        )  # fmt: skip
        # rhflow diff exits 1 when the runs differ, which is what the pages show it doing
        allowed = (0, 1) if line.startswith("rhflow diff ") else (0,)
        assert done.returncode in allowed, f"{line}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, line


@pytest.mark.slow
@pytest.mark.parametrize(("page", "made"), sorted(RUNNABLE.items()))
def test_the_page_runs_as_written(page: str, made: str, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines")
    lines = shell_lines(DOCS / page)
    assert lines, f"{page} has no sh block"
    run_lines(lines, tmp_path)
    assert (tmp_path / made).is_file(), f"{page} did not make {made}"


# -- the README's tour ------------------------------------------------------------------------


def tour_script() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Five-minute tour", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"^```sh\n(.*?)^```$", section, re.M | re.S)
    return block


@pytest.mark.slow
def test_the_readme_tour_works_literally_in_an_empty_folder(tmp_path: Path) -> None:
    script = tour_script()
    assert [line.split()[1] for line in script.splitlines()] == [
        "init", "inspect", "inspect", "validate", "plan", "run", "grid", "report",
    ]  # fmt: skip
    bin_dir = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "HOME": str(tmp_path / "home"),  # a fresh user: no cache, no key, no config
        "LANG": "C.UTF-8",
    }
    work = tmp_path / "empty"
    work.mkdir()
    done = subprocess.run(
        ["bash", "-e", "-c", script], cwd=work, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    assert "pipeline.yaml: ok (4 tasks)\nmine.yaml: ok (1 task)\n" in done.stdout
    out = work / "tour" / "out" / "first-sweep"
    assert len(list((out / "picture").glob("*.png"))) == 4
    from PIL import Image

    with Image.open(out / "grid.png") as grid:
        assert grid.width > 2 * 128 and grid.height > 2 * 128
    assert (out / "report.html").read_text(encoding="utf-8").count("<img ") == 4


if __name__ == "__main__":  # pragma: no cover
    print(skeleton())
