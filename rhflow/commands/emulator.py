"""``rhflow emulator``: serve the RunningHub emulator on loopback until stopped."""

from __future__ import annotations

from typing import Any

import click

from rhflow.emulator import EmulatorConfig, serve


def emulator(**options: Any) -> None:
    """Serve an emulator configured from the command line's options."""
    config = EmulatorConfig.from_cli(**options)
    serve(config, ready=lambda url: click.echo(f"RunningHub emulator listening on {url}"))
