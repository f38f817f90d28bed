"""Where rhflow's time goes: ``rhflow run`` of a sweep under py-spy (``pip install
'rhflow[bench]'``), against an emulator started here, sampled only while a thread holds the
GIL; prints the functions with the largest share, self and inclusive.

    python -m benchmarks.profile 5000 200 1      # K tasks, C at once, T seconds each
    python -m benchmarks.profile 500 50 1 --no-websocket
"""

from __future__ import annotations

import argparse
import collections
import tempfile
from pathlib import Path

from benchmarks import harness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tasks", type=int)
    parser.add_argument("concurrency", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--no-websocket", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    extra = ["--no-websocket"] if args.no_websocket else []
    with (
        harness.emulator(args.seconds, args.concurrency) as emu,
        tempfile.TemporaryDirectory(prefix="rhflow-profile-") as tmp,
    ):
        folder = Path(tmp)
        pipeline = harness.sweep_pipeline(folder, args.tasks, args.concurrency)
        run = harness.rhflow("run", str(pipeline), "--json", "--base-url", emu.url, *extra)
        raw = folder / "samples.txt"
        spy = ["py-spy", "record", "--gil", "--rate", "200", "--format", "raw", "-o", str(raw)]
        proc = harness.run_child([*spy, "--", *run], stdout=folder / "events.jsonl", cwd=folder)
        stacks = collections.Counter()
        for line in raw.read_text(encoding="utf-8").splitlines():
            stack, _, count = line.rpartition(" ")
            stacks[stack] += int(count)
    print(f"wall {proc.wall:.1f} s, CPU {proc.cpu:.1f} s (py-spy included)")
    report(stacks, args.top)


def report(stacks: collections.Counter[str], top: int) -> None:
    total = sum(stacks.values()) or 1
    own: collections.Counter[str] = collections.Counter()
    within: collections.Counter[str] = collections.Counter()
    for stack, count in stacks.items():
        frames = stack.split(";")
        own[frames[-1]] += count
        for frame in set(frames):
            within[frame] += count
    print(f"{total} samples with the GIL held\n-- self")
    for frame, count in own.most_common(top):
        print(f"{100 * count / total:5.1f}%  {frame}")
    print("-- inclusive, rhflow's functions")
    shown = [(f, n) for f, n in within.most_common() if "rhflow/" in f and "emulator" not in f]
    for frame, count in shown[:top]:
        print(f"{100 * count / total:5.1f}%  {frame}")


if __name__ == "__main__":
    main()
