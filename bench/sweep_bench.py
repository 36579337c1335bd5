"""Sweep cost (issue 7, bench b): 1,000 rows due among 10^4, 10^5 and 10^6 tracked rows.

Builds, for each size, a driver over the in-memory store (`policy.store.MemoryStore`, the
same `DueIndex` heap `lethe.faust_store.FaustStore` keeps per partition) holding that many
connection logs of the default policy, 1,000 of them due at the sweep instant and the rest
a year later, then times one `Driver.advance` to the sweep instant (best and median of
`--rounds`, each on a freshly built driver) and prints a table with the ratio to the
smallest size. This measures the due index and the engine's work per due row, not Kafka:
the worker's sweep adds one changelog record per issued row and the commands' delivery.

    .venv/bin/python bench/sweep_bench.py [--sizes 10000 100000 1000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lethe.policy_file import load_policy  # noqa: E402
from policy.driver import Driver  # noqa: E402
from policy.engine import Engine  # noqa: E402
from policy.events import ChangeEvent, Op  # noqa: E402
from policy.instants import parse_instant, to_datetime  # noqa: E402
from policy.store import MemoryStore  # noqa: E402

DUE = 1_000
TABLE = "public.connection_logs"
SWEEP_AT = parse_instant("2026-06-01T00:00:00Z")
DAY_US = 86_400_000_000
YEAR_US = 366 * DAY_US


def build(engine: Engine, size: int) -> Driver:
    """A driver tracking `size` connection logs; the first DUE fall due at SWEEP_AT."""
    driver = Driver(engine, MemoryStore())
    logged_due = SWEEP_AT - YEAR_US  # connection_log_retention: P1Y
    seen_at = SWEEP_AT - 2 * DAY_US
    for row in range(size):
        logged = logged_due if row < DUE else logged_due + YEAR_US
        event = ChangeEvent(
            table=TABLE,
            op=Op.CREATE,
            key=(("id", row),),
            before=None,
            after={"id": row, "customer_id": row % 50_000, "logged_at": to_datetime(logged)},
            ts=seen_at,
        )
        driver.feed(event)
    return driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    engine = Engine.compile(load_policy(ROOT / "config" / "policy.yaml"))
    rows: list[tuple[int, float, float, int]] = []
    for size in args.sizes:
        times = []
        issued = 0
        for _ in range(args.rounds):
            driver = build(engine, size)
            started = time.perf_counter()
            commands = driver.advance(SWEEP_AT).commands
            times.append(time.perf_counter() - started)
            issued = len(commands)
            del driver
        rows.append((size, min(times), statistics.median(times), issued))
    base = rows[0][2]
    print(f"nproc {os.cpu_count()}, {args.rounds} rounds, {DUE} rows due per sweep")
    print(
        f"{'tracked rows':>12} {'best ms':>9} {'median ms':>10} {'vs smallest':>12} {'issued':>7}"
    )
    for size, best, median, issued in rows:
        print(
            f"{size:>12,} {best * 1000:>9.2f} {median * 1000:>10.2f} "
            f"{median / base:>11.2f}x {issued:>7}"
        )


if __name__ == "__main__":
    main()
