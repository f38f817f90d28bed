"""Two runs compared task by task: what was added, removed, unchanged or changed, and by how much.

Tasks are matched by step and parameters (not by task id, which changes with any edit of the
pipeline). A matched pair is unchanged when both ended alike with the same output bytes (sha256),
changed otherwise; each image output that differs gets a perceptual difference figure (0 = same
pixels, 1 = black against white; :func:`rhflow.view.images.difference`). Coins and durations are
compared per task and in total.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rhflow.record.costs import amount_text, money_amount, money_totals
from rhflow.record.manifest import Manifest, TaskEntry
from rhflow.view import images
from rhflow.view.grid import show, value_key

KINDS = ("changed", "added", "removed", "unchanged")


@dataclass(frozen=True, slots=True)
class ImagePair:
    """One output that differs: where it is in each run and how different it looks."""

    index: int
    a: Path | None
    b: Path | None
    difference: float | None


@dataclass(frozen=True, slots=True)
class TaskChange:
    kind: str  # one of KINDS
    step: str
    params: Mapping[str, Any]
    a: TaskEntry | None
    b: TaskEntry | None
    reasons: tuple[str, ...] = ()
    images: tuple[ImagePair, ...] = ()

    @property
    def difference(self) -> float | None:
        """The largest perceptual difference of the task's images, where one was measured."""
        known = [p.difference for p in self.images if p.difference is not None]
        return max(known) if known else None

    @property
    def coins_delta(self) -> float | None:
        return _delta(self.a.coins if self.a else None, self.b.coins if self.b else None)

    @property
    def duration_delta(self) -> float | None:
        return _delta(self.a.duration if self.a else None, self.b.duration if self.b else None)

    def title(self) -> str:
        params = ", ".join(f"{k}={show(v)}" for k, v in self.params.items())
        return f"{self.step} [{params}]" if params else self.step

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "step": self.step,
            "params": dict(self.params),
            "a": self.a.id if self.a else None,
            "b": self.b.id if self.b else None,
            "status": [self.a.status if self.a else None, self.b.status if self.b else None],
            "reasons": list(self.reasons),
            "difference": self.difference,
            "images": [
                {"index": p.index, "a": _posix(p.a), "b": _posix(p.b), "difference": p.difference}
                for p in self.images
            ],
            "coins_delta": self.coins_delta,
            "duration_delta": self.duration_delta,
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    """Every task of two runs, matched."""

    a: Path
    b: Path
    pipelines: tuple[str, str]
    tasks: tuple[TaskChange, ...]
    totals: Mapping[str, tuple[float, float]]  # coins, duration (and money, if paid): (A, B)
    currency: str = ""  # of the money, where some task was paid in money

    @property
    def changed(self) -> bool:
        """Whether anything differs: a task added, removed or changed."""
        return any(t.kind != "unchanged" for t in self.tasks)

    def count(self, kind: str) -> int:
        return sum(1 for t in self.tasks if t.kind == kind)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": str(self.a),
            "b": str(self.b),
            "pipelines": list(self.pipelines),
            "changed": self.changed,
            "counts": {kind: self.count(kind) for kind in KINDS},
            "totals": {
                k: {"a": a, "b": b, "delta": round(b - a, 6)} for k, (a, b) in self.totals.items()
            },
            "tasks": [t.to_dict() for t in self.tasks],
        }


def compare(a: Manifest, a_path: Path, b: Manifest, b_path: Path) -> Comparison:
    """Match the tasks of run ``a`` (read from ``a_path``) with those of run ``b``."""
    left, right = _by_key(a.tasks), _by_key(b.tasks)
    paid = (money_totals(a.tasks), money_totals(b.tasks))  # enterprise keys pay money
    changes = [
        _compare_pair(left.get(key), right.get(key), a_path.parent, b_path.parent)
        for key in dict.fromkeys([*left, *right])
    ]
    order = {kind: n for n, kind in enumerate(KINDS)}
    return Comparison(
        a=a_path,
        b=b_path,
        pipelines=(a.pipeline, b.pipeline),
        tasks=tuple(sorted(changes, key=lambda c: order[c.kind])),
        totals={
            "coins": (_sum(a.tasks, "coins"), _sum(b.tasks, "coins")),
            "duration": (_sum(a.tasks, "duration"), _sum(b.tasks, "duration")),
            **({"money": (money_amount(paid[0]), money_amount(paid[1]))} if any(paid) else {}),
        },
        currency=next(iter({**paid[0], **paid[1]}), ""),
    )


def _by_key(tasks: tuple[TaskEntry, ...]) -> dict[tuple[str, str, int], TaskEntry]:
    """Tasks keyed by step and parameters (and their rank, should two tasks share both)."""
    keyed: dict[tuple[str, str, int], TaskEntry] = {}
    for task in tasks:
        params = value_key(dict(task.params))
        rank = 0
        while (task.step, params, rank) in keyed:
            rank += 1
        keyed[(task.step, params, rank)] = task
    return keyed


def _compare_pair(
    a: TaskEntry | None, b: TaskEntry | None, a_base: Path, b_base: Path
) -> TaskChange:
    task = a or b
    assert task is not None
    if a is None or b is None:
        return TaskChange("added" if a is None else "removed", task.step, task.params, a, b)
    reasons: list[str] = []
    if a.status != b.status:
        reasons.append(f"status {a.status} -> {b.status}")
    if len(a.outputs) != len(b.outputs):
        reasons.append(f"{len(a.outputs)} outputs -> {len(b.outputs)}")
    pairs = []
    for index, (left, right) in enumerate(zip(a.outputs, b.outputs, strict=False)):
        if left.sha256 == right.sha256:
            continue
        first = a_base / left.path if left.path else None
        second = b_base / right.path if right.path else None
        figure = None
        if first and second and images.is_image(left.path) and images.is_image(right.path):
            figure = images.difference(first, second)
        pairs.append(ImagePair(index, first, second, figure))
        what = "differs" if figure is None else f"differs by {figure:.1%} (perceptual)"
        reasons.append(f"output {index} {what}")
    kind = "changed" if reasons else "unchanged"
    return TaskChange(kind, task.step, task.params, a, b, tuple(reasons), tuple(pairs))


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(b - a, 6)


def _sum(tasks: tuple[TaskEntry, ...], name: str) -> float:
    return round(sum(getattr(t, name) or 0.0 for t in tasks), 6)


def _posix(path: Path | None) -> str | None:
    return None if path is None else path.as_posix()


def summary_lines(comparison: Comparison) -> list[str]:
    """The text ``rhflow diff`` prints: one line per task that differs, then the totals."""
    lines = []
    for change in comparison.tasks:
        if change.kind == "unchanged":
            continue
        detail = "; ".join(change.reasons)
        deltas = _deltas(change)
        text = f"{change.kind:<9} {change.title()}"
        lines.append(text + (f": {detail}" if detail else "") + (f" ({deltas})" if deltas else ""))
    counts = ", ".join(f"{comparison.count(k)} {k}" for k in KINDS)
    coins_a, coins_b = comparison.totals["coins"]
    time_a, time_b = comparison.totals["duration"]
    money = ""
    if "money" in comparison.totals:
        money_a, money_b = comparison.totals["money"]
        unit = comparison.currency or "money"
        money = (
            f"; money {amount_text(money_a)} -> {amount_text(money_b)} "
            f"({'+' if money_b >= money_a else '-'}{amount_text(abs(money_b - money_a))} {unit})"
        )
    lines.append(
        f"{len(comparison.tasks)} tasks: {counts}; coins {coins_a:g} -> {coins_b:g} "
        f"({_signed(coins_b - coins_a, 'g')}){money}; task seconds {time_a:.1f} -> "
        f"{time_b:.1f} ({_signed(time_b - time_a, '.1f')})"
    )
    return lines


def _deltas(change: TaskChange) -> str:
    parts = []
    if change.coins_delta:
        parts.append(f"coins {_signed(change.coins_delta, 'g')}")
    if change.duration_delta is not None:
        parts.append(f"duration {_signed(change.duration_delta, '.1f')} s")
    return ", ".join(parts)


def _signed(value: float, spec: str) -> str:
    """``value`` with its sign, and no ``-0.0`` for a delta that rounds to nothing."""
    text = format(value, "+" + spec)
    return text.replace("-", "+", 1) if float(text) == 0 else text
