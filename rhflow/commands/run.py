"""``rhflow run``: run a pipeline and print its summary."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click

from rhflow.execute.runner import exit_code, run_pipeline
from rhflow.pipeline.render import template_limits
from rhflow.progress import format_summary, make_reporter


def run(
    file: str,
    *,
    quiet: bool,
    as_json: bool,
    use_emulator: bool,
    template_limit: Iterable[str] = (),
    **options: Any,
) -> int:
    """Run ``file`` with a reporter for the chosen output mode; the exit code of the outcome."""
    reporter = make_reporter(quiet=quiet, as_json=as_json)
    options["api_key"] = tuple(options.get("api_key") or ()) or None
    with template_limits(template_limit):
        result = run_pipeline(file, emulator=use_emulator, reporter=reporter, **options)
    if not as_json:
        summary = format_summary(result.manifest, str(result.manifest_path), elapsed=result.elapsed)
        click.echo(summary)
    return exit_code(result.manifest)
