"""``python -m rhflow`` runs the command line."""

from rhflow.cli import console

console()
