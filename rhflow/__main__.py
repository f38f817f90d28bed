"""``python -m rhflow`` and the ``rhflow`` program: the command line.

The command line's own modules (click and the rest) are imported here, inside a guard: Ctrl-C
while they load (a slow start on a loaded machine) ends as any other interrupt does, with
``Interrupted.`` and exit code 130, not a traceback.
"""

from __future__ import annotations

import sys


def console() -> None:
    try:
        from rhflow.cli import console as run
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        raise SystemExit(130) from None
    run()


if __name__ == "__main__":
    console()
