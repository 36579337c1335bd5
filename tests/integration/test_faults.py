"""The fault matrix, rows 2 to 4 (docs/reliability.md): a fault injected into the real stack
mid-run, then the run counted against `lethe simulate` (tests/integration/faults.py).

Each test writes the fault data set (`faults.fault_rows`: 280 rows in five demo tables and
two customers under a legal hold never released, ids in a block of 1,000 of its own inside
919,000,000-919,899,999) through SQL, runs a `lethe worker` enforcing under a manual clock
started at 2010-01-01 and advanced to 2013-01-01 and to 2016-01-01, and ends with:
- 0 commands lost (due per `lethe simulate` over the captured change records, never sent)
  and none sent that is not due; duplicates (same id sent again) allowed and counted;
- PostgreSQL holding what the simulation's commands leave of the rows, and the outcome
  worked out by hand (`faults.fault_outcome`);
- every due delete and anonymise confirmed on `lethe.audit`;
- no command for a held customer, no invoice or order deleted before its 10 years.

The faults hit the parts of the stack the settings name (`lethe.stack`; its pids from the
stack dir): on the shared stack, run these tests alone; the suite runs them after the
other tests but the demo's (tests/integration/conftest.py). Whatever happens, each test
ends with PostgreSQL, Kafka, Connect and both connectors running and healthy again, its
rows deleted and its topics dropped. The measured times are printed (`pytest -s`) in a
line starting `fault row`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from lethe import stack
from lethe.settings import Settings
from lethe.stack.connect import SinkConnector
from lethe.stack.kafka import Kafka
from lethe.stack.postgres import Postgres
from lethe.stack.process import http
from tests.integration import faults
from tests.integration.faults import ChangeTopics, Run
from tests.integration.workers import (
    SINK_GROUP,
    WorkerProcess,
    quiet,
    sink_caught_up,
    topic_ends,
    wait_for,
)

pytestmark = pytest.mark.integration

RANGE_LOW, RANGE_HIGH = 919_000_000, 919_899_999
"""Ids of these tests' rows (every run takes a block of 1,000 inside): no demo row, and no
row of test_end_to_end (918,...), has one."""
CONFIRM_TIMEOUT = "1"
"""LETHE_CONFIRM_TIMEOUT: a command unconfirmed one second of enforcement time after its
send is sent again at the next advance."""


@pytest.fixture
def run(real_stack: Settings, tmp_path: Path) -> Iterator[Run]:
    """The run (its own block, policy and clock); in the end the stack healthy again, the
    run's rows deleted and its topics dropped."""
    run = faults.new_fault_run(real_stack, "lethe-it-fault-", tmp_path, (RANGE_LOW, RANGE_HIGH))
    try:
        yield run
    finally:
        try:
            faults.restore_stack(real_stack)
        finally:
            faults.forget_run(real_stack, run)


def write_rows(
    settings: Settings,
    run: Run,
    worker: WorkerProcess,
    topics: ChangeTopics,
    tables: tuple[str, ...] | None = None,
) -> Counter[str]:
    """The holds and the rows (of `tables` only when given) in one transaction, waited for on
    the change topics and processed by the worker (nothing is due before the first advance
    but support tickets' archives, and no held row's); the change events each table must
    have."""
    expected: Counter[str] = Counter()
    rows = {
        "legal_holds": faults.fault_holds(run),
        **{t: r for t, r in faults.fault_rows(run).items() if tables is None or t in tables},
    }
    faults.insert_rows(settings, run, rows, expected)
    faults.wait_for_debezium(topics, expected, worker)
    faults.worker_caught_up(settings, run, worker)
    return expected


def advance(settings: Settings, run: Run, worker: WorkerProcess, n: int) -> None:
    """Advance the clock to its n-th instant and wait until the worker processed it."""
    faults.advance(settings, run, run.advances[n])
    faults.worker_caught_up(settings, run, worker)


def first_command_sent(settings: Settings, run: Run) -> None:
    """Wait until a command reaches `lethe.commands` after the last advance."""
    before = run.phase_ends[-1]

    def sent() -> bool | None:
        now = topic_ends(settings, "lethe.commands")
        return True if any(now[p] > before.get(p, 0) for p in now) else None

    wait_for("a command after the advance", sent)


def check_run(
    settings: Settings, run: Run, worker: WorkerProcess, topics: ChangeTopics
) -> faults.Tally:
    """The end of a run: `faults.settle` found nothing wrong and the worker still runs; the
    tally."""
    counts, _, problems = faults.settle(settings, run, topics)
    assert problems == [], "\n".join(problems)
    assert worker.process.poll() is None, "the worker is still running at the end"
    return counts


def timed(step: Callable[[], object]) -> float:
    begin = time.monotonic()
    step()
    return time.monotonic() - begin


def test_broker_killed_and_restarted_mid_run(real_stack: Settings, run: Run) -> None:
    """Row 2: Kafka killed with SIGKILL as the first commands of an advance are sent, started
    again 3 s later: the worker rides it out (no restart), and nothing is lost."""
    topics = ChangeTopics(real_stack, run)
    try:
        with faults.worker_serving(run, LETHE_CONFIRM_TIMEOUT=CONFIRM_TIMEOUT) as worker:
            write_rows(real_stack, run, worker, topics)
            faults.advance(real_stack, run, run.advances[0])
            first_command_sent(real_stack, run)
            pid = faults.kill_part(real_stack, Kafka(real_stack))
            time.sleep(3)
            down = timed(lambda: faults.restore_stack(real_stack))
            resumed = timed(lambda: faults.worker_caught_up(real_stack, run, worker))
            advance(real_stack, run, worker, 1)
            counts = check_run(real_stack, run, worker, topics)
            print(
                f"fault row 2: Kafka (pid {pid}) killed, back and healthy {down:.1f} s after its "
                f"restart began; worker caught up {resumed:.1f} s later; {counts.line()}"
            )
    finally:
        topics.close()


def sink_lag(settings: Settings, run: Run) -> int:
    """Records on the run's sink topics that `lethe-sink` has not committed."""
    consumer = Consumer({**quiet(settings), "group.id": SINK_GROUP, "enable.auto.commit": False})
    try:
        existing = consumer.list_topics(timeout=10).topics
        partitions = [
            TopicPartition(topic, p)
            for topic in (f"lethe.sink.public.{t}" for t in run.tables)
            if topic in existing
            for p in existing[topic].partitions
        ]
        committed = consumer.committed(partitions, timeout=10)
        return sum(
            consumer.get_watermark_offsets(tp, timeout=10)[1] - max(tp.offset, 0)
            for tp in committed
        )
    finally:
        consumer.close()


def test_connect_stopped_while_commands_fall_due(real_stack: Settings, run: Run) -> None:
    """Row 3: Kafka Connect stopped between the advances, started again after the second:
    nothing is lost, the commands unconfirmed at the second advance are sent again with the
    same id, and the sink applies them all.

    The sink connector is paused from the first advance until Connect is back and the worker
    has sent again what was not confirmed: so the first advance's commands are sure to wait
    on their topics (a running sink applies them within a second), and the re-sends are sure
    to happen before the confirmations (a worker that holds its commands while the source's
    heartbeats stop sends the second advance's commands and the re-sends only once Connect
    is back)."""
    sink = SinkConnector(real_stack)
    topics = ChangeTopics(real_stack, run)
    try:
        with faults.worker_serving(run, LETHE_CONFIRM_TIMEOUT=CONFIRM_TIMEOUT) as worker:
            write_rows(real_stack, run, worker, topics)
            http("PUT", f"{sink.url}/pause", timeout=30)
            wait_for("the sink paused", lambda: True if sink.state()[0] == "PAUSED" else None)
            advance(real_stack, run, worker, 0)
            waiting = sink_lag(real_stack, run)
            assert waiting > 0, "the first advance's commands wait on the sink topics"
            assert stack.stop_part(real_stack, "connect"), "Connect was running"
            advance(real_stack, run, worker, 1)
            begin = time.monotonic()
            stack.up(real_stack, only={"connect", "source"}, say=lambda line: None)
            restarted = time.monotonic() - begin
            faults.worker_caught_up(real_stack, run, worker)
            wait_for("a command sent again", lambda: True if resent(real_stack, run) else None)
            backlog = sink_lag(real_stack, run)
            resumed = timed(lambda: faults.restore_stack(real_stack))
            sink_topics = [f"lethe.sink.public.{table}" for table in run.tables]
            drained = timed(lambda: sink_caught_up(real_stack, sink_topics))
            counts = check_run(real_stack, run, worker, topics)
            print(
                f"fault row 3: {waiting} sink records waiting after the first advance; Connect "
                f"and the source running {restarted:.1f} s after the start; the sink resumed "
                f"in {resumed:.1f} s and drained its {backlog} records {drained:.1f} s later; "
                f"{counts.line()}"
            )
    finally:
        topics.close()


def resent(settings: Settings, run: Run) -> int:
    """How many of the run's command ids are on `lethe.commands` more than once."""
    live = faults.live_commands(settings, run)
    sends = Counter(c["command_id"] for c in live if run.owns(int(c["key"]["id"])))
    return sum(1 for n in sends.values() if n > 1)


def test_postgres_restarted_mid_run(real_stack: Settings, run: Run) -> None:
    """Row 4: PostgreSQL restarted (fast shutdown) as Debezium streams the first tables' rows,
    and again as the sink applies the first advance's commands: Debezium resumes from its
    replication slot, every written row is on its change topic, nothing is lost."""
    postgres = Postgres(real_stack)
    topics = ChangeTopics(real_stack, run)
    try:
        with faults.worker_serving(run, LETHE_CONFIRM_TIMEOUT=CONFIRM_TIMEOUT) as worker:
            first = ("connection_logs", "support_tickets")
            expected = write_rows(real_stack, run, worker, topics, first)
            rest = {t: r for t, r in faults.fault_rows(run).items() if t not in first}
            faults.insert_rows(real_stack, run, rest, expected)
            begin = time.monotonic()
            postgres.stop()
            restarted = faults.restore_stack(real_stack)
            back = time.monotonic() - begin
            caught_up = timed(lambda: faults.wait_for_debezium(topics, expected, worker))
            captured = {table: topics.changes(table) for table in run.values}
            missing = {
                table: sorted(set(written) - set(captured[table]))
                for table, written in run.values.items()
            }
            assert {t: ids for t, ids in missing.items() if ids} == {}, "rows never captured"
            replayed = {t: sum(n - 1 for n in c.values()) for t, c in captured.items()}
            faults.worker_caught_up(real_stack, run, worker)
            faults.advance(real_stack, run, run.advances[0])
            first_command_sent(real_stack, run)
            postgres.stop()
            restarted_applying = faults.restore_stack(real_stack)
            faults.worker_caught_up(real_stack, run, worker)
            advance(real_stack, run, worker, 1)
            sink_restarts = faults.sink_applied(real_stack, run)
            counts = check_run(real_stack, run, worker, topics)
            print(
                f"fault row 4: PostgreSQL and the stack back {back:.1f} s after the stop began "
                f"(connectors restarted: {restarted or 'none'}); Debezium had every row "
                f"{caught_up:.1f} s later; change events sent twice {replayed}; restarted "
                f"while the sink applied the first advance's commands: connectors restarted "
                f"{restarted_applying or 'none'}, the sink's task restarted {sink_restarts} "
                f"times later; {counts.line()}"
            )
    finally:
        topics.close()
