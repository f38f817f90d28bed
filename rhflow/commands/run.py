"""``rhflow run``: run a pipeline and print its summary."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import click

from rhflow.errors import ConfigError, RhflowError
from rhflow.execute.runner import exit_code, run_pipeline
from rhflow.pipeline.render import template_limits
from rhflow.progress import JsonReporter, format_summary, make_reporter


def run(
    file: str,
    *,
    quiet: bool,
    as_json: bool,
    use_emulator: bool,
    no_websocket: bool = False,
    template_limit: Iterable[str] = (),
    **options: Any,
) -> int:
    """Run ``file`` with a reporter for the chosen output mode; the exit code of the outcome."""
    reporter = make_reporter(quiet=quiet, as_json=as_json)
    options["api_key"] = tuple(options.get("api_key") or ()) or None
    try:
        with template_limits(template_limit):
            result = run_pipeline(
                file,
                emulator=use_emulator,
                reporter=reporter,
                websocket=not no_websocket,
                **options,
            )
    except RhflowError as err:
        if as_json:  # a machine reading stdout learns why the run stopped, not just silence
            JsonReporter().emit("run_error", **error_fields(err))
        raise
    if not as_json:
        summary = format_summary(
            result.manifest,
            str(result.manifest_path),
            elapsed=result.elapsed,
            reused=result.reused,
            run_coins=result.run_coins,
            run_money=result.run_money,
        )
        click.echo(summary)
    return exit_code(result.manifest)


def error_fields(err: RhflowError) -> dict[str, Any]:
    """The ``run_error`` event for an error that stopped a run: its exit code, its message and,
    for an invalid pipeline, every problem with its file, line and column."""
    fields: dict[str, Any] = {
        "code": err.exit_code,
        "kind": type(err).__name__,
        "message": str(err),
    }
    if isinstance(err, ConfigError):
        fields["problems"] = [
            {"file": p.file, "line": p.line, "col": p.col, "path": p.path, "message": p.message}
            for p in err.problems
        ]
        if err.problems:
            first = err.problems[0]
            fields.update(file=first.file, line=first.line, col=first.col)
    elif located := _LOCATED.match(str(err)):
        fields.update(file=located["file"], line=int(located["line"]), col=int(located["col"]))
    return fields


#: ``pipeline.yaml:12:7: ...``: how every located message starts.
_LOCATED = re.compile(r"(?P<file>[^\n]+?):(?P<line>\d+):(?P<col>\d+): ")
