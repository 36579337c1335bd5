"""Compare py-spy samples of two worker runs (`bench/ingest_bench.py --py-spy DIR`).

Run: `.venv/bin/python bench/stacks.py A.txt B.txt [--rate 100] [--events N] [--top 40]`

Each file is py-spy's raw output (one line per stack: frames joined by `;`, then its sample
count). For every function (name and file, lines apart) it prints the samples that had it
on the stack (inclusive) in each run and the difference, largest first; with `--events` and
`--rate` the difference is also in µs of CPU per event (samples / rate / events). `--match`
keeps the functions whose name or file contains the text.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^():]*)(?::\d+)?\)$")


def function_of(frame: str) -> str:
    found = FRAME.match(frame)
    if found is None:
        return frame
    file = "/".join(Path(found["file"]).parts[-2:])
    return f"{found['name']} ({file})"


def inclusive(path: Path) -> tuple[Counter[str], int]:
    """Samples per function on the stack (counted once per stack), and all samples."""
    counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        for function in {function_of(frame) for frame in stack.split(";")}:
            counts[function] += count
    return counts, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--rate", type=float, default=100.0, help="samples per second")
    parser.add_argument("--events", type=int, help="events each run processed")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", default="")
    args = parser.parse_args()
    first, first_total = inclusive(args.first)
    second, second_total = inclusive(args.second)
    print(f"samples: {first_total} ({args.first.name}), {second_total} ({args.second.name})")
    functions = [f for f in set(first) | set(second) if args.match in f]
    ranked = sorted(functions, key=lambda f: -abs(first[f] - second[f]))[: args.top]
    print("| function | first | second | first - second | µs/event |")
    print("|---|---:|---:|---:|---:|")
    for function in ranked:
        diff = first[function] - second[function]
        per_event = "-"
        if args.events:
            per_event = f"{diff / args.rate / args.events * 1e6:,.1f}"
        print(f"| {function} | {first[function]} | {second[function]} | {diff} | {per_event} |")


if __name__ == "__main__":
    main()
