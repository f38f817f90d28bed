"""Timing and selection policy, with fixed randomness: backoff, poll intervals, shards."""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
from pathlib import Path
from typing import Any

import pytest

from rhflow.errors import UsageError
from rhflow.execute.scheduling import (
    SPREAD_SHOWN,
    Backoff,
    PollPolicy,
    RunTimes,
    Seen,
    Shard,
    chain_keys,
    parse_shard,
    shard_tasks,
)
from rhflow.execute.watching import saturated
from rhflow.model import PlannedTask, Target, TaskGraph


def test_backoff_doubles_to_its_cap_and_jitter_spreads_it() -> None:
    policy = Backoff(base=1.0, factor=2.0, cap=10.0, jitter=0.5)
    middle = [policy.delay(n, lambda: 0.5) for n in range(6)]
    assert middle == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert policy.delay(2, lambda: 0.0) == 2.0  # 4 * (1 - 0.5)
    assert policy.delay(2, lambda: 0.999999) == pytest.approx(6.0, rel=1e-5)


def test_polling_starts_short_and_grows_to_a_cap_with_jitter() -> None:
    policy = PollPolicy(first=1.0, factor=1.5, cap=15.0, jitter=0.2)
    steady = [policy.interval(n, lambda: 0.5) for n in range(10)]
    assert steady[:3] == [1.0, 1.5, 2.25]
    assert all(b >= a for a, b in itertools.pairwise(steady))
    assert steady[-1] == 15.0
    assert policy.interval(0, lambda: 0.0) == pytest.approx(0.8)
    assert policy.interval(0, lambda: 0.999999) == pytest.approx(1.2, rel=1e-5)


def test_what_was_seen_puts_the_first_poll_where_a_quarter_of_the_tasks_had_ended() -> None:
    policy = PollPolicy(jitter=0.0, tail=0.1, spread=4.0, least=0.05, floor=0.1, late=0.25)
    seen = Seen(early=20.0, median=24.0, high=28.0, count=20)
    assert policy.step(seen) == 2.0  # a quarter of the 8 s spread, under 10% of the median
    assert policy.interval(0, lambda: 0.0, age=0.0, seen=seen) == 20.0  # the first quarter's end
    assert policy.interval(0, lambda: 1.0, age=0.0, seen=seen) == 21.0  # ... up to half a step on
    assert policy.interval(3, lambda: 0.5, age=25.0, seen=seen) == 2.0  # a step apart
    assert policy.interval(9, lambda: 0.5, age=40.0, seen=seen) == 3.0  # late: a quarter of it
    assert policy.interval(9, lambda: 0.5, age=200.0, seen=seen) == 15.0  # at most the cap


def test_the_step_stays_between_a_floor_and_a_tenth_of_the_run() -> None:
    policy = PollPolicy(tail=0.1, spread=4.0, least=0.05, floor=0.1, cap=15.0)
    assert policy.step(Seen(60.0, 60.0, 60.0, count=20)) == 3.0  # no spread: 5% of the run
    assert policy.step(Seen(30.0, 60.0, 90.0, count=20)) == 6.0  # a wide spread: 10% of it
    assert policy.step(Seen(0.5, 0.5, 0.5, count=20)) == 0.1  # the floor
    assert policy.step(Seen(100.0, 600.0, 1100.0, count=20)) == 15.0  # the cap
    # Until a few tasks have ended, their spread says little: a tenth of the run.
    assert policy.step(Seen(60.0, 60.0, 60.0, count=SPREAD_SHOWN - 1)) == 6.0


def _polls_until(policy: PollPolicy, duration: float, seen: Seen | None) -> tuple[int, float]:
    """Polls a task of ``duration`` seconds needs, on a fake clock, and how late the last is."""
    clock, polls = 0.0, 0
    while clock < duration:
        clock += policy.interval(polls, lambda: 0.5, age=clock, seen=seen)
        polls += 1
    return polls, clock - duration


@pytest.mark.parametrize("duration", [10.0, 20.0, 30.0, 120.0])
def test_a_simulated_task_is_noticed_sooner_than_by_a_fixed_5_s_poller(duration: float) -> None:
    policy = PollPolicy()
    fixed = -(-duration // 5)
    seen = Seen(duration * 0.9, duration, duration * 1.1)
    polls, late = _polls_until(policy, duration, seen)
    assert polls <= fixed + 1 and late <= 0.05 * duration
    # With nothing known yet (the first tasks of a step), short steps first: a 1 s task is
    # not left waiting for a 5 s poll; a long one costs fewer polls than the fixed poller.
    polls, late = _polls_until(policy, duration, None)
    assert polls <= max(fixed, 15) and late <= 0.5 * duration


def _learn(
    policy: PollPolicy, durations: list[float], rand: random.Random
) -> tuple[RunTimes, list[float], list[int]]:
    """Tasks of the given durations, polled one after another on a fake clock, each planned
    by what the earlier ones taught: the run times learned, each task's lag and polls."""
    times, lags, polls = RunTimes(), [], []
    for duration in durations:
        clock, pending, count = 0.0, None, 0
        while True:
            clock += policy.interval(count, rand.random, age=clock, seen=times.seen())
            count += 1
            if clock >= duration:
                break
            pending = clock
        times.add(0.0, pending, clock, policy=policy)
        lags.append(clock - duration)
        polls.append(count)
    return times, lags, polls


@pytest.mark.parametrize("duration", [1.0, 30.0])
def test_the_learned_run_time_does_not_include_the_time_to_notice_the_end(
    duration: float,
) -> None:
    times, lags, polls = _learn(PollPolicy(), [duration] * 200, random.Random(5))
    seen = times.seen()
    assert seen is not None and seen.median == pytest.approx(duration, rel=0.06)
    assert statistics.median(lags[20:]) <= 0.1 * duration
    assert statistics.mean(polls[20:]) <= 2


def test_ends_spread_by_the_queue_are_noticed_within_a_tenth_of_the_run_in_three_polls() -> None:
    # The emulator's default: queued 0.2-1.0 s, then running 1 s; so an end comes 1.2-2.0 s
    # after the create. Half of them are noticed within 0.1 s, for 3 polls a task at most
    # (with the create, 4 requests).
    rand = random.Random(11)
    durations = [rand.uniform(0.2, 1.0) + 1.0 for _ in range(400)]
    _, lags, polls = _learn(PollPolicy(), durations, rand)
    assert statistics.median(lags[40:]) <= 0.1
    assert statistics.mean(polls[40:]) <= 3.0


def test_a_socket_search_polls_before_the_earliest_end_then_in_steps_shorter_than_it() -> None:
    policy = PollPolicy(jitter=0.2, lead=0.9, socket_tail=0.5, tail_factor=1.3, floor=0.1)
    firsts = [policy.until_socket(0, lambda r=r: r, earliest=2.0) for r in (0.0, 0.5, 0.999)]
    assert max(firsts) == 1.8 and min(firsts) == pytest.approx(1.44, rel=1e-3)  # only earlier
    assert policy.until_socket(1, lambda: 0.5, earliest=2.0) == 1.0  # half the earliest
    assert policy.until_socket(2, lambda: 0.5, earliest=2.0) == pytest.approx(1.3)
    unknown = [policy.until_socket(n, lambda: 0.5) for n in range(3)]
    assert unknown == pytest.approx([0.25, 0.325, 0.4225])


def _socket_found(policy: PollPolicy, tasks: int, *, socket: bool) -> float:
    """Tasks queued 0.2-1.0 s then running 1 s, polled until an answer shows them running
    (their socket is offered then) or done, each planned by the run times of the earlier
    ones; the share whose socket was found before they ended."""
    rand = random.Random(3)
    times, found = RunTimes(), 0
    for _ in range(tasks):
        queued = rand.uniform(0.2, 1.0)
        ends = queued + 1.0
        clock, count = 0.0, 0
        while clock < queued:
            if socket:
                clock += policy.until_socket(count, rand.random, earliest=times.earliest())
            else:
                clock += policy.interval(count, rand.random, age=clock, seen=times.seen())
            count += 1
        found += clock < ends
        times.add(0.0, ends, ends, policy=policy)  # the socket (or a poll) saw it as it came
    return found / tasks


def test_a_queued_task_is_asked_for_its_socket_while_it_runs_not_after_it_ended() -> None:
    # Planned as a polled task's end (90% of the median run time), the first poll of a task
    # queued for a short time comes after it ended: its end is noticed late.
    assert _socket_found(PollPolicy(), 300, socket=False) < 0.8
    assert _socket_found(PollPolicy(), 300, socket=True) == 1.0


def test_a_saturated_loop_polls_queued_tasks_for_their_end_not_their_socket() -> None:
    # K=500 C=50 T=1 s: sleeps woke about 1 ms late; K=5000 C=200: about 50 ms (one core of
    # CPU was not enough), when an early socket no longer brought the end sooner.
    assert not saturated(0.001, 1.2)
    assert saturated(0.05, 1.2)
    assert not saturated(10.0, None)  # nothing known yet: the socket search as usual


def test_scaled_divides_every_duration() -> None:
    quick = PollPolicy().scaled(20)
    assert quick.first == 0.025 and quick.cap == 0.75 and quick.longest_first == 6.0
    assert quick.floor == pytest.approx(0.005)
    assert quick.socket_first == pytest.approx(0.0125)
    assert quick.factor == PollPolicy().factor


@pytest.mark.parametrize("text", ["2/4", "1/1", "4/4"])
def test_parse_shard_accepts_i_of_n(text: str) -> None:
    index, count = map(int, text.split("/"))
    assert parse_shard(text) == Shard(index, count)
    assert str(parse_shard(text)) == text


@pytest.mark.parametrize("text", ["0/4", "5/4", "2", "a/b", "1/0", "-1/2"])
def test_parse_shard_rejects_anything_else(text: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_shard(text)
    assert str(err.value) == (
        f"--shard {text!r} is not valid: write I/N with 1 <= I <= N, e.g. --shard 2/4"
    )


def _task(task_id: str, needs: dict[str, str] | None = None) -> PlannedTask:
    return PlannedTask(
        id=task_id,
        step="down" if needs else "gen",
        params={},
        target=Target("workflow", "1"),
        node_info_list=(),
        needs=needs or {},
    )


def _graph(tasks: list[PlannedTask]) -> TaskGraph:
    return TaskGraph("p", "h", Path("p.yaml"), Path("out"), 2, tuple(tasks))


def test_shards_partition_the_tasks_and_keep_chains_together() -> None:
    roots = [_task(f"root{i}") for i in range(40)]
    chained = [_task(f"down{i}", {"gen": f"root{i}"}) for i in range(40)]
    graph = _graph(roots + chained)
    shares = [shard_tasks(graph, Shard(i, 3)) for i in (1, 2, 3)]
    ids = [t.id for share in shares for t in share.tasks]
    assert sorted(ids) == sorted(t.id for t in graph.tasks)  # every task exactly once
    assert all(share.tasks for share in shares)  # 40 chains spread over 3 shares
    for share in shares:
        kept = {t.id for t in share.tasks}
        assert all(up in kept for t in share.tasks for up in t.upstream_ids)


def test_adding_a_task_does_not_move_the_others() -> None:
    tasks = [_task(f"root{i}") for i in range(30)]
    before = {t.id: i for i in (1, 2, 3, 4) for t in shard_tasks(_graph(tasks), Shard(i, 4)).tasks}
    grown = [*tasks, _task("new-root")]
    after = {t.id: i for i in (1, 2, 3, 4) for t in shard_tasks(_graph(grown), Shard(i, 4)).tasks}
    assert all(after[k] == v for k, v in before.items())


def test_a_task_with_two_upstreams_joins_their_chains() -> None:
    tasks = [_task("a"), _task("b"), _task("c", {"x": "a", "y": "b"}), _task("d", {"z": "c"})]
    keys = chain_keys(tasks)
    assert keys == {"a": "a", "b": "a", "c": "a", "d": "a"}


def _live(task_id: str, needs: dict[str, str] | None = None, mode: str = "fresh") -> Any:
    from rhflow.execute.lineup import Live
    from rhflow.record.store import TaskRecord

    status = "succeeded" if mode == "done" else "pending"
    return Live(_task(task_id, needs), TaskRecord(task_id, "gen", status), mode=mode)


def _lineup(*lives: Any) -> Any:
    from rhflow.execute.lineup import Lineup

    line = Lineup()
    for live in lives:
        line.add(live, line.done)
    line.start()
    return line


async def _take(line: Any, n: int) -> list[str]:
    return [(await line.next(lambda: False)).task.id for _ in range(n)]


def test_the_line_runs_a_chain_before_the_next_root_and_resumed_tasks_first() -> None:
    import asyncio

    line = _lineup(_live("a"), _live("b"), _live("c", mode="follow"), _live("a2", {"gen": "a"}))
    assert asyncio.run(_take(line, 2)) == ["c", "a"]
    line.ended("a", succeeded=True)
    assert asyncio.run(_take(line, 2)) == ["a2", "b"]
    for task_id in ("c", "a2", "b"):
        line.ended(task_id, succeeded=True)
    assert line.remaining == 0
    assert asyncio.run(line.next(lambda: False)) is None


def test_a_failure_drops_everything_downstream_and_skips_done_upstreams() -> None:
    import asyncio

    line = _lineup(
        _live("root0", mode="done"),
        _live("x", {"gen": "root0"}),
        _live("a"),
        _live("b", {"gen": "a"}),
        _live("c", {"gen": "b"}),
        _live("orphan", {"gen": "missing"}),
    )
    assert line.remaining == 5
    assert asyncio.run(_take(line, 2)) == ["x", "a"]  # x's upstream was done before
    dropped = line.ended("a", succeeded=False)
    assert [live.task.id for live in dropped] == ["b", "c"]
    assert [(live.task.id, up) for live, up in line.stuck()] == [("orphan", "missing")]
    assert [live.task.id for live in line.drop_downstream("missing")] == ["orphan"]
    line.ended("x", succeeded=True)
    assert line.remaining == 0


def test_a_task_polled_with_nothing_known_wakes_when_its_step_learns_a_run_time() -> None:
    # The first tasks of a step poll on a growing schedule; the first end seen tells the
    # others where to look, so they plan their next poll by it at once, not after their wait.
    from types import SimpleNamespace

    from rhflow.execute.scheduling import ExecuteOptions
    from rhflow.execute.watching import Watcher

    remote = SimpleNamespace(options=ExecuteOptions())
    watcher = Watcher(remote, store=None, journal=None)  # type: ignore[arg-type]

    async def scenario() -> tuple[bool, bool]:
        waiting = asyncio.ensure_future(watcher._news("gen", 30.0))
        other_step = asyncio.ensure_future(watcher._news("upscale", 0.05))
        await asyncio.sleep(0)
        watcher._learn("gen", started=0.0, pending=None)
        return await waiting, await other_step

    woke, other = asyncio.run(scenario())
    assert woke and not other
    seen = watcher._times("gen").seen()
    assert seen is not None and seen.count == 1
