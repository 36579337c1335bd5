"""What a census costs per row: `policy.census.take_census` over a driver's rows, as the
enforcer takes it every LETHE_CENSUS_INTERVAL seconds per partition.

Run: `.venv/bin/python bench/census_bench.py [--events N]`

Feeds `bench/engine_bench.py`'s generated mix (N events, the shipped policy) to a driver over
a `MemoryStore`, serialises its row and subject states as the worker keeps them in RocksDB,
then times, best of 5: decoding every row state (`RowState.from_bytes`, as
`FaustStore.states_after` does; the RocksDB scan itself is not included) and the census over them,
and prints microseconds per row. One run, rough numbers: the machine is shared.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.engine_bench import generate  # noqa: E402
from lethe.policy_file import load_policy  # noqa: E402
from policy.census import take_census  # noqa: E402
from policy.decoding import decode_raw  # noqa: E402
from policy.driver import Driver  # noqa: E402
from policy.engine import Engine  # noqa: E402
from policy.events import ChangeEvent  # noqa: E402
from policy.state import RowState, SubjectState  # noqa: E402
from policy.store import MemoryStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    args = parser.parse_args()
    engine = Engine.compile(load_policy(ROOT / "config" / "policy.yaml"))
    store = MemoryStore()
    driver = Driver(engine, store)
    clock = 0
    for topic, key, value in generate(args.events):
        event = decode_raw(engine.decoding, topic, key, value)
        if isinstance(event, ChangeEvent):
            driver.feed(event)
            clock = max(clock, event.ts)
    rows = []
    for row_id in store.row_ids():
        row = store.row(row_id)
        assert row is not None
        rows.append(row.to_bytes())
    subjects = {key: state.to_bytes() for key in store.subjects()
                if (state := store.subject(key)) is not None}  # fmt: skip

    def census() -> None:
        decoded_subjects: dict[str, SubjectState | None] = {}

        def states():  # type: ignore[no-untyped-def]
            for data in rows:
                row = RowState.from_bytes(data)
                subject = None
                if row.subject is not None:
                    if row.subject not in decoded_subjects:
                        raw = subjects.get(row.subject)
                        decoded_subjects[row.subject] = (
                            None if raw is None else SubjectState.from_bytes(raw)
                        )
                    subject = decoded_subjects[row.subject]
                yield row, subject

        take_census(engine, states(), (SubjectState.from_bytes(s) for s in subjects.values()),
                    clock)  # fmt: skip

    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        census()
        best = min(best, time.perf_counter() - started)
    print(f"{len(rows):,} rows, {len(subjects):,} subjects: census in {best * 1000:.0f} ms, "
          f"{best / len(rows) * 1e6:.2f} µs per row (best of 5)")  # fmt: skip


if __name__ == "__main__":
    main()
