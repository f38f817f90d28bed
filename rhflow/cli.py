"""The ``rhflow`` command: click wiring over :mod:`rhflow.commands`, one module per command.

Each command parses options and calls its module (imported when the command runs, so that
``rhflow --help`` loads little), which reports and returns an exit code: an int returned by a
command becomes the process's exit code. Errors the user can act on (RhflowError) print
``Error: ...`` on stderr with no traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from rhflow.errors import RhflowError
from rhflow.version import __version__

F = TypeVar("F", bound=Callable[..., Any])


def _api_options(func: F | None = None, *, keys: bool = False) -> Any:
    """--base-url and --api-key, shared by every command that talks to RunningHub; with
    ``keys`` --api-key may be repeated (a pool of keys)."""
    if func is None:
        return lambda f: _api_options(f, keys=keys)
    func = click.option(
        "--api-key",
        envvar="RH_API_KEY",
        default=None,
        multiple=keys,
        show_default=False,
        show_envvar=True,
        help=(
            "RunningHub API key; repeat it (or separate keys with commas) for a pool of keys "
            "(prefer the RH_API_KEY environment variable)."
            if keys
            else "RunningHub API key (prefer the RH_API_KEY environment variable)."
        ),
    )(func)
    func = click.option(
        "--base-url",
        envvar="RH_BASE_URL",
        default=None,
        show_envvar=True,
        help="API base URL [default: https://www.runninghub.cn].",
    )(func)
    return func


_set_option = click.option(
    "--set",
    "set_vars",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a template variable (value parsed as YAML).",
)


def _limit_options(func: F) -> F:
    """--max-tasks and --template-limit, shared by validate, plan and run."""
    func = click.option(
        "--template-limit",
        "template_limit",
        multiple=True,
        metavar="NAME=N",
        help="Raise a template limit (value, total, size, steps, depth, seconds, source); "
        "see docs/reference/pipelines/templates.md.",
    )(func)
    return click.option(
        "--max-tasks",
        type=int,
        default=100_000,
        show_default=True,
        help="Refuse a pipeline that would plan more tasks than this, before making them.",
    )(func)


def _subset_options(verb: str) -> Callable[[F], F]:
    """--limit and --only, shared by plan and run (``verb`` starts their help)."""

    def decorate(func: F) -> F:
        func = click.option(
            "--only",
            multiple=True,
            metavar="KEY=VALUE",
            help=f"{verb} only tasks whose parameter KEY is VALUE (repeatable, all must match).",
        )(func)
        return click.option(
            "--limit",
            type=int,
            help=f"{verb} only the first N combinations of each step's own sweep.",
        )(func)

    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rhflow")
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="Log each HTTP request (endpoint, answer, time; never the key) to stderr.",
)
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Run RunningHub cloud workflows from YAML pipeline files.

    \b
    Examples:
      rhflow init my-sweep && rhflow run my-sweep/pipeline.yaml --emulator
      rhflow inspect 1904136902449209346 --skeleton > pipeline.yaml
      rhflow run pipelines/sweep.yaml --emulator
      rhflow validate pipelines/*.yaml
      rhflow plan pipelines/sweep.yaml --set style=ink --json
      rhflow -v account
      rhflow emulator --port 8800

    Shell completion: eval "$(_RHFLOW_COMPLETE=bash_source rhflow)" (zsh_source, fish_source).
    """
    if verbose:
        from rhflow.commands.verbose import enable

        ctx.call_on_close(enable())


# -- emulator --------------------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=0, type=int, help="Port (0 picks a free one).")
@click.option(
    "--task-seconds",
    default="2",
    show_default=True,
    help="Task duration in seconds: S, or MIN-MAX for a seeded random duration.",
)
@click.option(
    "--queue-seconds",
    default="0.2-1",
    show_default=True,
    help="Time a task spends QUEUED (no netWssUrl yet) before it runs: S or MIN-MAX; "
    "0 runs it at once.",
)
@click.option(
    "--account",
    type=click.Choice(["consumer", "enterprise"]),
    default="enterprise",
    show_default=True,
    help="Key type: consumer (1 task at a time, pays RH coins) or enterprise (50, pays money).",
)
@click.option(
    "--concurrency",
    type=int,
    help="Tasks queued or running at once per key (default: the account's); beyond it 421.",
)
@click.option(
    "--fail-rate",
    default=0.0,
    show_default=True,
    type=float,
    help="Fraction of tasks that end FAILED.",
)
@click.option(
    "--error-rate",
    default=0.0,
    show_default=True,
    type=float,
    help="Fraction of requests that meet a transient fault (HTTP 500, 1011, drop).",
)
@click.option(
    "--latency",
    default=0.0,
    show_default=True,
    type=float,
    help="Seconds added to every API answer.",
)
@click.option("--no-websocket", is_flag=True, help="Offer no netWssUrl.")
@click.option(
    "--workflows",
    "workflows_dir",
    type=click.Path(exists=True, file_okay=False),
    help="Folder of <workflowId>.json API-format workflows to serve as well.",
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    help="Accept only this key (repeatable); without it any non-empty key works.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for all randomness.")
@click.option(
    "--coins", default=100000, show_default=True, type=int, help="RH coins each key starts with."
)
@click.option(
    "--money",
    default=1000.0,
    show_default=True,
    type=float,
    help="Balance each enterprise key starts with (in --currency).",
)
@click.option(
    "--currency",
    default="CNY",
    show_default=True,
    help="Currency accountStatus gives for an enterprise key's money (USD for the .ai site).",
)
@click.option(
    "--previews", is_flag=True, help="Send ComfyUI's binary preview frames on the WebSocket."
)
@click.option(
    "--ws-idle-seconds",
    default=30.0,
    show_default=True,
    type=float,
    help="How long a WebSocket stays open after its task ended, unless the client closes it.",
)
@click.option(
    "--workflow-id-check",
    type=click.Choice(["document", "observed"]),
    default="document",
    show_default=True,
    help="With `workflow` given: ignore the workflowId (API document 4.2) or still require "
    "it to exist (observed, api-notes 3.1).",
)
@click.option(
    "--cancel-unknown",
    type=click.Choice(["423", "807"]),
    default="423",
    show_default=True,
    help="Code for cancelling an unknown task: 423 (API document 4.4) or 807 (api-notes 3.6).",
)
@click.option(
    "--outputs-style",
    type=click.Choice(["codes", "plain"]),
    default="codes",
    show_default=True,
    help="How outputs reports unfinished/failed tasks: 804/813/805 codes, or code 0 "
    "with data null and 500 on failure (the API document's variant).",
)
@click.option(
    "--traceback-style",
    type=click.Choice(["string", "list"]),
    default="string",
    show_default=True,
    help="failedReason.traceback as a JSON string or a list.",
)
def emulator(**options: Any) -> None:
    """Serve a RunningHub API emulator on loopback until stopped.

    \b
    Example:
      rhflow emulator --port 8800 --task-seconds 1-3 --concurrency 2
      RH_BASE_URL=http://127.0.0.1:8800 RH_API_KEY=test rhflow run pipelines/sweep.yaml
    """
    from rhflow.commands.emulator import emulator as serve_emulator

    serve_emulator(**options)


# -- validate / plan -------------------------------------------------------------------------


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@_set_option
@click.option(
    "--strict",
    is_flag=True,
    help="Fail (exit 1) when some overrides could not be checked against their workflow, "
    "or an input file is missing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as one JSON object.")
@click.option(
    "--frozen",
    is_flag=True,
    help="Fail (exit 1) when a workflow differs from rhflow.lock or cannot be compared.",
)
@_limit_options
@_api_options
def validate(files: tuple[str, ...], **options: Any) -> int:
    """Check pipeline files; print every problem as FILE:LINE:COL: path: message.

    Nothing is sent. Overrides are checked against each step's workflow_file, or, with an API
    key, against the workflow JSON fetched (and cached) from the server; a step whose workflow
    could not be had gets a "not checked" line saying why. An input file ({file: ...}) not
    there yet is a warning (run and plan refuse it).

    Exit 0 when every file is valid, 1 when one is not (or, with --strict, when some
    overrides were not checked or an input file is missing).

    \b
    Examples:
      rhflow validate pipelines/*.yaml
      rhflow validate --strict --json pipelines/sweep.yaml
    """
    from rhflow.commands.validate import validate as validate_files

    return validate_files(files, **options)


@cli.command()
@click.argument("file", type=click.Path())
@_set_option
@_subset_options("Plan")
@click.option("--json", "as_json", is_flag=True, help="Print the task graph as JSON.")
@_limit_options
def plan(file: str, **options: Any) -> int:
    """Expand a pipeline into its task graph without touching the network.

    \b
    Examples:
      rhflow plan pipelines/sweep.yaml --set style=ink
      rhflow plan pipelines/sweep.yaml --only subject=cat --limit 2 --json
    """
    from rhflow.commands.plan import plan as plan_file

    return plan_file(file, **options)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--update", is_flag=True, help="Fetch every entry again and take the changes.")
@_api_options
def lock(files: tuple[str, ...], **options: Any) -> int:
    """Write rhflow.lock beside the pipelines: the sha256 of each workflow and AI app.

    Entries already in the lock are kept (a change on the server is reported); --update
    refreshes them. rhflow run and validate then warn when a workflow changed (--frozen: fail).

    \b
    Examples:
      rhflow lock pipelines/sweep.yaml
      rhflow lock --update pipelines/*.yaml
    """
    from rhflow.commands.lock import lock as lock_files

    return lock_files(files, **options)


# -- run / status / cancel -------------------------------------------------------------------


@cli.command()
@click.argument("file", type=click.Path())
@_set_option
@click.option("--concurrency", type=int, help="Tasks in flight at once.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder.")
@click.option("--manifest", type=click.Path(dir_okay=False), help="Manifest path.")
@click.option("--shard", metavar="I/N", help="Run share I of N (1-based) of the tasks.")
@_subset_options("Run")
@click.option(
    "--force",
    is_flag=True,
    help="Run every task again on this server, ignoring earlier results.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Let this run replace files of other tasks or another pipeline's manifest.",
)
@click.option(
    "--prune",
    is_flag=True,
    help="Delete (after listing them) output files of tasks no longer in the plan.",
)
@click.option(
    "--max-coins",
    type=float,
    metavar="N",
    help="Refuse a run estimated over N coins; stop submitting once this run spent N.",
)
@click.option(
    "--max-money",
    type=float,
    metavar="AMOUNT",
    help="The same for money (enterprise keys, in the key's currency): refuse a run "
    "estimated over AMOUNT; stop submitting once this run spent AMOUNT.",
)
@click.option("--fail-fast", is_flag=True, help="Stop at the first failed task.")
@click.option(
    "--no-websocket",
    is_flag=True,
    help="Follow tasks by polling their outputs only, never over their WebSocket.",
)
@click.option(
    "--frozen",
    is_flag=True,
    help="Fail (exit 2) before anything is sent when a workflow differs from rhflow.lock.",
)
@click.option(
    "--cache",
    metavar="URL",
    envvar="RHFLOW_CACHE",
    show_envvar=True,
    help="Shared cache of finished tasks: a folder, or s3://, gs://, file://... (fsspec).",
)
@click.option(
    "--detach",
    is_flag=True,
    help="On Ctrl-C leave remote tasks running, to be picked up by the next run.",
)
@click.option(
    "--emulator",
    "use_emulator",
    is_flag=True,
    help="Run against an in-process RunningHub emulator (no key needed).",
)
@_limit_options
@_api_options(keys=True)
@click.option(
    "--max-output-size",
    metavar="SIZE",
    help="Refuse an output file larger than this, e.g. 500MB [default: 4GB].",
)
@click.option(
    "--download-timeout",
    type=float,
    metavar="SECONDS",
    help="Time one output file may take to download [default: 1800].",
)
@click.option(
    "--min-download-rate",
    metavar="SIZE/SECONDS",
    help="Abandon a download that brings less than SIZE in SECONDS, or 'off' [default: 1KB/15s].",
)
@click.option(
    "--server-silence",
    type=float,
    metavar="SECONDS",
    help="Stop the run (exit 3, resumable) when the server has answered no API request "
    "for this long [default: 45].",
)
@click.option(
    "--max-outputs",
    type=int,
    metavar="N",
    help="Fail a task that reports more output files than this [default: 1000].",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON event per line.")
def run(file: str, **options: Any) -> int:
    """Run a pipeline: submit, follow, retry, download, write the manifest.

    Exit codes: 0 every task succeeded, 1 some failed, 2 invalid pipeline or usage,
    3 the server stopped answering (run again to resume), 130 interrupted.

    \b
    Examples:
      rhflow run pipelines/sweep.yaml --emulator
      RH_API_KEY=... rhflow run pipelines/sweep.yaml --set style=ink --concurrency 8
      rhflow run pipelines/sweep.yaml --shard 2/4     # one of four CI jobs
    """
    from rhflow.commands.run import run as run_file

    return run_file(file, **options)


@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def status(directory: str | None, as_json: bool) -> int:
    """Summarise a run from its state store and manifest.

    DIR is the run's output folder (default: the current folder).

    \b
    Example:
      rhflow status out/sweep
    """
    from rhflow.commands.status import status as show_status

    return show_status(Path(directory or "."), as_json=as_json)


@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@_api_options
def cancel(directory: str | None, base_url: str | None, api_key: str | None) -> int:
    """Cancel the tasks of a run that are still running remotely.

    DIR is the run's output folder (default: the current folder).

    \b
    Example:
      rhflow cancel out/sweep
    """
    from rhflow.commands.cancel import cancel_with_key

    return cancel_with_key(
        Path(directory or "."), api_key=api_key, base_url=base_url, report=click.echo
    )


# -- inspect / init --------------------------------------------------------------------------


@cli.command()
@click.argument("workflow")
@click.option("--json", "as_json", is_flag=True, help="Print the nodes and fields as JSON.")
@click.option(
    "--skeleton",
    "skeleton_only",
    is_flag=True,
    help="Print a pipeline file that overrides the usual fields (prompts, seed, steps, cfg, "
    "size, input files).",
)
@click.option(
    "--emulator",
    "use_emulator",
    is_flag=True,
    help="Ask an in-process RunningHub emulator (no key needed).",
)
@_api_options
def inspect(workflow: str, **options: Any) -> int:
    """Show the nodes of a workflow and the fields a pipeline can set.

    WORKFLOW is a cloud workflow id (fetched with getJsonApiFormat and cached as for run),
    app:WEBAPPID for an AI app, or a local API-format workflow JSON file.

    \b
    Examples:
      rhflow inspect 1904136902449209346
      rhflow inspect workflows/t2i.json --json
      rhflow inspect app:1877265245566922753 --emulator
      rhflow inspect 1904136902449209346 --skeleton > pipeline.yaml
    """
    from rhflow.commands.inspect import inspect as inspect_workflow

    return inspect_workflow(workflow, **options)


@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False))
def init(directory: str | None) -> int:
    """Start a pipeline folder: a commented pipeline, its workflow JSON, the schema and a
    .gitignore for out/. Refuses to overwrite files.

    \b
    Example:
      rhflow init my-sweep
      cd my-sweep && rhflow run pipeline.yaml --emulator
    """
    from rhflow.commands.init import init as write_starter

    return write_starter(directory)


# -- manifests, results -----------------------------------------------------------------------


@cli.group()
def manifest() -> None:
    """Work on manifest files.

    \b
    Example:
      rhflow manifest merge out/shard-*/manifest.json -o out/manifest.json
    """


@manifest.command("merge")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the merged manifest.",
)
def manifest_merge(files: tuple[str, ...], output: str) -> int:
    """Merge the manifests of shards (or runs) of one pipeline into one.

    Output paths are rewritten relative to the merged manifest's folder; a task found in
    several keeps its newest succeeded record. Manifests of another pipeline, or of the same
    pipeline with another hash, are refused.

    \b
    Example:
      rhflow manifest merge out/shard-1/manifest.json out/shard-2/manifest.json -o out/manifest.json
    """
    from rhflow.commands.manifest import merge

    return merge(files, output, report=click.echo)


@cli.command()
@click.argument("manifest", type=click.Path(exists=True))
@click.option(
    "--x", "x", required=True, metavar="AXIS", help="Parameter whose values are the columns."
)
@click.option("--y", "y", metavar="AXIS", help="Parameter whose values are the rows.")
@click.option("--step", help="Step whose tasks to show (default: the one with parameter --x).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="PNG file to write [default: grid.png beside the manifest].",
)
def grid(manifest: str, x: str, y: str | None, step: str | None, output: str | None) -> int:
    """Draw a labelled contact sheet of a sweep's images: columns by --x, rows by --y.

    MANIFEST is a manifest.json or a run's output folder. Each cell shows a task's first
    image; a cell the sweep has no task for, a failed task and a missing file say so. Any
    other parameter that varies gives one block of rows per value.

    \b
    Examples:
      rhflow grid out/sweep/manifest.json --x seed --y subject
      rhflow grid out/sweep --x seed --step portrait -o seeds.png
    """
    from rhflow.commands.grid import grid as draw_grid

    return draw_grid(manifest, x=x, y=y, step=step, output=output, report=click.echo)


@cli.command()
@click.argument("manifest", type=click.Path(exists=True))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="HTML file to write [default: report.html beside the manifest].",
)
def report(manifest: str, output: str | None) -> int:
    """Write one self-contained HTML page about a run.

    MANIFEST is a manifest.json or a run's output folder. The page has the run's summary, a
    grid of images per step, each task's parameters, failures with their reasons, coins and
    timings, and a filter by parameter; images are linked by relative paths and nothing is
    fetched from the network, so the page can be opened from disk or kept as a CI artifact.

    \b
    Example:
      rhflow report out/sweep/manifest.json -o out/sweep/report.html
    """
    from rhflow.commands.report import report as write_page

    return write_page(manifest, output=output, report=click.echo)


@cli.command()
@click.argument("first", metavar="A", type=click.Path(exists=True))
@click.argument("second", metavar="B", type=click.Path(exists=True))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Also write an HTML page with the changed images side by side.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def diff(first: str, second: str, output: str | None, as_json: bool) -> int:
    """Compare two runs: tasks added, removed, unchanged or changed, with cost deltas.

    A and B are manifests (or output folders). Tasks are matched by step and parameters; a
    matched task is unchanged when it ended alike with the same output bytes, changed
    otherwise, with a perceptual difference figure per differing image. Exit 0 when nothing
    changed, 1 when something did, 2 when a manifest cannot be read.

    \b
    Examples:
      rhflow diff main/manifest.json pr/manifest.json
      rhflow diff out/a out/b --json
      rhflow diff out/a out/b -o diff.html
    """
    from rhflow.commands.diff import diff as compare_runs

    return compare_runs(first, second, output=output, as_json=as_json, report=click.echo)


# -- account / schema ------------------------------------------------------------------------


@cli.command()
@_api_options
@click.option("--json", "as_json", is_flag=True, help="Print the account as JSON.")
def account(**options: Any) -> int:
    """Show the key's balance, the tasks it has running now and its type.

    \b
    Example:
      RH_API_KEY=... rhflow account
      rhflow account --json
    """
    from rhflow.commands.account import account as show_account

    return show_account(**options)


@cli.command()
@click.argument(
    "name", required=False, default="pipeline", type=click.Choice(["pipeline", "manifest"])
)
def schema(name: str) -> int:
    """Print the JSON Schema of pipeline files (default) or of manifests.

    \b
    Examples:
      rhflow schema > pipeline.schema.json
      rhflow schema manifest
    """
    from rhflow.commands.schema import schema as print_schema

    return print_schema(name)


def _json_run(argv: list[str]) -> bool:
    """``rhflow run ... --json``: its stdout is never left empty, even for a bad option."""
    words = [a for a in argv if a not in ("-v", "--verbose")]  # -v stands before the command
    return bool(words) and words[0] == "run" and "--json" in words


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn RhflowError into ``Error: ...`` and an exit code."""
    try:
        result = cli.main(args=argv, prog_name="rhflow", standalone_mode=False)
    except RhflowError as err:
        click.echo(f"Error: {err}", err=True)
        return err.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as err:
        err.show()
        code = 2 if isinstance(err, click.UsageError) else err.exit_code
        if _json_run(sys.argv[1:] if argv is None else argv):
            from rhflow.progress import JsonReporter

            JsonReporter().emit(
                "run_error", code=code, kind="UsageError", message=err.format_message()
            )
        return code
    except click.exceptions.Exit as err:
        return err.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    return result if isinstance(result, int) else 0


def console() -> None:
    """The ``rhflow`` program (and ``python -m rhflow``): ``main``, then the process ends
    without the interpreter's teardown of every module and object, which took a tenth of a
    second and more after each command (CPU spent when nothing is left to do). What comes
    before that teardown is done first: threads joined, exit handlers run (logging's
    flush among them), output flushed. Tests call ``main``, which returns."""
    code = main()
    finish = getattr(threading, "_shutdown", None)  # joins threads as interpreter exit does
    if finish is None:  # pragma: no cover - another Python: the ordinary exit
        sys.exit(code)
    try:
        finish()
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed pipe, a closed stream
                stream.flush()
    except BaseException:  # interrupted on the way out: the ordinary exit
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    console()
