"""What a run will cost, from what earlier runs in the same output folder cost.

``estimate(graph)`` reads the manifests in the graph's output folder (``manifest.json`` and any
other manifest there, e.g. a shard's), takes per step the mean coins, the mean money (where an
enterprise key paid money) and the mean time of the tasks that succeeded, and multiplies by the
tasks still to run (a task that already succeeded
is skipped by a run, so it costs nothing). A step no earlier task of which succeeded has no
estimate; then neither has the total. Reads files only: no network.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rhflow.errors import StateError
from rhflow.model import TaskGraph
from rhflow.record.costs import money_text
from rhflow.record.manifest import Manifest, TaskEntry, read_manifest


@dataclass(frozen=True, slots=True)
class StepEstimate:
    """One step: tasks to run, tasks already done, and the means earlier tasks give."""

    step: str
    to_run: int
    done: int
    samples: int = 0
    coins_each: float | None = None
    seconds_each: float | None = None
    money_each: float | None = None  # None: no earlier task of the step was paid in money

    @property
    def coins(self) -> float | None:
        return None if self.coins_each is None else self.coins_each * self.to_run

    @property
    def money(self) -> float | None:
        return None if self.money_each is None else round(self.money_each * self.to_run, 6)

    @property
    def seconds(self) -> float | None:
        """Task-seconds (the sum of the tasks' own times)."""
        return None if self.seconds_each is None else self.seconds_each * self.to_run


@dataclass(frozen=True, slots=True)
class Estimate:
    """Per step and in total; ``sources`` are the manifests the figures come from."""

    steps: tuple[StepEstimate, ...]
    concurrency: int
    sources: tuple[Path, ...] = field(default=())
    currency: str | None = None  # of the money earlier tasks paid

    @property
    def paid_money(self) -> bool:
        """Some earlier task was paid in money: the estimate has a money figure."""
        return any(s.money_each is not None for s in self.steps)

    @property
    def money(self) -> float | None:
        """The money the run would pay (None without earlier money figures for every step
        that has tasks to run, or when no earlier task was paid in money)."""
        if not self.known or not self.paid_money:
            return None
        return round(sum(s.money or 0.0 for s in self.steps), 6)

    @property
    def known(self) -> bool:
        """Every step with tasks to run has a figure."""
        return all(s.coins_each is not None for s in self.steps if s.to_run)

    @property
    def coins(self) -> float | None:
        if not self.known:
            return None
        return sum(s.coins or 0.0 for s in self.steps)

    @property
    def seconds(self) -> float | None:
        """Wall time: the task-seconds shared by ``concurrency`` slots (steps that wait for
        others make it longer)."""
        if not all(s.seconds_each is not None for s in self.steps if s.to_run):
            return None
        return sum(s.seconds or 0.0 for s in self.steps) / max(1, self.concurrency)

    @property
    def basis(self) -> str:
        """How the estimate was made, in one sentence."""
        if not self.sources:
            return "no earlier manifest in the output folder to estimate from"
        samples = sum(s.samples for s in self.steps)
        names = ", ".join(_shown(p) for p in self.sources)
        what = "coins, money" if self.paid_money else "coins"
        text = f"mean {what} and time of {samples} earlier succeeded tasks per step, from {names}"
        missing = [s.step for s in self.steps if s.to_run and s.coins_each is None]
        if missing:
            text += f"; no earlier figures for step {', '.join(missing)}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "coins": self.coins,
            "money": self.money,
            "currency": self.currency,
            "seconds": self.seconds,
            "basis": self.basis,
            "steps": [
                {
                    "step": s.step,
                    "to_run": s.to_run,
                    "done": s.done,
                    "samples": s.samples,
                    "coins_each": s.coins_each,
                    "seconds_each": s.seconds_each,
                    "coins": s.coins,
                    "money_each": s.money_each,
                    "money": s.money,
                    "seconds": s.seconds,
                }
                for s in self.steps
            ],
        }

    def lines(self) -> list[str]:
        """A small table: per step and the total, with how it was made."""
        if not self.sources:
            return [f"Estimate: none ({self.basis})"]
        money = self.paid_money
        rows = [("STEP", "TO RUN", "DONE", "COINS", *(("MONEY",) if money else ()), "TIME")]
        for s in self.steps:
            wall = None if s.seconds is None else s.seconds / max(1, self.concurrency)
            paid = (self._money(s.money),) if money else ()
            rows.append((s.step, str(s.to_run), str(s.done), _coins(s.coins), *paid, _time(wall)))
        rows.append(("total", str(sum(s.to_run for s in self.steps)),
                     str(sum(s.done for s in self.steps)), _coins(self.coins),
                     *((self._money(self.money),) if money else ()),
                     _time(self.seconds)))  # fmt: skip
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        table = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
        return ["Estimate:", *table, f"({self.basis}; time with {self.concurrency} at a time)"]

    def _money(self, value: float | None) -> str:
        return "?" if value is None else money_text({self.currency or "": value})


def _shown(path: Path) -> str:
    """``path`` relative to the current folder when it is below it."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _coins(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:g} coins" if value != 1 else "1 coin"


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def earlier_manifests(folder: Path, *extra: Path) -> list[tuple[Path, Manifest]]:
    """The readable manifests in ``folder`` (and ``extra`` paths), in name order."""
    found: list[tuple[Path, Manifest]] = []
    paths = sorted({*folder.glob("*.json"), *(p for p in extra if p.is_file())})
    for path in paths:
        try:
            found.append((path, read_manifest(path)))
        except StateError:
            continue  # not a manifest (or not readable): nothing to learn from it
    return found


def estimate(graph: TaskGraph, *, force: bool = False, manifests: Iterable[Path] = ()) -> Estimate:
    """The estimate of running ``graph`` (every task again with ``force``)."""
    earlier = earlier_manifests(Path(graph.output_dir), *manifests)
    finished = list(
        {t.id: t for _, m in earlier for t in m.tasks if t.status == "succeeded"}.values()
    )
    done = set() if force else {t.id for t in finished}
    steps: list[StepEstimate] = []
    for step in dict.fromkeys(t.step for t in graph.tasks):
        ids = [t.id for t in graph.tasks if t.step == step]
        samples = [t for t in finished if t.step == step]
        to_run = sum(1 for i in ids if i not in done)
        steps.append(_step(step, to_run, len(ids) - to_run, samples))
    currencies = [t.currency for t in finished if t.money is not None and t.currency]
    currency = max(set(currencies), key=currencies.count) if currencies else None
    return Estimate(tuple(steps), graph.concurrency, tuple(p for p, _ in earlier), currency)


def _step(step: str, to_run: int, done: int, samples: list[TaskEntry]) -> StepEstimate:
    coins = [t.coins for t in samples if t.coins is not None]
    seconds = [s for t in samples if (s := t.duration or t.cost_time) is not None]
    money = [t.money for t in samples if t.money is not None]
    return StepEstimate(
        step,
        to_run,
        done,
        len(samples),
        statistics.fmean(coins) if coins else None,
        statistics.fmean(seconds) if seconds else None,
        statistics.fmean(money) if money else None,
    )
