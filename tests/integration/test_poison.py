"""Row 5 of the fault matrix: 10,000 malformed records mixed into change topics between good
Debezium records, on the real stack.

The run has tables of its own (`provisioned` of test_enforce: copies of demo tables named
`poison_it_<run>_<table>`, their change topics, a policy naming only them). The test writes,
in one seeded random order, into three of the run's change topics: 10,000 malformed records
of every kind `tests/poison.py` makes (two of them too large for a dead letter's raw copy),
and 280 good change records (creates of connection logs and surveys, half of them overdue,
and deletes of recent rows with their tombstones). One worker (wall clock, enforcing on the
run's own tables) reads them. Then:
- the worker is still running, and its /metrics answers;
- `lethe.deadletter` holds exactly one dead letter per malformed record: its topic,
  partition and offset, each once (10,000), with the reason tests/poison.py wrote for it;
  the two oversized ones without their raw value, saying why;
- `lethe_dead_letters_total` counts them by topic;
- `lethe_change_events_total` counts every good record, by table and op;
- `lethe_rows_tracked` shows the rows left after the deletes;
- `lethe.commands` carries for the run's tables exactly the commands `lethe simulate` gives
  over the good records alone.
The time from the first record produced to the last dead letter is printed (docs/reliability.md).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from lethe.settings import Settings
from tests import poison
from tests.integration import test_enforce, workers
from tests.integration.workers import (
    Reader,
    WorkerProcess,
    quiet,
    serving,
    topic_ends,
    wait_for,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
APP_ID_PREFIX = "poison-it-"
SEED = 20261130
MALFORMED = 10_000
OVERSIZED = 2
GOOD_ROWS = 100
"""Good rows per table with good records (connection logs, surveys)."""
DELETED = 20
"""Of those, rows deleted (a `d` record and its tombstone) after their create."""
DEADLETTER_TOPIC = "lethe.deadletter"
POISONED = {
    "connection_logs": poison.CONNECTION_LOGS,
    "satisfaction_surveys": poison.SATISFACTION_SURVEYS,
    "support_tickets": poison.SUPPORT_TICKETS,
}


class PoisonRun(test_enforce.Run):
    """test_enforce's run, its tables named `poison_it_<run>_<table>` (this branch's prefix;
    `drop_run` still finds them by `it_<run>_`)."""

    def table(self, kind: str) -> str:
        return f"poison_it_{self.run}_{kind}"


@pytest.fixture(scope="module")
def run(real_stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoisonRun]:
    with test_enforce.provisioned(
        real_stack, APP_ID_PREFIX, tmp_path_factory.mktemp("poison"), PoisonRun
    ) as run:
        assert isinstance(run, PoisonRun)
        yield run


@pytest.fixture(scope="module")
def worker(real_stack: Settings, run: PoisonRun) -> Iterator[WorkerProcess]:
    handle = workers.start_worker(
        run.app_id,
        run.workdir,
        run.policy,
        env={"LETHE_INTERNAL_PARTITIONS": "2", "LETHE_CENSUS_INTERVAL": "2"},
    )
    with serving(handle):
        yield handle


Record = tuple[str, bytes | None, bytes | None, str | None]
"""(table kind, key, value, the dead-letter reason it must get; None for a good record)."""


def good_records(rng: random.Random, now_ms: int) -> list[Record]:
    """Per table with good records, GOOD_ROWS creates (even ids overdue, odd ones recent), and
    for DELETED of the recent ones a delete and its tombstone after the create. (An overdue
    row deleted right after its create may get its command or not, depending on whether a
    sweep came between: `lethe simulate` cannot say which.)"""
    recent = datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    by_table: dict[str, list[Record]] = {}
    for kind, at in (
        ("connection_logs", "2024-06-15T08:30:00Z"),
        ("satisfaction_surveys", "2024-03-17T10:20:30Z"),
    ):
        source = POISONED[kind]
        records: list[Record] = []
        for row_id in range(1, GOOD_ROWS + 1):
            row = poison.good_row(
                source, row_id, 987_660_000 + row_id, recent if row_id % 2 else at
            )
            key = orjson.dumps({source.key: row_id})
            records.append((kind, key, orjson.dumps(poison.envelope("c", None, row, now_ms)), None))
        for row_id in rng.sample(range(1, GOOD_ROWS + 1, 2), DELETED):  # recent rows only
            row = poison.good_row(
                source, row_id, 987_660_000 + row_id, recent if row_id % 2 else at
            )
            key = orjson.dumps({source.key: row_id})
            delete = poison.envelope("d", row, None, now_ms + 1)
            records += [(kind, key, orjson.dumps(delete), None), (kind, key, None, None)]
        by_table[kind] = records
    return [record for records in by_table.values() for record in records]


def mixed(rng: random.Random, now_ms: int) -> list[Record]:
    """The good records in their order per table, the malformed ones spread between them at
    random (MALFORMED over the three tables, OVERSIZED of them too large to dead-letter raw)."""
    bad: list[Record] = []
    kinds = sorted(POISONED)
    counts = [MALFORMED // 3, MALFORMED // 3, MALFORMED - 2 * (MALFORMED // 3)]
    for kind, count in zip(kinds, counts, strict=True):
        for record in poison.malformed(
            rng, POISONED[kind], count, now_ms, OVERSIZED if kind == kinds[0] else 0
        ):
            bad.append((kind, record.key, record.value, record.reason))
    rng.shuffle(bad)
    good = good_records(rng, now_ms)
    slots = sorted(rng.sample(range(len(good) + len(bad)), len(good)))
    merged: list[Record] = []
    good_iter, bad_iter = iter(good), iter(bad)
    for index in range(len(good) + len(bad)):
        merged.append(next(good_iter) if slots and index == slots[0] else next(bad_iter))
        if slots and index == slots[0]:
            slots.pop(0)
    return merged


def produce_all(
    settings: Settings, run: PoisonRun, records: list[Record]
) -> list[tuple[str, int, int]]:
    """Produce `records` in order; return each one's (topic, partition, offset)."""
    producer = Producer({**quiet(settings), "linger.ms": 20, "enable.idempotence": True})
    placed: list[tuple[str, int, int] | None] = [None] * len(records)

    def delivered(index: int) -> Any:
        def report(err: object, msg: Any) -> None:
            assert err is None, f"produce failed: {err}"
            placed[index] = (msg.topic(), msg.partition(), msg.offset())

        return report

    for index, (kind, key, value, _) in enumerate(records):
        while True:
            try:
                producer.produce(
                    run.topic(kind), key=key, value=value, on_delivery=delivered(index)
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0, "records left unsent"
    assert all(place is not None for place in placed)
    return [place for place in placed if place is not None]


def simulate_good(run: PoisonRun, records: list[Record]) -> list[dict[str, Any]]:
    """`lethe simulate` over the good records only, in the order they were written."""
    events = run.workdir / "good-events.jsonl"
    lines = [
        orjson.dumps(
            {
                "topic": run.topic(kind),
                "key": orjson.loads(key or b"null"),
                "value": None if value is None else orjson.loads(value),
            }
        )
        + b"\n"
        for kind, key, value, reason in records
        if reason is None
    ]
    events.write_bytes(b"".join(lines))
    return test_enforce.simulate_until_now(run.policy, events)


def test_every_malformed_record_is_dead_lettered_once_and_the_good_ones_processed(
    real_stack: Settings, run: PoisonRun, worker: WorkerProcess
) -> None:
    wait_for(
        DEADLETTER_TOPIC, lambda: test_enforce.topic_exists(real_stack, DEADLETTER_TOPIC), worker
    )
    dead_start = topic_ends(real_stack, DEADLETTER_TOPIC)
    rng = random.Random(SEED)
    now_ms = time.time_ns() // 1_000_000
    records = mixed(rng, now_ms)
    started = time.monotonic()
    cpu_started = cpu_seconds(worker.process.pid)
    placed = produce_all(real_stack, run, records)
    produced_s = time.monotonic() - started
    wanted = {
        place: reason
        for place, (_, _, _, reason) in zip(placed, records, strict=True)
        if reason is not None
    }
    assert len(wanted) == MALFORMED
    own_topics = {run.topic(kind) for kind in POISONED}

    reader = Reader(real_stack, DEADLETTER_TOPIC, dead_start)
    letters: list[dict[str, Any]] = []

    def all_dead_lettered() -> bool | None:
        letters[:] = [
            letter
            for letter in (orjson.loads(m.value()) for m in reader.read())
            if letter["topic"] in own_topics
        ]
        return True if len(letters) >= MALFORMED else None

    try:
        wait_for(
            lambda: f"{MALFORMED} dead letters of the run's topics ({len(letters)} so far)",
            all_dead_lettered,
            worker,
        )
        dead_lettered_s = time.monotonic() - started
        dead_lettered_cpu_s = cpu_seconds(worker.process.pid) - cpu_started
        time.sleep(2)  # a duplicate would follow soon after
        all_dead_lettered()
    finally:
        reader.close()

    places = Counter((letter["topic"], letter["partition"], letter["offset"]) for letter in letters)
    assert len(letters) == MALFORMED, f"{len(letters)} dead letters for {MALFORMED} records"
    assert set(places) == set(wanted), "every malformed record dead-lettered, nothing else"
    assert max(places.values()) == 1, "each malformed record dead-lettered once"
    got = {(letter["topic"], letter["partition"], letter["offset"]): letter for letter in letters}
    wrong = Counter(
        (wanted[place], got[place]["reason"])
        for place in wanted
        if got[place]["reason"] != wanted[place]
    )
    assert not wrong, f"(wanted, got) reason: count {dict(wrong)}"
    assert all(letter["detail"] for letter in letters), "every dead letter says what is wrong"
    dropped = [letter for letter in letters if letter["raw_dropped"]]
    assert len(dropped) == OVERSIZED
    assert all(
        letter["value_b64"] is None and letter["value_bytes"] > poison.HUGE_BYTES
        for letter in dropped
    )
    assert (
        sum(letter["value_b64"] is not None for letter in letters)
        + sum(letter["value_bytes"] is None for letter in letters)
        >= MALFORMED - OVERSIZED
    ), "the others keep their raw value (null for tombstones)"

    by_topic = Counter(topic for topic, _, _ in wanted)
    wait_for(
        "lethe_dead_letters_total by topic",
        lambda: (
            True
            if all(dead_letters(worker, topic) == count for topic, count in by_topic.items())
            else None
        ),
        worker,
    )

    good_ops: Counter[tuple[str, str]] = Counter()
    for kind, _, value, reason in records:
        if reason is None:
            op = "tombstone" if value is None else str(orjson.loads(value)["op"])
            good_ops[(run.source(kind), op)] += 1

    def counted() -> dict[tuple[str, str], int]:
        return {
            (dict(labels)["table"], dict(labels)["op"]): int(value)
            for (name, labels), value in (worker.metrics() or {}).items()
            if name == "lethe_change_events_total"
            and dict(labels).get("table") in {run.source(kind) for kind in POISONED}
            and value
        }

    wait_for(
        lambda: f"lethe_change_events_total {dict(good_ops)}, seen {counted()}",
        lambda: True if counted() == dict(good_ops) else None,
        worker,
    )
    tracked_wanted = {
        run.source(kind): GOOD_ROWS - DELETED
        for kind in ("connection_logs", "satisfaction_surveys")
    }

    def tracked() -> dict[str, int]:
        found: Counter[str] = Counter()
        for (name, labels), value in (worker.metrics() or {}).items():
            if name == "lethe_rows_tracked" and dict(labels).get("table") in tracked_wanted:
                found[dict(labels)["table"]] = max(found[dict(labels)["table"]], int(value))
        return dict(found)

    wait_for(
        lambda: f"lethe_rows_tracked {tracked_wanted}, seen {tracked()}",
        lambda: True if tracked() == tracked_wanted else None,
        worker,
    )

    simulated = {
        c["command_id"]: (c["table"], c["action"])
        for c in simulate_good(run, records)
        if c["table"] in {run.source(kind) for kind in POISONED}
    }
    assert simulated, "the good records owe commands"

    commands = test_enforce.Commands(real_stack, run, worker)
    try:

        def issued() -> dict[str, tuple[str, str]]:
            return {i: (c["table"], c["action"]) for i, c in commands.mine().items()}

        wait_for(
            lambda: f"the {len(simulated)} commands simulated, issued {len(issued())}",
            lambda: True if issued() == simulated else None,
            worker,
        )
    finally:
        commands.reader.close()
    assert worker.process.poll() is None, "the worker died"
    print(
        f"\nrow 5: {len(records)} records ({MALFORMED} malformed) produced in {produced_s:.1f}s; "
        f"all dead-lettered {dead_lettered_s:.1f}s after the first "
        f"(worker CPU {dead_lettered_cpu_s:.1f}s); "
        f"{len(simulated)} commands as simulated"
    )


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds process `pid` has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dead_letters(worker: WorkerProcess, topic: str) -> int:
    return int(
        sum(
            value
            for (name, labels), value in (worker.metrics() or {}).items()
            if name == "lethe_dead_letters_total" and dict(labels).get("topic") == topic
        )
    )
