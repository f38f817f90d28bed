"""``rhflow init [DIR]``: start a pipeline folder that runs as it is.

Writes a small commented pipeline, the workflow JSON it uses (ComfyUI's default text-to-image
graph, which the built-in emulator serves under the same id), the pipeline schema its first
line points at, and a ``.gitignore`` for ``out/``. Nothing is overwritten: when one of the files
exists, nothing is written at all.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from rhflow.atomic import write_atomic
from rhflow.emulator.workflows import BUILTIN_WORKFLOWS, TEXT_TO_IMAGE
from rhflow.errors import UsageError
from rhflow.pipeline.schema import schema_path

PIPELINE = f"""\
# yaml-language-server: $schema=pipeline.schema.json
# A sweep of a text-to-image workflow: two subjects times two seeds, four small images.
# Try it without a key:          rhflow run pipeline.yaml --emulator
# See its tasks first:           rhflow plan pipeline.yaml
# Run it on RunningHub:          RH_API_KEY=... rhflow run pipeline.yaml
# Every command: rhflow --help; what a pipeline may say: rhflow schema
version: 1
name: first-sweep
vars: {{style: watercolor}}            # rhflow run ... --set style=ink changes it
output: out/first-sweep                # images and manifest.json go here (ignored by git)
concurrency: 4                         # tasks in flight at once
defaults: {{retries: 1, timeout: 600}}
steps:
  picture:
    workflow: "{TEXT_TO_IMAGE}"    # the workflow's id on RunningHub (the number in its URL)
    workflow_file: workflows/text-to-image.json   # its API-format JSON: overrides are checked
    matrix:                            # one task per combination
      subject: [cat, lighthouse]
      seed: [1, 2]
    nodes:                             # node id (or its title) -> field -> value
      "6": {{text: "a {{{{ subject }}}}, {{{{ vars.style }}}}"}}    # positive prompt (Jinja2)
      "7": {{text: "text, watermark"}}                          # negative prompt
      "3": {{seed: "{{{{ seed }}}}", steps: 20, cfg: 7}}
      Empty Latent Image: {{width: 256, height: 256}}
    outputs: "{{{{ step }}}}/{{{{ subject | slug }}}}-{{{{ seed }}}}.{{{{ ext }}}}"
"""

GITIGNORE = """\
# rhflow outputs, manifests and run state
out/
"""


def files() -> dict[str, bytes]:
    """The files ``init`` writes, by path relative to DIR."""
    graph = BUILTIN_WORKFLOWS[TEXT_TO_IMAGE]
    return {
        "pipeline.yaml": PIPELINE.encode(),
        "workflows/text-to-image.json": (json.dumps(graph, indent=2) + "\n").encode(),
        "pipeline.schema.json": schema_path("pipeline").read_bytes(),
        ".gitignore": GITIGNORE.encode(),
    }


def init(directory: str | None) -> int:
    """Write the starter files into ``directory`` (default: here); refuse to overwrite."""
    folder = Path(directory or ".")
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file, not a folder")
    written = files()
    present = [name for name in written if (folder / name).exists()]
    present += sorted(  # a file where a folder must go (workflows/) would stop us halfway
        {
            str(parent.relative_to(folder))
            for name in written
            for parent in (folder / name).parents
            if parent != folder and parent.is_relative_to(folder) and parent.is_file()
        }
    )
    if present:
        listing = ", ".join(str(folder / name) for name in present)
        raise UsageError(
            f"not overwriting {listing}; nothing was written (choose another folder: "
            "rhflow init DIR)"
        )
    done: list[Path] = []
    try:
        for name, data in written.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data)
            done.append(path)
    except OSError as exc:
        for path in done:  # all the starter files or none
            path.unlink(missing_ok=True)
        raise UsageError(
            f"cannot write the starter files into {folder}: {exc.strerror or exc}; nothing was "
            "written (choose a folder you can write to: rhflow init DIR)"
        ) from exc
    for path in done:
        click.echo(f"wrote {path}")
    where = "" if folder == Path(".") else f"cd {folder} && "
    click.echo(f"next: {where}rhflow run pipeline.yaml --emulator")
    return 0
