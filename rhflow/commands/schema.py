"""``rhflow schema [pipeline|manifest]``: print a JSON Schema shipped with rhflow.

Editors and other tools read the schemas from here instead of a path into a checkout, e.g.
``rhflow schema pipeline > .vscode/rhflow.schema.json`` for the YAML language server.
"""

from __future__ import annotations

import click

from rhflow.pipeline.schema import schema_path


def schema(name: str) -> int:
    """Print the ``name`` schema exactly as shipped."""
    click.echo(schema_path(name).read_text(encoding="utf-8"), nl=False)
    return 0
