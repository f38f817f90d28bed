"""``rhflow`` in a subprocess under a memory limit and a timeout, for the bad-input suites: an
unbounded computation shows as a MemoryError traceback or a TimeoutExpired, not a stuck test."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def rhflow(
    *args: str, cwd: Path, timeout: float, memory: int = 200 << 20
) -> subprocess.CompletedProcess[str]:
    """Run this tree's ``rhflow ARGS`` in ``cwd`` with at most ``memory`` bytes of address space."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", "rhflow", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
    )
