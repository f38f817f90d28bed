"""``rhflow plan``: expand a pipeline into its task graph, offline, and print it; where earlier
manifests in the output folder give figures, an estimate of coins and time too."""

from __future__ import annotations

from collections.abc import Iterable

import click

from rhflow.execute.estimate import estimate
from rhflow.pipeline.loader import load_pipeline
from rhflow.pipeline.lockfile import locked
from rhflow.pipeline.render import template_limits
from rhflow.planning.planner import MAX_TASKS
from rhflow.planning.planner import plan as plan_graph
from rhflow.planning.summary import plan_json_chunks, plan_table


def plan(
    file: str,
    *,
    set_vars: Iterable[str],
    limit: int | None,
    only: Iterable[str],
    as_json: bool,
    max_tasks: int = MAX_TASKS,
    template_limit: Iterable[str] = (),
) -> int:
    """Print the plan as a table (or JSON) and its warnings on stderr."""
    with template_limits(template_limit):
        pipeline = locked(load_pipeline(file, set_vars=set_vars))  # ids as a run makes them
        graph = plan_graph(pipeline, limit=limit, only=only, max_tasks=max_tasks)
    cost = estimate(graph)
    if as_json:
        extra = {"estimate": cost.to_dict()} if cost.sources else {}
        for chunk in plan_json_chunks(graph, extra=extra):  # written as it is made: a large
            click.echo(chunk, nl=False)  # plan is never held whole in memory
        click.echo()
    else:
        click.echo(plan_table(graph))
        if cost.sources:
            click.echo("\n" + "\n".join(cost.lines()))
    for warning in graph.warnings:
        click.echo(f"Warning: {warning}", err=True)
    return 0
