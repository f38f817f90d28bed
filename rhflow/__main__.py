"""``python -m rhflow`` runs the command line."""

from rhflow.cli import main

raise SystemExit(main())
