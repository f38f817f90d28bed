"""``rhflow lock``: write ``rhflow.lock`` beside pipeline files, then report each entry."""

from __future__ import annotations

from collections.abc import Sequence

import click

from rhflow.api.client import Client
from rhflow.execute.locking import update_lock
from rhflow.pipeline.loader import load_pipeline


def lock(files: Sequence[str], *, update: bool, api_key: str | None, base_url: str | None) -> int:
    """Fetch each workflow and AI app of ``files`` and write their hashes to the lock."""
    pipelines = [load_pipeline(file) for file in files]  # an invalid file: nothing fetched
    with Client.from_env(api_key=api_key, base_url=base_url) as client:
        result = update_lock(pipelines, client, server=client.base_url, update=update)
    for line in result.lines:
        click.echo(line)
    click.echo(f"wrote {result.lock.path} ({len(result.lock.entries)} entries)")
    return 0
