"""What the driver's state costs in Faust tables: changelog records per event and events/s.

Run (needs the local broker; creates and deletes its own `lethe-it-faststore-*` topics):
`.venv/bin/python bench/faust_store_bench.py [--events N] [--bootstrap HOST:PORT]`

Starts the in-process Faust app of `tests/integration/faust_harness.py` (RocksDB in a
temporary directory) and feeds change events to its agent, one Kafka record per event, the
events decoded beforehand (decoding is not timed). Reports:
- for the sample stream `docs/sample/hosting-6y.jsonl`: the records the driver over
  `FaustStore` sent to each changelog topic (`rows`, `subjects`, `locations`), per event;
- for a generated stream (`bench/engine_bench.py`'s mix, N events) on another partition:
  the same, and events/s inside the agent (first to last event handled) and the CPU time
  per event of the app's event-loop thread, for the agent doing nothing, the driver over
  `MemoryStore` and the driver over `FaustStore`.
One run, rough numbers: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.engine_bench import generate  # noqa: E402
from lethe.faust_store import LOCATIONS, ROWS, SUBJECTS, FaustStore  # noqa: E402
from lethe.policy_file import load_policy  # noqa: E402
from policy.decoding import decode_raw  # noqa: E402
from policy.driver import Driver  # noqa: E402
from policy.engine import Engine, next_due  # noqa: E402
from policy.events import ChangeEvent  # noqa: E402
from policy.simulation import decode_line  # noqa: E402
from policy.store import MemoryStore, Store  # noqa: E402
from tests.integration.faust_harness import FaustHarness  # noqa: E402

SAMPLE = ROOT / "docs" / "sample" / "hosting-6y.jsonl"
TABLES = (ROWS, SUBJECTS, LOCATIONS)


def changelog_ends(harness: FaustHarness, partition: int) -> dict[str, int]:
    asyncio.run_coroutine_threadsafe(harness.app.producer.flush(), harness.loop).result(60)
    consumer = Consumer({"bootstrap.servers": harness.bootstrap, "group.id": harness.app_id})
    try:
        ends = {}
        for table in TABLES:
            topic = f"{harness.app_id}-{table}-changelog"
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            ends[table] = int(high)
        return ends
    finally:
        consumer.close()


def timed_feed(
    harness: FaustHarness, events: list[ChangeEvent], step: Callable[[ChangeEvent], object], p: int
) -> tuple[float, float]:
    """Events/s inside the agent, from the first event handled to the last, and the CPU time
    per event (µs) of the app's event-loop thread (consumer, agent, tables and producer) over
    the same span: less sensitive to other processes on a shared machine."""
    first = last = first_cpu = last_cpu = 0.0
    seen = 0

    def handle(_: bytes) -> None:
        nonlocal first, last, first_cpu, last_cpu, seen
        if seen == 0:
            first, first_cpu = time.perf_counter(), time.thread_time()
        step(events[seen])
        seen += 1
        last, last_cpu = time.perf_counter(), time.thread_time()

    harness.feed((b"" for _ in events), handle, partition=p, timeout=900)
    spans = len(events) - 1
    return spans / (last - first), (last_cpu - first_cpu) / spans * 1e6


def driver_over(harness: FaustHarness, engine: Engine, store: Store, p: int) -> Driver:
    return harness.run(lambda: Driver(engine, store), partition=p)


def faust_store(harness: FaustHarness, engine: Engine) -> FaustStore:
    return FaustStore(harness.tables, lambda row, subject: next_due(engine, row, subject))


def report_changelog(name: str, before: dict[str, int], after: dict[str, int], n: int) -> None:
    sent = {table: after[table] - before[table] for table in TABLES}
    total = sum(sent.values())
    parts = ", ".join(f"{table} {count} ({count / n:.2f}/event)" for table, count in sent.items())
    print(f"{name}: {n} events, {total} changelog records = {total / n:.2f}/event: {parts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument(
        "--linger-ms", type=int, help="Faust's producer_linger (changelog batching; default 0)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger().setLevel(logging.WARNING)
    engine = Engine.compile(load_policy(ROOT / "config" / "policy.yaml"))

    sample = [decode_line(engine, line) for line in SAMPLE.read_text().splitlines() if line]
    sample_events = [event for event in sample if isinstance(event, ChangeEvent)]
    generated = [decode_raw(engine.decoding, *record) for record in generate(args.events)]
    generated_events = [event for event in generated if isinstance(event, ChangeEvent)]

    with tempfile.TemporaryDirectory() as datadir:
        options = {} if args.linger_ms is None else {"producer_linger": args.linger_ms / 1000}
        harness = FaustHarness(args.bootstrap, Path(datadir), **options)
        try:
            harness.start()
            before = changelog_ends(harness, 0)
            driver = driver_over(harness, engine, faust_store(harness, engine), 0)
            timed_feed(harness, sample_events, driver.feed, 0)
            report_changelog(SAMPLE.name, before, changelog_ends(harness, 0), len(sample_events))

            n = len(generated_events)
            bare = timed_feed(harness, generated_events, lambda event: None, 1)
            memory = driver_over(harness, engine, MemoryStore(), 1)
            in_memory = timed_feed(harness, generated_events, memory.feed, 1)
            before = changelog_ends(harness, 1)
            driver = driver_over(harness, engine, faust_store(harness, engine), 1)
            in_faust = timed_feed(harness, generated_events, driver.feed, 1)
            report_changelog(f"generated ({n})", before, changelog_ends(harness, 1), n)
            for name, (rate, cpu) in (
                ("agent doing nothing", bare),
                ("driver over MemoryStore", in_memory),
                ("driver over FaustStore", in_faust),
            ):
                print(f"{name:24s} {rate:8.0f} events/s, {cpu:6.0f} µs CPU/event (loop thread)")
        finally:
            harness.stop()


if __name__ == "__main__":
    main()
